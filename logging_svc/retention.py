"""Keeps log entries for `LOG_RETENTION_DAYS` (docs/api.md section 7.1: 30 days), and whatever
the store keeps ready ahead of time, every `LOG_SWEEP_INTERVAL_S`.

The work is the store's (`LogStore.upkeep`): PostgreSQL drops whole day partitions and
creates the coming days'; MongoDB deletes expired entries in bounded chunks (FerretDB has no
TTL indexes; a real MongoDB's TTL index usually got there first). Any number of replicas may
run it: both are idempotent.
"""

from __future__ import annotations

from datetime import UTC, datetime

from prometheus_client import Counter

from contracts.logging import get_logger
from contracts.periodic import Periodic
from logging_svc.entries import LogStore

log = get_logger(__name__)

LOG_ENTRIES_EXPIRED = Counter("log_entries_expired_total", "Log entries deleted by retention")


class RetentionSweeper:
    def __init__(self, store: LogStore) -> None:
        self._store = store

    def periodic(self, interval_s: float) -> Periodic:
        """Every `interval_s` (the store did one pass when it opened)."""
        return Periodic("log-retention", self.sweep, interval_s)

    async def sweep(self) -> int:
        """One upkeep pass; returns how many entries expired."""
        expired = await self._store.upkeep(datetime.now(UTC))
        LOG_ENTRIES_EXPIRED.inc(expired)
        if expired:
            log.info("expired log entries deleted", count=expired)
        return expired
