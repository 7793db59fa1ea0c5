"""Wires the logging service: its log store (PostgreSQL or MongoDB, LOG_STORE), the
`request.completed` consumer, the RPC operations of docs/api.md section 7.2 and the upkeep task
(retention, partitions ahead)."""

from __future__ import annotations

from datetime import timedelta

from contracts.mongo import Mongo, open_mongo
from contracts.names import LOGGING_REQUESTS
from contracts.rpc import operations_of
from contracts.service import ServiceProcess
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
            ahead_days=settings.log_partitions_ahead_days)
        return store, None
    mongo = await open_mongo(settings.mongo_url, settings.mongo_db, app_name="logging")
    collection = mongo.db[COLLECTION]
    await mongo.ensure_indexes(collection, indexes(timedelta(days=settings.log_retention_days)))
    return MongoLogStore(collection, retention_days=settings.log_retention_days), mongo


class LoggingComponent:
    def __init__(self) -> None:
        self._store: LogStore | None = None
        self._mongo: Mongo | None = None
        self._sweeper: RetentionSweeper | None = None

    async def start(self, process: ServiceProcess) -> None:
        settings = process.settings
        assert process.rpc is not None
        self._store, self._mongo = await open_log_store(settings)
        handlers = LogHandlers(self._store, process.rpc,
                               Cursors(cursor_key(settings.access_token_secret)),
                               retention_days=settings.log_retention_days)
        process.add_handlers(operations_of(handlers))
        process.add_consumer(LOGGING_REQUESTS, RequestLogWriter(self._store).on_requests,
                             prefetch=CONSUMER_PREFETCH)
        self._sweeper = RetentionSweeper(self._store, interval_s=settings.log_sweep_interval_s)
        self._sweeper.start()

    async def stop(self, _process: ServiceProcess) -> None:
        if self._sweeper is not None:
            await self._sweeper.close()
        if self._store is not None:
            await self._store.close()
        if self._mongo is not None:
            await self._mongo.close()


def configure(process: ServiceProcess) -> None:
    component = LoggingComponent()
    process.on_start(component.start)
    process.on_stop(component.stop)
