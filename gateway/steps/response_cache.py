"""Step 9: the response cache (docs/api.md section 13.2, docs/architecture.md section 6).

- GET only, when the matching route config has `cacheTTL > 0` (an upstream config, or a
  service config on a platform GET route): the pipeline plans this step only there;
- the key holds method, path, the sorted query and the caller's identity whenever there is
  one (RequestContext.who: anonymous callers share entries), so one user never receives
  another's response; it also holds the config's
  `updatedAt`, so changing a route config leaves its old entries behind (they expire);
- 200 only, never for a request with `Range` or a body (a "fat GET": an upstream that reads
  GET bodies would answer the URL with what one caller sent); never a response with
  `Cache-Control` `no-store`, `no-cache` or `private` (RFC 9111 section 5.2.2, read from
  every field line), one already stale on arrival (`s-maxage`/`max-age` of 0, or else an
  `Expires` in the past or invalid), with `Set-Cookie` or with a `Vary` on anything but
  Accept-Encoding. `cacheTTL` is the only lifetime an entry gets: the gateway never
  revalidates, so what would need revalidation is not stored;
- bounded: an entry holds at most `CACHE_MAX_BODY_BYTES`, each project's live entries at most
  `CACHE_PROJECT_BUDGET_BYTES` (a full budget stores nothing more until entries expire), and
  the entries live in a Redis instance of their own (`CACHE_REDIS_URL`) whose `maxmemory` and
  LRU policy can never evict or starve the rate limiter's keys;
- `X-Cache: HIT|MISS` and `Age`;
- single flight: concurrent misses for one key in one process share one flight; across
  processes the flight holding a short Redis lock calls the backend and the others' flights
  poll for its entry with a growing pause (a handful of reads per flight, never a busy loop);
- Redis unreachable: no caching, never an error.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
import uuid
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import TypeGuard
from urllib.parse import urlencode

import orjson
from aiohttp import web
from aiohttp.typedefs import Handler
from prometheus_client import Counter

from contracts.logging import get_logger
from contracts.redis_clients import REDIS_FAILURES, RedisClient
from gateway.context import RequestContext
from gateway.redis_batch import RedisBatcher

log = get_logger(__name__)

LOCK_MS = 5000
# pauses of a flight waiting for another process's entry: 20 ms doubling to 320 ms, then
# 320 ms until the lock's lifetime is over (about 20 reads at most)
FIRST_WAIT_S, LONGEST_WAIT_S = 0.02, 0.32
# what an entry costs beyond its body and metadata (key, hash fields, bookkeeping)
ENTRY_OVERHEAD_BYTES = 256
NOT_STORED_HEADERS = frozenset({"x-request-id", "x-ratelimit-limit", "x-ratelimit-remaining",
                                "x-ratelimit-reset", "ratelimit", "ratelimit-policy",
                                "retry-after", "date", "content-length",
                                "transfer-encoding", "connection", "x-cache", "age"})

CACHE_LOOKUPS = Counter("gateway_cache_lookups_total", "Response cache lookups", ["result"])
HITS, MISSES, UNAVAILABLE = (CACHE_LOOKUPS.labels(result)
                              for result in ("hit", "miss", "unavailable"))
CACHE_STORES = Counter("gateway_cache_stores_total", "Responses offered to the cache",
                       ["outcome"])

# KEYS: entry, the project's entry expiries (zset), their sizes (hash), their byte total.
# ARGV: metadata, body, ttl ms, entry size, the project's budget in bytes.
# Entries that expired (or were evicted: they stay counted until their expiry, which only
# makes the budget stricter) leave the total here, a bounded number per call.
STORE_WITHIN_BUDGET = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local total = tonumber(redis.call('GET', KEYS[4]) or '0')
local expired = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, 256)
for _, member in ipairs(expired) do
  total = total - tonumber(redis.call('HGET', KEYS[3], member) or '0')
  redis.call('HDEL', KEYS[3], member)
  redis.call('ZREM', KEYS[2], member)
end
if total < 0 then total = 0 end
local size = tonumber(ARGV[4])
local replaced = tonumber(redis.call('HGET', KEYS[3], KEYS[1]) or '0')
local stored = 0
if total - replaced + size <= tonumber(ARGV[5]) then
  total = total - replaced + size
  redis.call('HSET', KEYS[1], 'meta', ARGV[1], 'body', ARGV[2])
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
  redis.call('ZADD', KEYS[2], now + tonumber(ARGV[3]), KEYS[1])
  redis.call('HSET', KEYS[3], KEYS[1], size)
  stored = 1
end
redis.call('SET', KEYS[4], total)
local last = redis.call('ZRANGE', KEYS[2], -1, -1, 'WITHSCORES')[2]
if last then
  for i = 2, 4 do redis.call('PEXPIREAT', KEYS[i], last) end
else
  redis.call('DEL', KEYS[2], KEYS[3], KEYS[4])
end
return stored
"""


