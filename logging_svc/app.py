"""Wires the logging service: MongoDB (indexes at start), the `request.completed` consumer,
the RPC operations of API.md section 7.2 and the retention sweeper."""

from __future__ import annotations

from datetime import timedelta

from contracts.mongo import Mongo, open_mongo
from contracts.names import LOGGING_REQUESTS
from contracts.rpc import operations_of
from contracts.service import ServiceProcess
from logging_svc.consumer import RequestLogWriter
from logging_svc.handlers import LogHandlers
from logging_svc.retention import RetentionSweeper
from logging_svc.store import COLLECTION, LogStore, indexes

# Prefetch of the consumer: messages (each up to 500 events) being written at once.
CONSUMER_PREFETCH = 8


class LoggingComponent:
    def __init__(self) -> None:
        self._mongo: Mongo | None = None
        self._sweeper: RetentionSweeper | None = None

    async def start(self, process: ServiceProcess) -> None:
        settings = process.settings
        assert process.rpc is not None
        self._mongo = await open_mongo(settings.mongo_url, settings.mongo_db,
                                       app_name=process.name)
        collection = self._mongo.db[COLLECTION]
        retention = timedelta(days=settings.log_retention_days)
        await self._mongo.ensure_indexes(collection, indexes(retention))
        store = LogStore(collection)
        handlers = LogHandlers(store, process.rpc)
        process.add_handlers(operations_of(handlers))
        process.add_consumer(LOGGING_REQUESTS, RequestLogWriter(store).on_requests,
                             prefetch=CONSUMER_PREFETCH)
        self._sweeper = RetentionSweeper(store, retention=retention,
                                         interval_s=settings.log_sweep_interval_s)
        self._sweeper.start()

    async def stop(self, _process: ServiceProcess) -> None:
        if self._sweeper is not None:
            await self._sweeper.close()
        if self._mongo is not None:
            await self._mongo.close()


def configure(process: ServiceProcess) -> None:
    component = LoggingComponent()
    process.on_start(component.start)
    process.on_stop(component.stop)
