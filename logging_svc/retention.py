"""Keeps log entries for `LOG_RETENTION_DAYS` (API.md section 7.1: 30 days).

FerretDB has no TTL indexes, so a sweeper deletes expired entries every
`LOG_SWEEP_INTERVAL_S`: one pass finds them, and they go in bounded chunks by `_id`. It runs on
real MongoDB too, where it finds little: the TTL index on `timestamp` usually got there first.
Any number of replicas may sweep: deleting by `_id` is idempotent.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from prometheus_client import Counter

from contracts.logging import get_logger
from contracts.tasks import stop_task
from logging_svc.store import LogStore

log = get_logger(__name__)

LOG_ENTRIES_EXPIRED = Counter("log_entries_expired_total", "Log entries deleted by retention")

PAUSE_BETWEEN_CHUNKS_S = 0.05  # lets consumer writes through between delete statements


class RetentionSweeper:
    def __init__(self, store: LogStore, *, retention: timedelta, interval_s: float) -> None:
        self._store = store
        self._retention = retention
        self._interval_s = interval_s
        self._task: asyncio.Task[None] | None = None

    async def sweep(self) -> int:
        """Delete every entry older than the retention period; returns how many."""
        cutoff = datetime.now(UTC) - self._retention
        total = 0
        for ids in await self._store.expired_ids(cutoff):
            deleted = await self._store.delete(ids)
            total += deleted
            LOG_ENTRIES_EXPIRED.inc(deleted)
            await asyncio.sleep(PAUSE_BETWEEN_CHUNKS_S)
        return total

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="log-retention")

    async def close(self) -> None:
        await stop_task(self._task)

    async def _run(self) -> None:
        while True:
            try:
                deleted = await self.sweep()
                if deleted:
                    log.info("expired log entries deleted", count=deleted)
            except Exception:
                log.exception("log retention sweep failed; trying again next interval")
            await asyncio.sleep(self._interval_s)
