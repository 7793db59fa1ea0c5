"""Step 9: the response cache (API.md section 13.2, DESIGN.md section 6).

- GET only, when the matching route config has `cacheTTL > 0` (an upstream config, or a
  service config on a platform GET route);
- the key holds method, path, the sorted query and the caller's identity whenever there is
  one, so one user never receives another's response; it also holds the config's
  `updatedAt`, so changing a route config leaves its old entries behind (they expire);
- 200 only, never for a request with `Range`; never a response with `Cache-Control:
  no-store`/`private`, `Set-Cookie` or a `Vary` on anything but Accept-Encoding;
- `X-Cache: HIT|MISS` and `Age`;
- single flight: of concurrent misses for one key, the one holding a short Redis lock calls
  the backend; the others wait for its entry (across gateway processes);
- Redis unreachable: no caching, never an error.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
import uuid
from typing import Any
from urllib.parse import urlencode

import orjson
from aiohttp import web
from prometheus_client import Counter
from redis.asyncio import Redis
from redis.exceptions import RedisError

from contracts.logging import get_logger
from gateway.router import route_config_of
from gateway.steps.keys import API_KEY, BUFFER_RESPONSE, CALLER

log = get_logger(__name__)

LOCK_MS = 5000
WAIT_STEP_S = 0.02
MAX_BODY_BYTES = 1024 * 1024
NOT_STORED_HEADERS = frozenset({"x-request-id", "x-ratelimit-limit", "x-ratelimit-remaining",
                                "x-ratelimit-reset", "ratelimit", "ratelimit-policy",
                                "retry-after", "date", "server", "content-length",
                                "transfer-encoding", "connection", "x-cache", "age"})

CACHE_LOOKUPS = Counter("gateway_cache_lookups_total", "Response cache lookups", ["result"])


class ResponseCache:
    def __init__(self, redis: Redis) -> None:
        self._redis = redis

    async def get(self, key: str) -> dict[str, Any] | None:
        try:
            entry = await self._redis.hgetall(key)
        except RedisError:
            return None
        if not entry:
            return None
        meta = orjson.loads(entry[b"meta"])
        meta["body"] = entry.get(b"body", b"")
        return meta

    async def put(self, key: str, response: web.Response, ttl_s: int) -> None:
        meta = {
            "status": response.status,
            "headers": [(k, v) for k, v in response.headers.items()
                        if k.lower() not in NOT_STORED_HEADERS],
            "storedAt": time.time(),
        }
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.hset(key, mapping={"meta": orjson.dumps(meta), "body": response.body or b""})
                pipe.expire(key, ttl_s)
                await pipe.execute()
        except RedisError as exc:
            log.warning("response not cached", error=repr(exc))

    async def lock(self, key: str) -> str | None:
        token = uuid.uuid4().hex
        try:
            acquired = await self._redis.set(f"{key}:lock", token, nx=True, px=LOCK_MS)
        except RedisError:
            return token  # no store, no coordination: behave as the only caller
        return token if acquired else None

    async def unlock(self, key: str, token: str) -> None:
        try:
            await self._redis.eval(
                "if redis.call('GET', KEYS[1]) == ARGV[1] then "
                "return redis.call('DEL', KEYS[1]) end return 0", 1, f"{key}:lock", token)
        except RedisError:
            pass

    async def wait_for(self, key: str) -> dict[str, Any] | None:
        """Another caller holds the lock: wait for its entry, or for the lock to go."""
        until = time.monotonic() + LOCK_MS / 1000
        while time.monotonic() < until:
            await asyncio.sleep(WAIT_STEP_S)
            entry = await self.get(key)
            if entry is not None:
                return entry
            try:
                if not await self._redis.exists(f"{key}:lock"):
                    return None
            except RedisError:
                return None
        return None


RESPONSE_CACHE = web.AppKey("response_cache", ResponseCache)


def cache_ttl(request: web.Request) -> int:
    # a Range request's answer (206, or a 200 the upstream did not cut) is its own: never
    # stored, never served from the cache
    if request.method != "GET" or "Range" in request.headers:
        return 0
    config = route_config_of(request)
    return config.cache_ttl if config is not None and config.cache_ttl else 0


def cache_key(request: web.Request) -> str:
    config = route_config_of(request)
    assert config is not None
    caller = request.get(CALLER)
    key = request.get(API_KEY)
    identity = (f"user:{caller.user_id}" if caller else
                f"apikey:{key['id']}" if key else "anonymous")
    query = urlencode(sorted(request.query.items()))
    # the raw path: `/f/a%2Fb` and `/f/a/b` reach the upstream as different paths
    path = request.raw_path.split("?", 1)[0]
    raw = (f"{config.id}|{config.updated_at}|GET|{path}|{query}|{identity}|"
           f"{normalised_encoding(request)}")
    return "gw:cache:" + hashlib.sha256(raw.encode()).hexdigest()


def normalised_encoding(request: web.Request) -> str:
    """Accept-Encoding as a set of codings: spelling variants of one value share an entry
    (new spellings must not mint new entries)."""
    codings = {part.split(";", 1)[0].strip().lower()
               for part in request.headers.get("Accept-Encoding", "").split(",")}
    return ",".join(sorted(coding for coding in codings if coding))


def _response_from(entry: dict[str, Any]) -> web.Response:
    response = web.Response(status=entry["status"], body=entry["body"])
    for name, value in entry["headers"]:
        response.headers.add(name, value)
    response.headers["X-Cache"] = "HIT"
    response.headers["Age"] = str(max(0, int(time.time() - entry["storedAt"])))
    return response


def storable(response: web.StreamResponse) -> bool:
    """200 only (API.md section 13.2), no cookies, no `no-store`/`private`, and no `Vary`
    beyond Accept-Encoding (the key holds no other request header)."""
    if not isinstance(response, web.Response) or response.status != 200:
        return False
    if len(response.body or b"") > MAX_BODY_BYTES or "Set-Cookie" in response.headers:
        return False
    varies = {name.strip().lower() for value in response.headers.getall("Vary", [])
              for name in value.split(",")} - {"", "accept-encoding"}
    if varies:
        return False
    control = response.headers.get("Cache-Control", "").lower()
    return "no-store" not in control and "private" not in control


@web.middleware
async def response_cache(request: web.Request, handler: web.Handler) -> web.StreamResponse:
    ttl = cache_ttl(request)
    if not ttl:
        return await handler(request)
    cache = request.app[RESPONSE_CACHE]
    key = cache_key(request)
    token: str | None = None
    entry = await cache.get(key)
    if entry is None:
        token = await cache.lock(key)
        if token is None:
            entry = await cache.wait_for(key)
    if entry is not None:
        CACHE_LOOKUPS.labels("hit").inc()
        return _response_from(entry)
    CACHE_LOOKUPS.labels("miss").inc()
    request[BUFFER_RESPONSE] = True  # the proxy hands back a whole body it may store
    try:
        response = await handler(request)
        if storable(response):
            await cache.put(key, response, ttl)  # type: ignore[arg-type]
        if not response.prepared:
            response.headers["X-Cache"] = "MISS"
        return response
    finally:
        if token is not None:
            await cache.unlock(key, token)
