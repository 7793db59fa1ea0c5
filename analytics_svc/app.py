"""Wires the analytics service: PostgreSQL (rollups, and alert events unless
ALERT_EVENT_STORE=mongodb; migrated at start) and MongoDB (alert rules, and events when so
configured), the `request.completed` consumer folding into rollups, the RPC operations of
docs/api.md sections 8 and 9, the alert engine and the pruner."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import asyncpg

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
from contracts.messages import RequestCompleted
from contracts.migrations import open_migrated_pool, read_migrations
from contracts.mongo import Mongo, open_mongo
from contracts.names import ANALYTICS_REQUESTS, Service
from contracts.outbox import OUTBOX_MIGRATIONS, DocumentOutboxRelay, OutboxRelay
from contracts.redis_clients import client_for
from contracts.service import Assembly, Consumer, ServiceDeclaration, closing, started
from contracts.settings import Settings

MIGRATIONS = read_migrations(Path(__file__).parent / "migrations") + OUTBOX_MIGRATIONS

# Messages (each up to 500 events) held at once: the writer folds them together.
CONSUMER_PREFETCH = 8
# A lease outlives its holder by this many intervals (the hand-over time after a crash).
LEASE_INTERVALS = 3


async def open_database(settings: Settings) -> asyncpg.Pool:
    return await open_migrated_pool(
        settings.analytics_database_url, MIGRATIONS, pool_mode=settings.database_pool_mode,
        migration_url=settings.analytics_migration_url)


async def open_alert_event_store(service: Assembly, pool: asyncpg.Pool, mongo: Mongo,
                                 relay: OutboxRelay) -> AlertEventStore:
    """The configured alert event store (ALERT_EVENT_STORE), ready: PostgreSQL on the
    analytics pool (migrated; its domain events through the outbox table's `relay`), or the
    `alertevents` collection with its indexes (its domain events in its documents, published
    by a `DocumentOutboxRelay` opened with the service)."""
    if service.settings.alert_event_store == "postgresql":
        return PostgresAlertEventStore(pool, relay)
    events = mongo.db[EVENTS]
    await mongo.ensure_indexes(events, EVENT_INDEXES)
    documents_relay = await service.open(started(
        DocumentOutboxRelay(events, service.publish_confirmed)))
    return MongoAlertEventStore(events, documents_relay)


async def assemble(service: Assembly) -> None:
    settings = service.settings
    pool = await service.open(closing(await open_database(settings), asyncpg.Pool.close))
    service.ready_when("postgresql", lambda: pool.fetchval("SELECT 1"))
    rollups = RollupStore(pool)
    mongo = await service.open(closing(
        await open_mongo(settings.mongo_url, settings.mongo_db, app_name=service.name),
        Mongo.close))
    rules = mongo.db[RULES]
    await mongo.ensure_indexes(rules, RULE_INDEXES)
    relay = await service.open(started(OutboxRelay(pool, service.publish_confirmed)))
    alerts = AlertStore(rules, await open_alert_event_store(service, pool, mongo, relay))
    service.serve(AnalyticsHandlers(rollups, service.rpc))
    service.serve(AlertHandlers(alerts, service.rpc))

    writer = RollupWriter(rollups)
    writer.start()
    await service.open(closing(writer, RollupWriter.close))
    service.consume(Consumer(ANALYTICS_REQUESTS, RequestCompleted, writer.on_requests,
                             prefetch=CONSUMER_PREFETCH))

    pruner = Pruner(pool, ledger_horizon=timedelta(hours=settings.analytics_ledger_hours))
    service.every(pruner.periodic())

    redis = await service.open(closing(client_for(settings, "state"),
                                       lambda client: client.aclose()))
    lease = Lease(redis, LEASE_KEY, ttl_ms=max(1000, LEASE_INTERVALS * settings.alert_interval_ms))
    engine = await service.open(closing(
        AlertEngine(alerts, rollups, service.publisher, lease, settings.alert_interval_ms),
        AlertEngine.close))
    service.every(engine.periodic())


ANALYTICS = ServiceDeclaration(Service.ANALYTICS, assemble)
