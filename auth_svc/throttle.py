"""Brute-force protection for logins: failed attempts counted per account and per client IP.

The counters live in Redis: every auth replica sees the same counts, INCR is atomic, and the
key's TTL ends the window without a cleanup job or a write to the users table per attempt.
A fixed window per key: the first failure starts it, so `Retry-After` is the key's TTL.
If Redis is unreachable the check fails open (logins keep working) and says so in the log.

An attempt is counted before its password is verified, in the same atomic step that decides
whether it may try at all (`admit`): otherwise many concurrent attempts would all pass the
check while the slow argon2 verifications ran. A successful login gives its attempt back.
"""

from __future__ import annotations

import hashlib

from contracts.errors import TooManyRequests
from contracts.logging import get_logger
from contracts.redis_clients import REDIS_FAILURES, RedisClient

log = get_logger(__name__)


class LoginThrottle:
    def __init__(
        self, redis: RedisClient, *, max_per_account: int, max_per_ip: int, window_s: int
    ) -> None:
        self._redis = redis
        self._limits = (max_per_account, max_per_ip)
        self._window_s = window_s

    @staticmethod
    def _keys(email: str, client_ip: str | None) -> list[str]:
        account = hashlib.sha256(email.encode()).hexdigest()[:32]
        # one hash tag for every counter: the admitting script reads an account's and an
        # address's counters atomically, so on a Cluster they must share a slot (logins are
        # few, argon2 bounds them, so one slot carries them all easily)
        keys = [f"auth:login-failures:{{throttle}}:account:{account}"]
        if client_ip:
            keys.append(f"auth:login-failures:{{throttle}}:ip:{client_ip}")
        return keys

    async def admit(self, email: str, client_ip: str | None) -> None:
        """Count this attempt, or raise 429 with Retry-After (counting nothing) while the
        account or the address is locked out: one atomic step."""
        keys = self._keys(email, client_ip)
        try:
            retry_after = int(await self._redis.eval(
                _ADMIT, len(keys), *keys, self._window_s, *self._limits[:len(keys)]))
        except REDIS_FAILURES as exc:
            log.warning("login throttle unavailable, failing open", error=repr(exc))
            return
        if retry_after:
            raise TooManyRequests(
                f"Rate limit exceeded. Try again in {retry_after} seconds.",
                retry_after=retry_after,
            )

    async def succeeded(self, email: str, client_ip: str | None) -> None:
        """A successful login clears its account's count and gives its attempt back to the
        address."""
        keys = self._keys(email, client_ip)
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.delete(keys[0])
                if len(keys) > 1:
                    pipe.decr(keys[1])
                await pipe.execute()
        except REDIS_FAILURES as exc:
            log.warning("login throttle unavailable", error=repr(exc))


# KEYS: the account's counter, then the address's. ARGV: window s, then each key's limit.
# Returns 0 (admitted, every counter incremented) or the seconds to wait.
_ADMIT = """
local wait = 0
for i, key in ipairs(KEYS) do
  local count = tonumber(redis.call('GET', key) or '0')
  if count >= tonumber(ARGV[i + 1]) then
    local ttl = redis.call('TTL', key)
    if ttl <= 0 then ttl = tonumber(ARGV[1]) end
    if ttl > wait then wait = ttl end
  end
end
if wait > 0 then return wait end
for _, key in ipairs(KEYS) do
  redis.call('INCR', key)
  redis.call('EXPIRE', key, ARGV[1], 'NX')
end
return 0
"""