@dataclass(frozen=True)
class Entry:
    status: int
    headers: list[tuple[str, str]]
    stored_at: float
    body: bytes

    @classmethod
    def of(cls, response: web.Response) -> Entry:
        body = _whole_body(response)
        if body is None:  # storable() refuses these
            raise TypeError("an answer with a payload object for a body is never stored")
        return cls(response.status, [(k, v) for k, v in response.headers.items()
                                     if k.lower() not in NOT_STORED_HEADERS],
                   time.time(), bytes(body))

    def meta(self) -> bytes:
        return orjson.dumps({"status": self.status, "headers": self.headers,
                             "storedAt": self.stored_at})

    def response(self) -> web.Response:
        response = web.Response(status=self.status, body=self.body)
        for name, value in self.headers:
            response.headers.add(name, value)
        response.headers["X-Cache"] = "HIT"
        response.headers["Age"] = str(max(0, int(time.time() - self.stored_at)))
        return response


class ResponseCache:
    def __init__(self, redis: RedisClient, *, max_body_bytes: int,
                 project_budget_bytes: int) -> None:
        self._redis = redis
        # lookups of one tick share a round trip
        self._batcher = RedisBatcher(redis, role="cache")
        self._store = redis.register_script(STORE_WITHIN_BUDGET)
        self.max_body_bytes = max_body_bytes
        self._budget = project_budget_bytes
        self._flights: dict[str, asyncio.Future[Entry | None]] = {}

    async def close(self) -> None:
        await self._batcher.close()
        await self._redis.aclose()

    async def get(self, key: str) -> Entry | None:
        try:
            return _entry_of(await self._batcher.call("HGETALL", key))
        except REDIS_FAILURES:
            UNAVAILABLE.inc()
            return None

    async def put(self, key: str, project_id: str, entry: Entry, ttl_s: int) -> bool:
        """Stores the entry if the project's budget has room for it."""
        meta = entry.meta()
        size = len(entry.body) + len(meta) + len(key) + ENTRY_OVERHEAD_BYTES
        # the project id is the hash tag of its entries (cache_key) and of its books: the
        # budget script touches both, and on a Cluster they must share a slot
        books = f"gw:cache:project:{{{project_id}}}"
        try:
            stored = bool(await self._store(
                keys=[key, f"{books}:expiries", f"{books}:sizes", f"{books}:bytes"],
                args=[meta, entry.body, ttl_s * 1000, size, self._budget]))
        except REDIS_FAILURES as exc:
            log.warning("response not cached", error=repr(exc))
            CACHE_STORES.labels("unavailable").inc()
            return False
        CACHE_STORES.labels("stored" if stored else "over_budget").inc()
        return stored

    async def lock(self, key: str) -> str | None:
        token = uuid.uuid4().hex
        try:
            acquired = await self._redis.set(f"{key}:lock", token, nx=True, px=LOCK_MS)
        except REDIS_FAILURES:
            return token  # no store, no coordination: behave as the only caller
        return token if acquired else None

    async def unlock(self, key: str, token: str) -> None:
        try:
            await self._redis.eval(
                "if redis.call('GET', KEYS[1]) == ARGV[1] then "
                "return redis.call('DEL', KEYS[1]) end return 0", 1, f"{key}:lock", token)
        except REDIS_FAILURES:
            pass

    async def wait_for(self, key: str) -> Entry | None:
        """Another process holds the lock: its entry, or None once the lock is gone (its
        response was not storable) or its lifetime is over."""
        until = time.monotonic() + LOCK_MS / 1000
        pause = FIRST_WAIT_S
        while time.monotonic() < until:
            await asyncio.sleep(pause)
            pause = min(pause * 2, LONGEST_WAIT_S)
            try:  # one round trip: both commands go out in this tick's batch
                reply, locked = await asyncio.gather(
                    self._batcher.call("HGETALL", key),
                    self._batcher.call("EXISTS", f"{key}:lock"))
            except REDIS_FAILURES:
                return None
            entry = _entry_of(reply)
            if entry is not None:
                return entry
            if not locked:
                return None
        return None

    def flight(self, key: str) -> asyncio.Future[Entry | None] | None:
        """The flight already under way in this process for `key`, if any."""
        return self._flights.get(key)

    def start_flight(self, key: str) -> asyncio.Future[Entry | None]:
        future: asyncio.Future[Entry | None] = asyncio.get_running_loop().create_future()
        self._flights[key] = future
        return future

    def end_flight(self, key: str, future: asyncio.Future[Entry | None],
                   entry: Entry | None) -> None:
        if self._flights.get(key) is future:
            del self._flights[key]
        if not future.done():
            future.set_result(entry)


