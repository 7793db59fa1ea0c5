"""Wires the analytics service: PostgreSQL (migrated at start), the `request.completed`
consumer folding into rollups, the RPC operations of API.md section 8 and the pruner."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import asyncpg

from analytics_svc.consumer import RollupWriter
from analytics_svc.handlers import AnalyticsHandlers
from analytics_svc.pruning import Pruner
from analytics_svc.store import RollupStore
from contracts.migrations import open_migrated_pool, read_migrations
from contracts.names import ANALYTICS_REQUESTS
from contracts.rpc import operations_of
from contracts.service import ServiceProcess
from contracts.settings import Settings

MIGRATIONS = read_migrations(Path(__file__).parent / "migrations")

# Messages (each up to 500 events) folded at once; their transactions queue on the hot rows
# of the all-traffic view, so more would only wait.
CONSUMER_PREFETCH = 4


async def open_database(settings: Settings) -> asyncpg.Pool:
    return await open_migrated_pool(settings.analytics_database_url, MIGRATIONS)


class AnalyticsComponent:
    def __init__(self) -> None:
        self._pool: asyncpg.Pool | None = None
        self._pruner: Pruner | None = None

    async def start(self, process: ServiceProcess) -> None:
        assert process.rpc is not None
        settings = process.settings
        self._pool = await open_database(settings)
        store = RollupStore(self._pool)
        process.add_handlers(operations_of(AnalyticsHandlers(store, process.rpc)))
        process.add_consumer(ANALYTICS_REQUESTS, RollupWriter(store).on_requests,
                             prefetch=CONSUMER_PREFETCH)
        self._pruner = Pruner(
            self._pool, ledger_horizon=timedelta(hours=settings.analytics_ledger_hours))
        self._pruner.start()

    async def stop(self, _process: ServiceProcess) -> None:
        if self._pruner is not None:
            await self._pruner.close()
        if self._pool is not None:
            await self._pool.close()


def configure(process: ServiceProcess) -> None:
    component = AnalyticsComponent()
    process.on_start(component.start)
    process.on_stop(component.stop)
