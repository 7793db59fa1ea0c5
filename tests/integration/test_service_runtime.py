"""The service runtime on the real broker: what a declaration opens is closed in reverse, also
when start-up fails half-way; what it declares (an operation, a consumer, a periodic task) runs
from one declaration and its function."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

from contracts.events import EventPublisher
from contracts.messages import RequestCompleted
from contracts.names import SERVICES, EventQueue, RoutingKey, Service
from contracts.operations import Call, Operation
from contracts.periodic import Periodic
from contracts.rpc import RpcClient, handles
from contracts.schemas.common import Message
from contracts.service import Assembly, Consumer, ServiceDeclaration, ServiceProcess
from contracts.settings import Settings
from tests.factories import request_completed
from tests.support import service_settings

PING = Operation("runtime.ping", Service.AUTH, answer=Message)


@pytest.fixture
def runtime_settings() -> Settings:
    """The auth service's identity on ports of this test's own (a stack may run beside)."""
    return service_settings(Service.AUTH)


class Journal:
    """What the declared parts did, in order."""

    def __init__(self) -> None:
        self.entries: list[str] = []

    def resource(self, name: str):
        @asynccontextmanager
        async def opened() -> AsyncIterator[str]:
            self.entries.append(f"open {name}")
            try:
                yield name
            finally:
                self.entries.append(f"close {name}")

        return opened()


async def until(check, within_s: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + within_s
    while not check():
        assert asyncio.get_running_loop().time() < deadline, "never happened"
        await asyncio.sleep(0.02)


async def test_a_start_up_failing_half_way_closes_what_it_opened(runtime_settings: Settings):
    journal = Journal()

    async def assemble(service: Assembly) -> None:
        await service.open(journal.resource("database"))
        await service.open(journal.resource("cache"))
        raise RuntimeError("the third resource is not there")

    process = ServiceProcess(ServiceDeclaration(Service.AUTH, assemble), runtime_settings)
    with pytest.raises(RuntimeError, match="third resource"):
        await process.start()
    assert journal.entries == ["open database", "open cache", "close cache", "close database"]
    assert not process.connected  # the broker connection opened before went too


async def test_one_declaration_each_serves_an_operation_a_queue_and_a_clock(
        runtime_settings: Settings, amqp, unique: str):
    journal = Journal()
    consumed: list[RequestCompleted] = []
    ticks: list[int] = []
    queue = EventQueue(f"{unique}.requests", (RoutingKey.REQUEST_COMPLETED,))

    class Pings:
        @handles(PING)
        async def ping(self, _call: Call[None, None, None]) -> Message:
            return Message(message="pong")

    async def fold(events: list[RequestCompleted]) -> None:
        consumed.extend(events)

    async def tick() -> None:
        ticks.append(len(ticks))

    async def assemble(service: Assembly) -> None:
        await service.open(journal.resource("database"))
        service.serve(Pings())
        service.consume(Consumer(queue, RequestCompleted, fold, prefetch=4))
        service.every(Periodic("runtime-tick", tick, 0.05))

    process = ServiceProcess(ServiceDeclaration(Service.AUTH, assemble), runtime_settings)
    await process.start()
    try:
        client = RpcClient(await amqp("caller"), default_timeout_ms=5000)
        await client.start()
        reply = await client.call(SERVICES[Service.AUTH].rpc_queue, PING)
        assert (reply.status, reply.body) == (200, {"message": "pong"})
        await client.close()

        publisher = EventPublisher(await amqp("publisher"))
        await publisher.start()
        sent = request_completed(1, user_agent=unique)
        publisher.publish(sent)
        await until(lambda: any(e.request_id == sent.request_id for e in consumed))
        await publisher.close()
        await until(lambda: len(ticks) >= 2)
    finally:
        await process.stop()
    assert journal.entries == ["open database", "close database"]
    count = len(ticks)
    await asyncio.sleep(0.2)
    assert len(ticks) == count  # the clock stopped with the process


def test_a_consumer_of_the_wrong_message_type_is_refused_at_declaration():
    async def fold(_events: list[RequestCompleted]) -> None:
        return None

    queue = EventQueue("wrong.requests", (RoutingKey.ALERT_TRIGGERED,))
    with pytest.raises(TypeError, match=r"wrong\.requests"):
        Consumer(queue, RequestCompleted, fold)
