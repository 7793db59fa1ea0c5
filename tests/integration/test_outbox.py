"""contracts.outbox on the real PostgreSQL and broker: what a committed transaction wrote is
published, what a rolled-back one wrote never is, rows left while the broker was away go out
afterwards, and competing relays publish every row once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import pytest

from contracts.amqp import declare_event_queue
from contracts.migrations import migrate
from contracts.names import RoutingKey
from contracts.outbox import OUTBOX_MIGRATIONS, OutboxRelay, add_to_outbox
from tests.event_support import completed, drain
from tests.support import drop_database, recreate_database


@pytest.fixture
async def pool(project_database_url: str, unique: str) -> AsyncIterator[asyncpg.Pool]:
    url = f"{project_database_url}_{unique}"
    await recreate_database(url)
    pool = await asyncpg.create_pool(url, min_size=1, max_size=6)
    async with pool.acquire() as connection:
        await migrate(connection, OUTBOX_MIGRATIONS)
    yield pool
    await pool.close()
    await drop_database(url)


async def waiting(pool: asyncpg.Pool) -> int:
    return await pool.fetchval("SELECT count(*) FROM event_outbox")


async def waiting_once_settled(pool: asyncpg.Pool, within_s: float = 5.0) -> int:
    """Rows still waiting once the relay had time to commit: it deletes them in the
    transaction it commits after the broker confirmed, so a reader may see them a moment
    after their messages arrived."""
    loop = asyncio.get_running_loop()
    until = loop.time() + within_s
    rows = await waiting(pool)
    while rows and loop.time() < until:
        await asyncio.sleep(0.05)
        rows = await waiting(pool)
    return rows


async def test_committed_events_are_published_and_rolled_back_ones_never(amqp, brokers, pool,
                                                                        unique):
    queue = await declare_event_queue(await (await amqp("reader")).channel(), unique,
                                      (RoutingKey.REQUEST_COMPLETED,))
    async with pool.acquire() as connection:
        async with connection.transaction():
            await add_to_outbox(connection, completed(unique, 1), completed(unique, 2))
        with pytest.raises(RuntimeError):
            async with connection.transaction():
                await add_to_outbox(connection, completed(unique, 3))
                raise RuntimeError("the change failed")
    assert await waiting(pool) == 2
    relay = OutboxRelay(pool, (await brokers("relay")).publish_confirmed)
    await relay.start()
    relay.nudge()
    try:
        assert await drain(queue, unique, expected=2) == [1, 2]
        assert await waiting_once_settled(pool) == 0
    finally:
        await relay.close()


async def test_rows_written_while_no_relay_runs_are_published_when_one_starts(amqp, brokers,
                                                                               pool, unique):
    queue = await declare_event_queue(await (await amqp("reader")).channel(), unique,
                                      (RoutingKey.REQUEST_COMPLETED,))
    async with pool.acquire() as connection, connection.transaction():
        await add_to_outbox(connection, *(completed(unique, i) for i in range(250)))
    relay = OutboxRelay(pool, (await brokers("relay")).publish_confirmed, batch=100,
                        poll_interval_s=0.2)
    await relay.start()  # found by its first look, no nudge: a crashed writer's rows
    try:
        assert sorted(await drain(queue, unique, expected=250)) == list(range(250))
    finally:
        await relay.close()


async def test_competing_relays_publish_each_row_once(amqp, brokers, pool, unique):
    queue = await declare_event_queue(await (await amqp("reader")).channel(), unique,
                                      (RoutingKey.REQUEST_COMPLETED,))
    relays = [OutboxRelay(pool, (await brokers(f"relay-{n}")).publish_confirmed, batch=7,
                          poll_interval_s=0.05) for n in range(3)]
    for relay in relays:
        await relay.start()
    try:
        for i in range(0, 300, 10):
            async with pool.acquire() as connection, connection.transaction():
                await add_to_outbox(connection, *(completed(unique, n) for n in range(i, i + 10)))
            for relay in relays:
                relay.nudge()
            await asyncio.sleep(0)
        found = await drain(queue, unique, expected=300)
        assert sorted(found) == list(range(300))  # none lost, none twice
    finally:
        for relay in relays:
            await relay.close()
