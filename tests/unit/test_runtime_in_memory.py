"""Services on the in-memory broker: RPC operations, consumers and periodic tasks declared as a
service declares them, run by the real runtime, with no server at all."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import Awaitable, Callable

import orjson
import pytest

from contracts import operations as op
from contracts.broker import MemoryBroker, MemoryBus
from contracts.errors import NotFound
from contracts.messages import RequestCompleted, RpcRequest
from contracts.names import ANALYTICS_REQUESTS, LOGGING_REQUESTS, SERVICES, RoutingKey, Service
from contracts.operations import Call, Operation
from contracts.periodic import Periodic
from contracts.rpc import handles
from contracts.schemas.common import IdParams, Message
from contracts.service import Assembly, Consumer, ServiceDeclaration, ServiceProcess
from contracts.settings import Settings
from logging_svc.consumer import RequestLogWriter
from project_svc.handlers import KeyUsage
from tests.factories import request_completed
from tests.support import service_settings

GREET = Operation("test.greet", Service.AUTH, params=IdParams, answer=Message)
LOOK_UP = Operation("test.look_up", Service.AUTH, params=IdParams, answer=Message)


@pytest.fixture
def settings() -> Settings:
    return dataclasses.replace(service_settings(Service.AUTH, Service.LOGGING),
                               event_max_retries=2)


async def until(check: Callable[[], object], within_s: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + within_s
    while not check():
        assert asyncio.get_running_loop().time() < deadline, "never happened"
        await asyncio.sleep(0.01)


async def running(declaration: ServiceDeclaration, settings: Settings,
                  bus: MemoryBus) -> ServiceProcess:
    process = ServiceProcess(declaration, settings, MemoryBroker(bus))
    await process.start()
    return process


def service_of(assemble: Callable[[Assembly], Awaitable[None]],
               service: Service = Service.AUTH) -> ServiceDeclaration:
    return ServiceDeclaration(service, assemble)


async def test_an_operation_answers_through_the_wire_form(settings: Settings):
    class Greeter:
        @handles(GREET)
        async def greet(self, call: Call[None, None, IdParams]) -> Message:
            return Message(message=f"hello {call.params.id}")

        @handles(LOOK_UP)
        async def look_up(self, _call: Call[None, None, IdParams]) -> Message:
            raise NotFound("Nothing here")

    async def assemble(service: Assembly) -> None:
        service.serve(Greeter())

    bus = MemoryBus()
    process = await running(service_of(assemble), settings, bus)
    caller = MemoryBroker(bus).rpc
    queue = SERVICES[Service.AUTH].rpc_queue
    some_id = str(uuid.uuid4())
    result = await caller.call(queue, GREET, RpcRequest(params={"id": some_id}))
    assert (result.status, result.body) == (200, {"message": f"hello {some_id}"})
    with pytest.raises(NotFound, match="Nothing here"):
        await caller.call(queue, LOOK_UP, RpcRequest(params={"id": some_id}))
    health = await caller.call(queue, op.SERVICE_HEALTH)
    assert health.body["service"] == "auth-service"
    await process.stop()


async def test_a_consumer_gets_its_declared_events_and_a_failing_one_is_dead_lettered(
        settings: Settings):
    stored: list[RequestCompleted] = []
    attempts: list[int] = []

    class Store:
        async def store_once(self, records: list[object]) -> int:
            stored.extend(records)  # type: ignore[arg-type]
            return len(records)

    async def failing(events: list[RequestCompleted]) -> None:
        attempts.append(len(events))
        raise RuntimeError("the database is away")

    async def logging(service: Assembly) -> None:
        service.consume(Consumer(LOGGING_REQUESTS, RequestCompleted,
                                 RequestLogWriter(Store()).on_requests))  # type: ignore[arg-type]

    async def analytics(service: Assembly) -> None:
        service.consume(Consumer(ANALYTICS_REQUESTS, RequestCompleted, failing))

    bus = MemoryBus()
    first = await running(service_of(logging, Service.LOGGING), settings, bus)
    second = await running(service_of(analytics, Service.AUTH), settings, bus)
    publisher = MemoryBroker(bus).publisher
    events = [request_completed(i) for i in range(3)]
    for event in events:
        publisher.publish(event)
    await until(lambda: len(stored) == 3)
    assert {record.request_id for record in stored} == {e.request_id for e in events}
    await until(lambda: len(bus.dead_letters[ANALYTICS_REQUESTS.name]) == 3)
    assert len(attempts) == 3 * (settings.event_max_retries + 1)  # tried, then set aside
    await first.stop()
    await second.stop()


def collecting() -> tuple[list[RequestCompleted], ServiceDeclaration]:
    """A service whose one consumer keeps what `analytics.requests` delivers."""
    received: list[RequestCompleted] = []

    async def fold(events: list[RequestCompleted]) -> None:
        received.extend(events)

    async def assemble(service: Assembly) -> None:
        service.consume(Consumer(ANALYTICS_REQUESTS, RequestCompleted, fold))

    return received, service_of(assemble)


async def test_a_malformed_event_is_set_apart_and_the_rest_handled(settings: Settings):
    received, declaration = collecting()
    bus = MemoryBus()
    process = await running(declaration, settings, bus)
    good = request_completed(1).to_wire()
    bus.route(RoutingKey.REQUEST_COMPLETED,
              orjson.dumps({"events": [good, {**good, "statusCode": 999}]}))
    await until(lambda: len(received) == 1)
    assert received[0].request_id == good["requestId"]
    assert len(bus.dead_letters[ANALYTICS_REQUESTS.name]) == 1
    await process.stop()


async def test_events_published_before_a_consumer_exists_wait_in_its_queue(settings: Settings):
    received, declaration = collecting()
    bus = MemoryBus()
    MemoryBroker(bus).publisher.publish(request_completed(1))
    process = await running(declaration, settings, bus)
    await until(lambda: len(received) == 1)
    await process.stop()


async def test_a_periodic_task_runs_and_flushes_once_more_at_stop(settings: Settings):
    touched: list[list[uuid.UUID]] = []

    class Store:
        async def touch_keys(self, key_ids: list[uuid.UUID]) -> None:
            touched.append(sorted(key_ids))

    usage = KeyUsage(Store())  # type: ignore[arg-type]

    async def assemble(service: Assembly) -> None:
        service.every(usage.periodic(interval_s=0.02))

    process = await running(service_of(assemble), settings, MemoryBus())
    first, last = uuid.uuid4(), uuid.uuid4()
    usage.record(first)
    await until(lambda: touched == [[first]])
    usage.record(last)
    await process.stop()  # before the next interval: the last flush still writes it
    assert touched[-1] == [last]


async def test_what_a_failed_start_opened_is_closed_again(settings: Settings):
    closed: list[str] = []

    async def assemble(service: Assembly) -> None:
        service.every(Periodic("never", lambda: asyncio.sleep(0), 60.0))

        class Resource:
            async def __aenter__(self) -> Resource:
                return self

            async def __aexit__(self, *_exc: object) -> None:
                closed.append("resource")

        await service.open(Resource())
        raise RuntimeError("half-way")

    broker = MemoryBroker()
    process = ServiceProcess(service_of(assemble), settings, broker)
    with pytest.raises(RuntimeError, match="half-way"):
        await process.start()
    assert closed == ["resource"] and not broker.connected
