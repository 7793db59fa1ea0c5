"""Who is connected to the monitor, across every gateway process, in Redis.

Each socket is a member `<process>:<sid>` of one sorted set for everybody and one per user,
scored with the time its process last vouched for it. A process renews its sockets every
HEARTBEAT_S; members older than STALE_S belong to a process that died without cleaning up
and no longer count. Admitting a socket checks the per-user cap and adds it in one atomic
script, so two processes admitting at once cannot both take the last place.
"""

from __future__ import annotations

import time

from contracts.redis_clients import RedisClient

HEARTBEAT_S = 10.0
STALE_S = 30.0
# one hash tag for every presence key: admitting a socket updates the set of all and the
# user's own atomically, so on a Cluster they share a slot
ALL_KEY = "monitor:{sockets}"

# KEYS: all, user. ARGV: member, now, stale_before, cap. Returns 1 (admitted) or 0 (full).
_ADMIT = """
redis.call('zremrangebyscore', KEYS[1], '-inf', ARGV[3])
redis.call('zremrangebyscore', KEYS[2], '-inf', ARGV[3])
if redis.call('zcard', KEYS[2]) >= tonumber(ARGV[4]) then return 0 end
redis.call('zadd', KEYS[1], ARGV[2], ARGV[1])
redis.call('zadd', KEYS[2], ARGV[2], ARGV[1])
redis.call('expire', KEYS[2], 3600)
return 1
"""


def user_key(user_id: str) -> str:
    return f"monitor:{{sockets}}:user:{user_id}"


class Presence:
    def __init__(self, redis: RedisClient, process_id: str, max_per_user: int) -> None:
        self._redis = redis
        self._process = process_id
        self._max_per_user = max_per_user
        self._mine: dict[str, str] = {}  # sid -> user id

    def _member(self, sid: str) -> str:
        return f"{self._process}:{sid}"

    async def admit(self, sid: str, user_id: str) -> bool:
        now = time.time()
        admitted = await self._redis.eval(
            _ADMIT, 2, ALL_KEY, user_key(user_id), self._member(sid), now, now - STALE_S,
            self._max_per_user)
        if admitted:
            self._mine[sid] = user_id
        return bool(admitted)

    async def leave(self, sid: str) -> None:
        user_id = self._mine.pop(sid, None)
        if user_id is None:
            return
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.zrem(ALL_KEY, self._member(sid))
            pipe.zrem(user_key(user_id), self._member(sid))
            await pipe.execute()

    async def heartbeat(self) -> None:
        """Vouch for this process's sockets again."""
        if not self._mine:
            return
        now = time.time()
        async with self._redis.pipeline(transaction=False) as pipe:
            for sid, user_id in self._mine.items():
                pipe.zadd(ALL_KEY, {self._member(sid): now})
                pipe.zadd(user_key(user_id), {self._member(sid): now})
            await pipe.execute()

    async def count(self) -> int:
        """Sockets connected to any live gateway process."""
        await self._redis.zremrangebyscore(ALL_KEY, "-inf", time.time() - STALE_S)
        return int(await self._redis.zcard(ALL_KEY))

    async def forget_all(self) -> None:
        """On shutdown: this process's sockets are gone."""
        for sid in list(self._mine):
            await self.leave(sid)
