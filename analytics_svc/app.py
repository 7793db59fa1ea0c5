"""Wires the analytics service: PostgreSQL (rollups, and alert events unless
ALERT_EVENT_STORE=mongodb; migrated at start) and MongoDB (alert rules, and events when so
configured), the `request.completed` consumer folding into rollups, the RPC operations of
docs/api.md sections 8 and 9, the alert engine and the pruner."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import asyncpg
from redis.asyncio import Redis

from analytics_svc.alert_engine import LEASE_KEY, AlertEngine, Lease
from analytics_svc.alert_events_mongo import MongoAlertEventStore
from analytics_svc.alert_events_pg import PostgresAlertEventStore
from analytics_svc.alert_handlers import AlertHandlers
from analytics_svc.alert_store import (
    EVENT_INDEXES,
    EVENTS,
    RULE_INDEXES,
    RULES,
    AlertEventStore,
    AlertStore,
)
from analytics_svc.consumer import RollupWriter
from analytics_svc.handlers import AnalyticsHandlers
from analytics_svc.pruning import Pruner
from analytics_svc.store import RollupStore
from contracts.migrations import open_migrated_pool, read_migrations
from contracts.mongo import Mongo, open_mongo
from contracts.names import ANALYTICS_REQUESTS
from contracts.rpc import operations_of
from contracts.service import ServiceProcess
from contracts.settings import Settings

MIGRATIONS = read_migrations(Path(__file__).parent / "migrations")

# Messages (each up to 500 events) held at once: the writer folds them together.
CONSUMER_PREFETCH = 8
# A lease outlives its holder by this many intervals (the hand-over time after a crash).
LEASE_INTERVALS = 3


async def open_database(settings: Settings) -> asyncpg.Pool:
    return await open_migrated_pool(settings.analytics_database_url, MIGRATIONS)


async def open_alert_event_store(settings: Settings, pool: asyncpg.Pool,
                                 mongo: Mongo) -> AlertEventStore:
    """The configured alert event store (ALERT_EVENT_STORE), ready: PostgreSQL on the
    analytics pool (migrated), or the `alertevents` collection with its indexes."""
    if settings.alert_event_store == "postgresql":
        return PostgresAlertEventStore(pool)
    events = mongo.db[EVENTS]
    await mongo.ensure_indexes(events, EVENT_INDEXES)
    return MongoAlertEventStore(events)


class AnalyticsComponent:
    def __init__(self) -> None:
        self._pool: asyncpg.Pool | None = None
        self._mongo: Mongo | None = None
        self._redis: Redis | None = None
        self._pruner: Pruner | None = None
        self._engine: AlertEngine | None = None
        self._writer: RollupWriter | None = None

    async def start(self, process: ServiceProcess) -> None:
        assert process.rpc is not None and process.publisher is not None
        settings = process.settings
        self._pool = await open_database(settings)
        rollups = RollupStore(self._pool)
        self._mongo = await open_mongo(settings.mongo_url, settings.mongo_db,
                                       app_name=process.name)
        rules = self._mongo.db[RULES]
        await self._mongo.ensure_indexes(rules, RULE_INDEXES)
        alerts = AlertStore(rules, await open_alert_event_store(settings, self._pool,
                                                                self._mongo))
        process.add_handlers(operations_of(AnalyticsHandlers(rollups, process.rpc)))
        process.add_handlers(operations_of(AlertHandlers(alerts, process.rpc)))
        self._writer = RollupWriter(rollups)
        self._writer.start()
        process.add_consumer(ANALYTICS_REQUESTS, self._writer.on_requests,
                             prefetch=CONSUMER_PREFETCH)
        self._pruner = Pruner(
            self._pool, ledger_horizon=timedelta(hours=settings.analytics_ledger_hours))
        self._pruner.start()
        self._redis = Redis.from_url(settings.redis_url)
        lease = Lease(self._redis, LEASE_KEY,
                      ttl_ms=max(1000, LEASE_INTERVALS * settings.alert_interval_ms))
        self._engine = AlertEngine(alerts, rollups, process.publisher, lease,
                                   settings.alert_interval_ms)
        self._engine.start()

    async def stop(self, _process: ServiceProcess) -> None:
        if self._engine is not None:
            await self._engine.close()
        if self._pruner is not None:
            await self._pruner.close()
        if self._writer is not None:
            await self._writer.close()
        if self._redis is not None:
            await self._redis.aclose()
        if self._mongo is not None:
            await self._mongo.close()
        if self._pool is not None:
            await self._pool.close()


def configure(process: ServiceProcess) -> None:
    component = AnalyticsComponent()
    process.on_start(component.start)
    process.on_stop(component.stop)