RESPONSE_CACHE = web.AppKey("response_cache", ResponseCache)


def _entry_of(reply: list[bytes] | dict[bytes, bytes]) -> Entry | None:
    """An HGETALL reply (a flat list, or a dict under RESP3) as an entry, if there is one."""
    fields = reply if isinstance(reply, dict) else dict(
        zip(reply[::2], reply[1::2], strict=True))
    if b"meta" not in fields:
        return None
    meta = orjson.loads(fields[b"meta"])
    return Entry(meta["status"], [tuple(h) for h in meta["headers"]], meta["storedAt"],
                 fields.get(b"body", b""))


def cache_key(context: RequestContext, request: web.Request) -> str:
    config = context.config
    assert config is not None
    who = context.who()
    identity = "anonymous" if who.kind == "ip" else str(who)
    query = urlencode(sorted(request.query.items()))
    # the raw path: `/f/a%2Fb` and `/f/a/b` reach the upstream as different paths
    path = request.raw_path.split("?", 1)[0]
    raw = (f"{config.id}|{config.updated_at}|GET|{path}|{query}|{identity}|"
           f"{normalised_encoding(request)}")
    return f"gw:cache:{{{config.project_id}}}:" + hashlib.sha256(raw.encode()).hexdigest()


def normalised_encoding(request: web.Request) -> str:
    """Accept-Encoding as a set of codings: spelling variants of one value share an entry
    (new spellings must not mint new entries)."""
    codings = {part.split(";", 1)[0].strip().lower()
               for part in request.headers.get("Accept-Encoding", "").split(",")}
    return ",".join(sorted(coding for coding in codings if coding))


def carries_body(request: web.Request) -> bool:
    """A GET with a body: what the upstream answers may depend on it, and the key cannot."""
    return bool(request.content_length) or "Transfer-Encoding" in request.headers


def cache_directives(response: web.StreamResponse) -> dict[str, str]:
    """`Cache-Control` directives by lower-cased name, from every field line (a list field
    may be split over several lines, RFC 9110 section 5.3)."""
    found: dict[str, str] = {}
    for line in response.headers.getall("Cache-Control", ()):
        for part in line.split(","):
            name, _, value = part.partition("=")
            name = name.strip().lower()
            if name:
                found.setdefault(name, value.strip().strip('"'))
    return found


# a shared cache may not store these, or may store them only to revalidate before each use
NOT_STORED_DIRECTIVES = ("no-store", "no-cache", "private")


