from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from aio_pika.abc import AbstractRobustConnection

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
def unique() -> str:
    """A name no other test uses, for queues of one test."""
    return f"t{uuid.uuid4().hex[:10]}"
