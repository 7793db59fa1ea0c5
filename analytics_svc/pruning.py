"""Deletes what the analytics service no longer needs, every few minutes, in small chunks so
no long lock holds up the consumer: ledger rows past the redelivery horizon, and rollup rows
past their resolution's retention (analytics_svc.buckets)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import asyncpg

from analytics_svc.buckets import RESOLUTIONS, TRAFFIC_RESOLUTIONS
from contracts.logging import get_logger
from contracts.periodic import Periodic

log = get_logger(__name__)

CHUNK = 10_000
INTERVAL_S = 300.0
# Rows are deleted a little after their retention ends, so a query aligned to a resolution
# just inside it never finds them gone (buckets.TimeRange.inclusive).
SLACK = timedelta(hours=1)
ROLLUP_TABLES = {"traffic": TRAFFIC_RESOLUTIONS, "endpoint_traffic": RESOLUTIONS,
                 "user_traffic": RESOLUTIONS, "key_traffic": RESOLUTIONS}


class Pruner:
    def __init__(self, pool: asyncpg.Pool, *, ledger_horizon: timedelta) -> None:
        self._pool = pool
        self._ledger_horizon = ledger_horizon

    def periodic(self) -> Periodic:
        """Every few minutes, the first pass at start."""
        return Periodic("analytics-pruner", self.run, INTERVAL_S, immediately=True)

    async def run(self) -> None:
        deleted = await self.prune()
        if deleted:
            log.info("analytics rows pruned", rows=deleted)

    async def prune(self, now: datetime | None = None) -> int:
        """One pass; returns the number of rows deleted."""
        now = now or datetime.now(UTC)
        deleted = await self._delete_chunks(
            "DELETE FROM folded_requests WHERE ctid = ANY (ARRAY(SELECT ctid FROM"
            " folded_requests WHERE folded_at < $1 LIMIT $2))", now - self._ledger_horizon)
        for table, resolutions in ROLLUP_TABLES.items():
            for resolution in resolutions:
                cutoff = now - resolution.retention - SLACK
                deleted += await self._delete_chunks(
                    f"DELETE FROM {table} WHERE ctid = ANY (ARRAY(SELECT ctid FROM {table}"
                    f" WHERE resolution = {resolution.seconds} AND bucket < $1 LIMIT $2))",
                    cutoff)
        return deleted

    async def _delete_chunks(self, statement: str, cutoff: datetime) -> int:
        total = 0
        while True:
            status = await self._pool.execute(statement, cutoff, CHUNK)
            count = int(status.rsplit(" ", 1)[-1])
            total += count
            if count < CHUNK:
                return total