def fresh_on_arrival(response: web.StreamResponse, directives: dict[str, str]) -> bool:
    """False when the answer is already stale: its freshness lifetime (RFC 9111 section
    4.2.1: `s-maxage`, else `max-age`, else `Expires`) is zero, or unreadable (which counts
    as stale). None of them: fresh (cacheTTL decides)."""
    for name in ("s-maxage", "max-age"):
        if name in directives:
            value = directives[name]
            return value.isdigit() and int(value) > 0
    expires = response.headers.get("Expires")
    if expires is None:
        return True
    try:
        moment = parsedate_to_datetime(expires)
    except (TypeError, ValueError, IndexError):
        return False
    return moment.tzinfo is not None and moment.timestamp() > time.time()


def _whole_body(response: web.Response) -> bytes | bytearray | None:
    """The answer's body held in memory (empty when it has none); None when the body is a
    payload object (a file, a stream), which is not whole until it is sent."""
    body = response.body
    if body is None:
        return b""
    return body if isinstance(body, bytes | bytearray) else None


def storable(response: web.StreamResponse, max_body_bytes: int) -> TypeGuard[web.Response]:
    """200 only (docs/api.md section 13.2), whole and small enough, no cookies, nothing
    `Cache-Control` keeps from a shared cache, fresh, and no `Vary` beyond Accept-Encoding
    (the key holds no other request header)."""
    if not isinstance(response, web.Response) or response.status != 200:
        return False
    body = _whole_body(response)
    if body is None or len(body) > max_body_bytes or "Set-Cookie" in response.headers:
        return False
    varies = {name.strip().lower() for value in response.headers.getall("Vary", [])
              for name in value.split(",")} - {"", "accept-encoding"}
    if varies:
        return False
    directives = cache_directives(response)
    if any(name in directives for name in NOT_STORED_DIRECTIVES):
        return False
    return fresh_on_arrival(response, directives)


async def _fetch(context: RequestContext, request: web.Request, handler: Handler,
                 cache: ResponseCache, key: str, ttl: int
                 ) -> tuple[web.StreamResponse, Entry | None]:
    """Calls the backend; stores a storable answer. Returns the response and what others
    waiting for this key may be served (None: they call the backend themselves)."""
    MISSES.inc()
    context.buffer_up_to = cache.max_body_bytes  # whole bodies the cache may store
    response = await handler(request)
    entry = None
    if storable(response, cache.max_body_bytes):
        entry = Entry.of(response)
        assert context.config is not None
        if not await cache.put(key, context.config.project_id, entry, ttl):
            entry = None  # over budget: not shared either (each waiter asks for itself)
    if not response.prepared:
        response.headers["X-Cache"] = "MISS"
    return response, entry


async def response_cache(context: RequestContext, request: web.Request,
                         handler: Handler) -> web.StreamResponse:
    """Around the handler of a GET route whose config has `cacheTTL > 0` (the pipeline plans
    it only there)."""
    # a Range request's answer (206, or a 200 the upstream did not cut) is its own, and so is
    # a fat GET's: never stored, never served from the cache
    if "Range" in request.headers or carries_body(request):
        return await handler(request)
    assert context.config is not None and context.config.cache_ttl
    ttl = context.config.cache_ttl
    cache = request.app[RESPONSE_CACHE]
    key = cache_key(context, request)
    entry = await cache.get(key)
    if entry is None:
        under_way = cache.flight(key)
        if under_way is not None:  # this process already asks: share its answer
            entry = await asyncio.shield(under_way)
            if entry is None:
                return (await _fetch(context, request, handler, cache, key, ttl))[0]
    if entry is not None:
        HITS.inc()
        return entry.response()
    flight = cache.start_flight(key)
    shared: Entry | None = None
    token = await cache.lock(key)
    try:
        if token is None:  # another process asks: wait for its entry
            shared = await cache.wait_for(key)
            if shared is not None:
                HITS.inc()
                return shared.response()
        response, shared = await _fetch(context, request, handler, cache, key, ttl)
        return response
    finally:
        cache.end_flight(key, flight, shared)
        if token is not None:
            await cache.unlock(key, token)
