from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

import pytest
from aio_pika.abc import AbstractRobustConnection
from redis.asyncio import Redis

from contracts.amqp import connect
from contracts.settings import Settings, load_settings
from logging_svc.entries import LogStore

Connect = Callable[[str], Awaitable[AbstractRobustConnection]]


@pytest.fixture(autouse=True)
def _vhost(broker_vhost: str) -> str:
    return broker_vhost


@pytest.fixture
def settings() -> Settings:
    return load_settings()


@pytest.fixture
async def amqp(settings: Settings) -> AsyncIterator[Connect]:
    """Open named broker connections (each one its own TCP connection); closed at the end."""
    opened: list[AbstractRobustConnection] = []

    async def open_connection(name: str) -> AbstractRobustConnection:
        connection = await connect(settings.amqp_url, name=name, give_up_after=10)
        opened.append(connection)
        return connection

    yield open_connection
    for connection in opened:
        await connection.close()


@pytest.fixture
async def brokers(settings: Settings):
    """Open AmqpBrokers (each a connection of its own), closed at the end."""
    from contracts.broker import AmqpBroker

    opened: list[AmqpBroker] = []

    async def open_broker(name: str) -> AmqpBroker:
        broker = AmqpBroker(settings)
        await broker.open(name)
        opened.append(broker)
        return broker

    yield open_broker
    for broker in opened:
        await broker.close()


@pytest.fixture
async def redis(redis_test_db: str) -> AsyncIterator[Redis]:
    """A client of the tests' Redis database, closed at the end."""
    client = Redis.from_url(redis_test_db)
    yield client
    await client.aclose()


@pytest.fixture
def unique() -> str:
    """A name no other test uses, for queues of one test."""
    return f"t{uuid.uuid4().hex[:10]}"


@dataclass
class StoreUnderTest:
    """A log store of one test's own, and a count of the entries it holds whose user agent
    is `marker` (what the consumer tests publish; other tests' events may arrive too)."""

    kind: str
    store: LogStore
    count_marked: Callable[[str], Awaitable[int]]


@asynccontextmanager
async def store_under_test(kind: str, settings: Settings, unique: str
                           ) -> AsyncIterator[StoreUnderTest]:
    """A fresh store of `kind` (a database of its own), dropped afterwards."""
    if kind == "postgresql":
        from logging_svc.pg_store import PostgresLogStore
        from tests.support import drop_database, recreate_database

        url = f"{settings.logs_database_url}_{unique}"
        await recreate_database(url)
        store = await PostgresLogStore.open(url, retention_days=30, ahead_days=2)

        async def count_marked(marker: str) -> int:
            return await store._pool.fetchval(
                "SELECT count(*) FROM log_entries "
                "WHERE convert_from(rest, 'UTF8')::jsonb->>'userAgent' = $1", marker)

        yield StoreUnderTest(kind, store, count_marked)
        await store.close()
        await drop_database(url)
        return
    from contracts.mongo import open_mongo
    from logging_svc.mongo_store import COLLECTION, MongoLogStore

    mongo = await open_mongo(settings.mongo_url, f"{settings.mongo_db}_{unique}",
                             app_name="tests", give_up_after_s=10)
    collection = mongo.db[COLLECTION]

    async def count_in_mongo(marker: str) -> int:
        return await collection.count_documents({"userAgent": marker})

    yield StoreUnderTest(kind, MongoLogStore(collection, retention_days=30), count_in_mongo)
    await mongo.client.drop_database(mongo.db.name)
    await mongo.close()


@pytest.fixture(params=["postgresql", "mongodb"])
async def log_store(request: pytest.FixtureRequest, settings: Settings, unique: str,
                    logs_database_url: str, mongo_test_db: str
                    ) -> AsyncIterator[StoreUnderTest]:
    """Each log store in turn: the contract tests run against both."""
    async with store_under_test(request.param, settings, unique) as under_test:
        yield under_test


@pytest.fixture
async def default_log_store(settings: Settings, unique: str, logs_database_url: str
                            ) -> AsyncIterator[StoreUnderTest]:
    """The default store (LOG_STORE=postgresql), for tests of what sits around a store."""
    async with store_under_test("postgresql", settings, unique) as under_test:
        yield under_test


@pytest.fixture
async def analytics_url(analytics_database_url: str, unique: str) -> AsyncIterator[str]:
    """A migrated analytics database of this test's own (a running stack's consumer writes
    to the shared one), dropped afterwards."""
    from analytics_svc.app import MIGRATIONS
    from contracts.migrations import open_migrated_pool
    from tests.support import drop_database, recreate_database

    url = f"{analytics_database_url}_{unique}"
    await recreate_database(url)
    await (await open_migrated_pool(url, MIGRATIONS)).close()
    yield url
    await drop_database(url)


@pytest.fixture
async def analytics_pool(analytics_url: str) -> AsyncIterator:
    import asyncpg

    pool = await asyncpg.create_pool(analytics_url, min_size=1, max_size=10)
    yield pool
    await pool.close()


@pytest.fixture
async def alert_store(settings: Settings, unique: str, analytics_pool) -> AsyncIterator:
    """Alert rules in a MongoDB database of this test's own, dropped afterwards, and events
    in the default store (ALERT_EVENT_STORE=postgresql): this test's analytics database."""
    from analytics_svc.alert_events_pg import PostgresAlertEventStore
    from analytics_svc.alert_store import RULES, AlertStore
    from contracts.mongo import open_mongo

    mongo = await open_mongo(settings.mongo_url, f"{settings.mongo_db}_{unique}",
                             app_name="tests", give_up_after_s=10)
    yield AlertStore(mongo.db[RULES], PostgresAlertEventStore(analytics_pool))
    await mongo.client.drop_database(mongo.db.name)
    await mongo.close()


@pytest.fixture(params=["postgresql", "mongodb"])
async def alert_event_store(request: pytest.FixtureRequest, settings: Settings, unique: str,
                            analytics_database_url: str, mongo_test_db: str) -> AsyncIterator:
    """Each alert event store in turn (a database of this test's own, dropped afterwards):
    the contract tests run against both."""
    if request.param == "postgresql":
        import asyncpg

        from analytics_svc.alert_events_pg import PostgresAlertEventStore
        from analytics_svc.app import MIGRATIONS
        from contracts.migrations import open_migrated_pool
        from tests.support import drop_database, recreate_database

        url = f"{analytics_database_url}_{unique}"
        await recreate_database(url)
        pool: asyncpg.Pool = await open_migrated_pool(url, MIGRATIONS)
        yield PostgresAlertEventStore(pool)
        await pool.close()
        await drop_database(url)
        return
    from analytics_svc.alert_events_mongo import MongoAlertEventStore
    from analytics_svc.alert_store import EVENT_INDEXES, EVENTS
    from contracts.mongo import open_mongo

    mongo = await open_mongo(settings.mongo_url, f"{settings.mongo_db}_{unique}",
                             app_name="tests", give_up_after_s=10)
    await mongo.ensure_indexes(mongo.db[EVENTS], EVENT_INDEXES)
    yield MongoAlertEventStore(mongo.db[EVENTS])
    await mongo.client.drop_database(mongo.db.name)
    await mongo.close()
