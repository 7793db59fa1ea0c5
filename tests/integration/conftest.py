from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from aio_pika.abc import AbstractRobustConnection
from redis.asyncio import Redis

from contracts.amqp import connect
from contracts.settings import Settings, load_settings

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
async def redis(redis_test_db: str) -> AsyncIterator[Redis]:
    """A client of the tests' Redis database, closed at the end."""
    client = Redis.from_url(redis_test_db)
    yield client
    await client.aclose()


@pytest.fixture
def unique() -> str:
    """A name no other test uses, for queues of one test."""
    return f"t{uuid.uuid4().hex[:10]}"


@pytest.fixture
async def log_entries(settings: Settings, unique: str) -> AsyncIterator:
    """A log entry collection of this test's own, in a database dropped afterwards."""
    from contracts.mongo import open_mongo

    mongo = await open_mongo(settings.mongo_url, f"{settings.mongo_db}_{unique}",
                             app_name="tests", give_up_after_s=10)
    yield mongo.db["logentries"]
    await mongo.client.drop_database(mongo.db.name)
    await mongo.close()


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
async def alert_store(settings: Settings, unique: str) -> AsyncIterator:
    """Alert rules and events in a MongoDB database of this test's own, dropped afterwards."""
    from analytics_svc.alert_store import EVENTS, RULES, AlertStore
    from contracts.mongo import open_mongo

    mongo = await open_mongo(settings.mongo_url, f"{settings.mongo_db}_{unique}",
                             app_name="tests", give_up_after_s=10)
    yield AlertStore(mongo.db[RULES], mongo.db[EVENTS])
    await mongo.client.drop_database(mongo.db.name)
    await mongo.close()
