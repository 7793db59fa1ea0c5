"""argon2id password hashing (cost from settings: RFC 9106 in production), always in worker
threads of its own: at most `threads` hashes at once (PASSWORD_HASH_THREADS), so a login
burst waits its turn instead of holding `ARGON2_MEMORY_KIB` per request in the default
executor's many threads (and running out of a container's memory).

A login for an unknown email verifies against a dummy hash, so it costs what a wrong password
costs and the two cannot be told apart by timing.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from argon2.profiles import RFC_9106_LOW_MEMORY
from prometheus_client import Counter

PASSWORD_HASHES = Counter("password_hashes_total", "argon2 hashes computed (new passwords)")


class Passwords:
    def __init__(self, time_cost: int = RFC_9106_LOW_MEMORY.time_cost,
                 memory_kib: int = RFC_9106_LOW_MEMORY.memory_cost,
                 parallelism: int = RFC_9106_LOW_MEMORY.parallelism, threads: int = 2
                 ) -> None:
        self._hasher = PasswordHasher(time_cost=time_cost, memory_cost=memory_kib,
                                      parallelism=parallelism)
        self._threads = ThreadPoolExecutor(threads, thread_name_prefix="argon2")
        self._dummy_hash: str | None = None

    async def close(self) -> None:
        self._threads.shutdown(wait=False, cancel_futures=True)

    async def start(self) -> None:
        self._dummy_hash = await self.hash("not-a-real-password-only-for-timing-0")

    async def hash(self, password: str) -> str:
        PASSWORD_HASHES.inc()
        return await asyncio.get_running_loop().run_in_executor(
            self._threads, self._hasher.hash, password)

    async def verify(self, stored_hash: str | None, password: str) -> bool:
        """False for a wrong password, and always for `stored_hash=None` (unknown user)."""
        target = stored_hash or self._dummy_hash
        assert target is not None, "Passwords.start() was not awaited"
        try:
            ok = await asyncio.get_running_loop().run_in_executor(
                self._threads, self._hasher.verify, target, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False
        return ok and stored_hash is not None

    def needs_rehash(self, stored_hash: str) -> bool:
        return self._hasher.check_needs_rehash(stored_hash)
