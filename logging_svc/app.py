"""Wires the logging service: its log store (PostgreSQL or MongoDB, LOG_STORE), the
`request.completed` consumer, the RPC operations of docs/api.md section 7.2 and the upkeep task
(retention, partitions ahead)."""

from __future__ import annotations

from datetime import timedelta

from contracts.messages import RequestCompleted
from contracts.mongo import Mongo, open_mongo
from contracts.names import LOGGING_REQUESTS, Service
from contracts.service import Assembly, Consumer, ServiceDeclaration, closing
from contracts.settings import Settings
from logging_svc.consumer import RequestLogWriter
from logging_svc.entries import LogStore
from logging_svc.handlers import LogHandlers
from logging_svc.mongo_store import COLLECTION, MongoLogStore, indexes
from logging_svc.paging import Cursors, cursor_key
from logging_svc.pg_store import PostgresLogStore
from logging_svc.retention import RetentionSweeper

# Prefetch of the consumer: messages (each up to 500 events) being written at once.
CONSUMER_PREFETCH = 8


async def open_log_store(settings: Settings) -> tuple[LogStore, Mongo | None]:
    """The configured store, ready (migrated, partitions or indexes in place), and the Mongo
    client it uses, if any (the caller closes it)."""
    if settings.log_store == "postgresql":
        store = await PostgresLogStore.open(
            settings.logs_database_url, retention_days=settings.log_retention_days,
            ahead_days=settings.log_partitions_ahead_days,
            pool_mode=settings.database_pool_mode, migration_url=settings.logs_migration_url)
        return store, None
    mongo = await open_mongo(settings.mongo_url, settings.mongo_db, app_name="logging")
    collection = mongo.db[COLLECTION]
    await mongo.ensure_indexes(collection, indexes(timedelta(days=settings.log_retention_days)))
    return MongoLogStore(collection, retention_days=settings.log_retention_days), mongo


async def assemble(service: Assembly) -> None:
    settings = service.settings
    store, mongo = await open_log_store(settings)
    if mongo is not None:
        await service.open(closing(mongo, Mongo.close))
    await service.open(closing(store, lambda opened: opened.close()))
    service.ready_when("log-store", store.ping)
    service.serve(LogHandlers(store, service.rpc,
                              Cursors(cursor_key(settings.access_token_secret)),
                              retention_days=settings.log_retention_days))
    service.consume(Consumer(LOGGING_REQUESTS, RequestCompleted,
                             RequestLogWriter(store).on_requests, prefetch=CONSUMER_PREFETCH))
    service.every(RetentionSweeper(store).periodic(settings.log_sweep_interval_s))


LOGGING = ServiceDeclaration(Service.LOGGING, assemble)
