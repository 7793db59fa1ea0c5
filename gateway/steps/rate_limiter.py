"""Step 7: sliding-window rate limiting (docs/api.md section 13.1), one atomic Redis round trip.

Each bucket (identity + method + matched template) is a sorted set of request timestamps. One
Lua script drops what left the window, counts, and records the request only when it is
allowed, so concurrent gateways can never let more through than the limit and rejected
requests consume no quota. The script reads Redis's own clock (one clock for every gateway);
tests may pass the time explicitly.

Redis unreachable, failing over, or refusing (cluster errors included): fail open by default
(no headers), counted in `gateway_rate_limit_unchecked_total` by reason and logged at most
once per interval; RATE_LIMIT_FAIL_CLOSED answers 503 instead. Never a 500.
"""

from __future__ import annotations

import itertools
import math
import time
import uuid
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from prometheus_client import Counter
from redis.exceptions import (
    ClusterError,
    NoScriptError,
    ReadOnlyError,
    RedisClusterException,
    ResponseError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from contracts.errors import ServiceUnavailable, TooManyRequests
from contracts.logging import get_logger
from contracts.redis_clients import REDIS_FAILURES, RedisClient
from contracts.settings import Settings
from gateway.context import RequestContext
from gateway.redis_batch import RedisBatcher

log = get_logger(__name__)

WINDOW_MS = 60_000

RATE_LIMIT_DECISIONS = Counter(
    "gateway_rate_limit_decisions_total", "Rate limiter outcomes", ["outcome"])
# label children bound once, not looked up per request
ALLOWED, LIMITED, STORE_UNAVAILABLE = (RATE_LIMIT_DECISIONS.labels(outcome) for outcome in (
    "allowed", "limited", "store_unavailable"))
# Every request whose limit was not checked (its Redis call failed), by why: with the
# fail-open policy these requests went through unlimited, so any increase is worth an alert
# ("rate limiting silently off"); with fail-closed they were answered 503.
RATE_LIMIT_UNCHECKED = Counter(
    "gateway_rate_limit_unchecked_total",
    "Rate limit checks skipped because the store failed, by reason", ["reason"])
UNCHECKED = {reason: RATE_LIMIT_UNCHECKED.labels(reason) for reason in (
    "connection", "timeout", "readonly", "cluster", "reply", "other")}


def unchecked_reason(exc: BaseException) -> str:
    """The metric's label for a failed check."""
    if isinstance(exc, RedisTimeoutError | TimeoutError):
        return "timeout"
    if isinstance(exc, RedisConnectionError | OSError):
        return "connection"
    if isinstance(exc, ReadOnlyError):
        return "readonly"
    if isinstance(exc, ClusterError | RedisClusterException):
        return "cluster"
    if isinstance(exc, ResponseError):
        return "reply"
    return "other"

# KEYS[1] bucket; ARGV: window ms, limit, unique member, now ms ("" = Redis TIME),
# record ("0": only look, record nothing)
SLIDING_WINDOW = """
local now = tonumber(ARGV[4])
if not now then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local window = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local count = redis.call('ZCARD', KEYS[1])
local allowed = 0
if count < limit then
  if ARGV[5] ~= '0' then
    redis.call('ZADD', KEYS[1], now, ARGV[3])
    redis.call('PEXPIRE', KEYS[1], window)
    count = count + 1
  end
  allowed = 1
end
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')[2]
if not oldest then oldest = now end
return {allowed, count, tonumber(oldest), now}
"""


@dataclass(frozen=True)
class Decision:
    allowed: bool
    limit: int
    count: int  # requests in the window, this one included when allowed
    oldest_ms: int
    now_ms: int

    @property
    def remaining(self) -> int:
        return max(0, self.limit - self.count)

    @property
    def reset_unix_s(self) -> int:
        return math.ceil((self.oldest_ms + WINDOW_MS) / 1000)

    @property
    def retry_after_s(self) -> int:
        return max(1, math.ceil((self.oldest_ms + WINDOW_MS - self.now_ms) / 1000))

    def headers(self) -> dict[str, str]:
        seconds_to_reset = max(0, math.ceil((self.oldest_ms + WINDOW_MS - self.now_ms) / 1000))
        return {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(self.remaining),
            "X-RateLimit-Reset": str(self.reset_unix_s),
            # IETF draft-ietf-httpapi-ratelimit-headers
            "RateLimit-Policy": f'"default";q={self.limit};w={WINDOW_MS // 1000}',
            "RateLimit": f'"default";r={self.remaining};t={seconds_to_reset}',
        }


class RateLimiter:
    """Decisions of one event-loop tick travel together (gateway.redis_batch): one write of
    their EVALSHA calls on one connection, instead of a connection and a round trip each."""

    def __init__(self, redis: RedisClient, *, fail_closed: bool = False,
                 log_interval_s: float = 30.0) -> None:
        self._redis = redis
        self._sha = redis.register_script(SLIDING_WINDOW).sha
        self._batcher = RedisBatcher(redis, role="limiter")
        # a request's member in its bucket: unique across processes without a random draw
        # (and a system call) per request
        self._member_prefix = f"{uuid.uuid4().hex[:16]}:"
        self._serial = itertools.count()
        self._fail_closed = fail_closed
        self._log_interval_s = log_interval_s
        self._last_logged = 0.0

    async def close(self) -> None:
        await self._batcher.close()

    async def _evaluate(self, bucket: str, args: list[Any]) -> list[int]:
        try:
            reply: list[int] = await self._batcher.call("EVALSHA", self._sha, 1, bucket, *args)
        except NoScriptError:  # after a Redis restart
            await self._redis.script_load(SLIDING_WINDOW)
            reply = await self._batcher.call("EVALSHA", self._sha, 1, bucket, *args)
        return reply

    async def hit(self, bucket: str, limit: int, now_ms: int | None = None, *,
                  record: bool = True) -> Decision | None:
        """The decision for one request; None when the store is down and we fail open. With
        `record=False` it only looks: would a request be allowed now (nothing is counted)."""
        try:
            allowed, count, oldest, now = await self._evaluate(
                bucket, [WINDOW_MS, limit, f"{self._member_prefix}{next(self._serial)}",
                         "" if now_ms is None else now_ms,
                         "1" if record else "0"])
        except REDIS_FAILURES as exc:
            STORE_UNAVAILABLE.inc()
            UNCHECKED[unchecked_reason(exc)].inc()
            if time.monotonic() - self._last_logged >= self._log_interval_s:
                self._last_logged = time.monotonic()
                log.error("rate limiter store unavailable",
                          failing="closed" if self._fail_closed else "open", error=repr(exc))
            if self._fail_closed:
                raise ServiceUnavailable("Rate limiter unavailable") from None
            return None
        decision = Decision(bool(allowed), limit, int(count), int(oldest), int(now))
        (ALLOWED if decision.allowed else LIMITED).inc()
        return decision


RATE_LIMITER = web.AppKey("rate_limiter", RateLimiter)


def tier_limit(context: RequestContext, settings: Settings) -> tuple[str, int]:
    """The caller's bucket identity and tier limit (gateway.context.RequestContext.who
    decides who that is)."""
    who = context.who()
    if who.kind == "apikey":
        return str(who), settings.rate_limit_api_key
    if who.kind == "user":
        return str(who), settings.rate_limit_user
    return str(who), settings.rate_limit_ip


async def _decide(context: RequestContext, request: web.Request, identity: str,
                  tier: int, *, record: bool) -> None:
    """The bucket is identity + matched template; a route config's `rateLimit` replaces the
    tier's limit. Sets the headers (429 included) and raises 429 when there is no room."""
    config = context.config
    limit = config.rate_limit if config is not None and config.rate_limit else tier
    # the identity is the key's hash tag: a template's own braces (`/users/{id}`) must not
    # become the tag, which would put every caller's bucket of that route in one Cluster slot
    decision = await request.app[RATE_LIMITER].hit(f"rl:{{{identity}}}:{context.template}",
                                                   limit, record=record)
    if decision is None:
        return
    context.response_headers.update(decision.headers())
    if not decision.allowed:
        raise TooManyRequests(
            f"Rate limit exceeded. Try again in {decision.retry_after_s} seconds.",
            retry_after=decision.retry_after_s)


async def check_address_tier(context: RequestContext, request: web.Request) -> None:
    """The pre-check of docs/api.md section 13.1: before a credential lookup that costs a remote
    call, the client address's tier for this route must still have room (looked at, not
    recorded); otherwise 429 now, and the lookup is never made."""
    await _decide(context, request, f"ip:{context.client_ip}",
                  context.state.settings.rate_limit_ip, record=False)


def rate_limiter(context: RequestContext, request: web.Request) -> Awaitable[None]:
    return _decide(context, request, *tier_limit(context, context.state.settings),
                   record=True)
