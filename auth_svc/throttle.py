"""Brute-force protection for logins: failed attempts counted per account and per client IP.

The counters live in Redis: every auth replica sees the same counts, INCR is atomic, and the
key's TTL ends the window without a cleanup job or a write to the users table per attempt.
A fixed window per key: the first failure starts it, so `Retry-After` is the key's TTL.
If Redis is unreachable the check fails open (logins keep working) and says so in the log.
"""

from __future__ import annotations

import hashlib

from redis.asyncio import Redis
from redis.exceptions import RedisError

from contracts.errors import TooManyRequests
from contracts.logging import get_logger

log = get_logger(__name__)


class LoginThrottle:
    def __init__(
        self, redis: Redis, *, max_per_account: int, max_per_ip: int, window_s: int
    ) -> None:
        self._redis = redis
        self._limits = (max_per_account, max_per_ip)
        self._window_s = window_s

    @staticmethod
    def _keys(email: str, client_ip: str | None) -> list[str]:
        account = hashlib.sha256(email.encode()).hexdigest()[:32]
        keys = [f"auth:login-failures:account:{account}"]
        if client_ip:
            keys.append(f"auth:login-failures:ip:{client_ip}")
        return keys

    async def check(self, email: str, client_ip: str | None) -> None:
        """Raise 429 with Retry-After while the account or the address is locked out."""
        keys = self._keys(email, client_ip)
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for key in keys:
                    pipe.get(key)
                    pipe.ttl(key)
                replies = await pipe.execute()
        except RedisError as exc:
            log.warning("login throttle unavailable, failing open", error=repr(exc))
            return
        retry_after = 0
        for count, ttl, limit in zip(replies[::2], replies[1::2], self._limits, strict=False):
            if count is not None and int(count) >= limit:
                retry_after = max(retry_after, ttl if ttl and ttl > 0 else self._window_s)
        if retry_after:
            raise TooManyRequests(
                f"Rate limit exceeded. Try again in {retry_after} seconds.",
                retry_after=retry_after,
            )

    async def record_failure(self, email: str, client_ip: str | None) -> None:
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                for key in self._keys(email, client_ip):
                    pipe.incr(key)
                    pipe.expire(key, self._window_s, nx=True)
                await pipe.execute()
        except RedisError as exc:
            log.warning("login throttle unavailable, failure not counted", error=repr(exc))

    async def clear_account(self, email: str) -> None:
        """A successful login clears its account's count (not the address's)."""
        try:
            await self._redis.delete(self._keys(email, None)[0])
        except RedisError as exc:
            log.warning("login throttle unavailable", error=repr(exc))
