"""API key verdicts: SHA-256 of the presented key -> Redis cache -> `key.verify` over RPC.

Verdicts are cached in Redis (shared by every gateway process) for a short while; revocation
and project deletion events drop them at once, so a revoked key stops working within a second
rather than when its cache entry would have expired.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson

from contracts import operations as op
from contracts.errors import Forbidden
from contracts.logging import get_logger
from contracts.messages import RpcRequest
from contracts.names import SERVICES, Service
from contracts.redis_clients import REDIS_FAILURES, RedisClient
from contracts.rpc import RpcClient
from contracts.timeutil import iso_now
from gateway.redis_batch import RedisBatcher

log = get_logger(__name__)

KEY_FORMAT = re.compile(r"gw_[0-9a-f]{64}")
VALID_TTL_S = 300
REVOKED_TTL_S = 600
INVALID_TTL_S = 30
PROJECT_QUEUE = SERVICES[Service.PROJECT].rpc_queue


def key_hash(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


def cache_key(digest: str) -> str:
    return f"gw:apikey:{digest}"


@dataclass(frozen=True, slots=True)
class ValidKey:
    """A key the project service vouched for (not revoked, not expired)."""
    id: str
    project_id: str
    owner_id: str | None

    @classmethod
    def of(cls, wire: dict[str, Any]) -> ValidKey:
        return cls(wire["id"], wire["projectId"], wire.get("ownerId"))


class ApiKeys:
    def __init__(self, redis: RedisClient, rpc: RpcClient) -> None:
        self._redis = redis
        # the request path's lookups of one tick share a round trip (gateway.redis_batch);
        # the rare stores and revocations go through the client
        self._lookups = RedisBatcher(redis, role="api_keys")
        self._rpc = rpc

    async def close(self) -> None:
        await self._lookups.close()

    async def verify(self, raw: str, deadline_ms: int | None = None,
                     before_remote: Callable[[], Awaitable[None]] | None = None
                     ) -> ValidKey:
        """The valid key; 403 with the reason.
        `before_remote` runs before the verdict is asked of the project service (on a cache
        miss) and may refuse the request instead."""
        if not KEY_FORMAT.fullmatch(raw):  # costs no hash, no cache lookup, no RPC
            raise Forbidden("Key not found")
        digest = key_hash(raw)
        verdict = await self._cached(digest)
        if verdict is None:
            if before_remote is not None:
                await before_remote()
            result = await self._rpc.call(PROJECT_QUEUE, op.KEY_VERIFY,
                                          RpcRequest(query={"hash": digest}),
                                          deadline_ms=deadline_ms)
            verdict = result.body
            await self._store(digest, verdict)
        if not verdict.get("valid"):
            raise Forbidden(verdict.get("reason", "Key not found"))
        key = verdict["key"]
        if key.get("expiresAt") and key["expiresAt"] <= iso_now():
            raise Forbidden("Key expired")
        return ValidKey.of(key)

    async def forget(self, digests: list[str], reason: str = "Key revoked") -> None:
        """Replace cached verdicts with a refusal (not a delete: a verify already in flight
        must not store `valid` again afterwards, and stores never overwrite)."""
        if not digests:
            return
        refusal = orjson.dumps({"valid": False, "reason": reason})
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for digest in digests:
                    pipe.set(cache_key(digest), refusal, ex=REVOKED_TTL_S)
                await pipe.execute()
        except REDIS_FAILURES as exc:
            log.error("could not drop cached key verdicts", error=repr(exc))

    async def _cached(self, digest: str) -> dict[str, Any] | None:
        try:
            raw = await self._lookups.call("GET", cache_key(digest))
        except REDIS_FAILURES:
            return None  # no cache: ask the project service
        return orjson.loads(raw) if raw else None

    async def _store(self, digest: str, verdict: dict[str, Any]) -> None:
        try:
            await self._redis.set(cache_key(digest), orjson.dumps(verdict), nx=True,
                                  ex=VALID_TTL_S if verdict.get("valid") else INVALID_TTL_S)
        except REDIS_FAILURES:
            pass
