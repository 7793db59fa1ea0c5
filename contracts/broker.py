"""What a process needs of the message broker, and two implementations of it.

`Broker` is the protocol the service runtime (`contracts.service`) runs on: publish events,
call other services, serve RPC on a queue, consume an event queue. `AmqpBroker` is RabbitMQ
(the classes of `contracts.events` and `contracts.rpc`); `MemoryBroker` is the same protocol
in this process's memory, for unit tests of consumers, RPC handlers and periodic tasks that
need no server. Integration and end-to-end tests keep the real broker.

The memory broker keeps the wire: events travel encoded (`encode_events`/`decode_events`, so
a bad event is set apart as on RabbitMQ), RPC requests and replies as the same bytes
(`RpcRequest.to_wire`, `contracts.rpc.dispatch`, `result_of`). What it leaves out is what
needs a server: persistence, redelivery after a crash, deadlines in the queue, back-off.
A consumer's failing message is tried `max_retries` more times, then kept in `dead_letters`.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import defaultdict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import aio_pika
import orjson
from aio_pika.abc import AbstractChannel, AbstractExchange

from contracts.amqp import (
    connect,
    declare_delay_queue,
    declare_events_exchange,
    declare_topology,
    delay_queue_name,
)
from contracts.errors import ServiceUnavailable
from contracts.events import EventConsumer, EventHandler, EventPublisher
from contracts.messages import Event, RpcRequest, decode_events, encode_events
from contracts.names import EVENT_QUEUES, HEADER_BATCH_SIZE, HEADER_ROUTING_KEY, EventQueue
from contracts.operations import Operation
from contracts.rpc import Handler, RpcClient, RpcResult, RpcServer, dispatch, result_of
from contracts.settings import Settings

Stop = Callable[[], Awaitable[None]]


class Publisher(Protocol):
    """Publishes events; never blocks, never raises (`contracts.events.EventPublisher`)."""

    def publish(self, event: Event) -> None: ...


class RpcCaller(Protocol):
    async def call(self, queue: str, declared: Operation, request: RpcRequest | None = None,
                   *, timeout_ms: int | None = None, deadline_ms: int | None = None,
                   idempotent: bool = False) -> RpcResult: ...


class Broker(Protocol):
    @property
    def publisher(self) -> Publisher: ...

    @property
    def rpc(self) -> RpcCaller: ...

    @property
    def connected(self) -> bool: ...

    async def open(self, name: str) -> None:
        """Connect and get the publisher and the RPC client ready."""

    async def serve(self, queue: str, handlers: Mapping[str, Handler], *, prefetch: int
                    ) -> Stop:
        """Answer RPC requests on `queue`; the returned function stops, finishing what is in
        flight."""

    async def consume(self, queue: EventQueue, handler: EventHandler, *, prefetch: int,
                      max_retries: int) -> Stop:
        """Hand `queue`'s events to `handler`, a message at a time per prefetch slot."""

    async def publish_confirmed(self, routing_key: str, body: bytes, *,
                                delay_s: float | None = None, wait_s: float | None = None
                                ) -> None:
        """One message body (`encode_events`) to `gw.events` under `routing_key`, returning
        once the broker holds it (publisher confirms), so a caller may then ack or commit.
        With `delay_s`, it first waits in that delay's queue and goes on after `wait_s`
        (default `delay_s`: a jittered wait in a queue of its nominal delay;
        `contracts.amqp.declare_delay_queue`)."""

    async def close(self) -> None:
        """Flush what was published, then disconnect."""


class AmqpBroker:
    """RabbitMQ, as `AMQP_URL` names it."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._connection: Any = None
        self._publisher: EventPublisher | None = None
        self._rpc: RpcClient | None = None
        self._confirmed: AbstractChannel | None = None
        self._exchange: AbstractExchange | None = None
        self._delay_queues: set[str] = set()

    @property
    def publisher(self) -> EventPublisher:
        if self._publisher is None:
            raise RuntimeError("the broker is not open")
        return self._publisher

    @property
    def rpc(self) -> RpcClient:
        if self._rpc is None:
            raise RuntimeError("the broker is not open")
        return self._rpc

    @property
    def connected(self) -> bool:
        return self._connection is not None and not self._connection.is_closed

    async def open(self, name: str) -> None:
        settings = self._settings
        self._connection = await connect(settings.amqp_url, name=name)
        await declare_topology(self._connection)
        self._publisher = EventPublisher(self._connection,
                                         max_buffer=settings.event_buffer_max)
        await self._publisher.start()
        self._rpc = RpcClient(self._connection, default_timeout_ms=settings.rpc_timeout_ms)
        await self._rpc.start()

    async def serve(self, queue: str, handlers: Mapping[str, Handler], *, prefetch: int
                    ) -> Stop:
        server = RpcServer(self._connection, queue, handlers, prefetch=prefetch)
        await server.start()
        return lambda: server.stop(self._settings.shutdown_grace_s)

    async def consume(self, queue: EventQueue, handler: EventHandler, *, prefetch: int,
                      max_retries: int) -> Stop:
        consumer = EventConsumer(self._connection, queue, handler, prefetch=prefetch,
                                 max_retries=max_retries)
        await consumer.start()
        return lambda: consumer.stop(self._settings.shutdown_grace_s)

    async def publish_confirmed(self, routing_key: str, body: bytes, *,
                                delay_s: float | None = None, wait_s: float | None = None
                                ) -> None:
        if self._confirmed is None or self._confirmed.is_closed:
            self._confirmed = await self._connection.channel(publisher_confirms=True)
            self._exchange = await declare_events_exchange(self._confirmed)
            self._delay_queues.clear()
        assert self._exchange is not None
        wait = None if delay_s is None else max(wait_s if wait_s is not None else delay_s, 0.001)
        # the routing key rides in a header too: a delayed copy is dead-lettered under it, and
        # a retried one travels through the default exchange (contracts.events)
        message = aio_pika.Message(body, content_type="application/json",
                                   delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                                   expiration=wait,
                                   headers={HEADER_BATCH_SIZE: 1, HEADER_ROUTING_KEY: routing_key})
        if delay_s is None:
            await self._exchange.publish(message, routing_key=routing_key, timeout=10)
            return
        queue = delay_queue_name(routing_key, delay_s)
        if queue not in self._delay_queues:
            await declare_delay_queue(self._confirmed, routing_key, delay_s)
            self._delay_queues.add(queue)
        await self._confirmed.default_exchange.publish(message, routing_key=queue, timeout=10)

    async def close(self) -> None:
        if self._confirmed is not None and not self._confirmed.is_closed:
            await self._confirmed.close()
        if self._rpc is not None:
            await self._rpc.close()
        if self._publisher is not None:
            await self._publisher.close(timeout=self._settings.shutdown_grace_s)
        if self._connection is not None:
            await self._connection.close()


@dataclass
class MemoryBus:
    """The broker itself, in memory: queues shared by every `MemoryBroker` attached to it."""

    servers: dict[str, list[Mapping[str, Handler]]] = field(
        default_factory=lambda: defaultdict(list))
    consumers: dict[str, list[asyncio.Queue[bytes]]] = field(
        default_factory=lambda: defaultdict(list))
    bindings: dict[str, list[EventQueue]] = field(default_factory=lambda: defaultdict(list))
    dead_letters: dict[str, list[bytes]] = field(default_factory=lambda: defaultdict(list))
    # what a durable queue holds while nobody consumes it
    backlog: dict[str, list[bytes]] = field(default_factory=lambda: defaultdict(list))
    _turn: itertools.count[int] = field(default_factory=itertools.count)

    def __post_init__(self) -> None:
        for queue in EVENT_QUEUES:  # as `declare_topology` declares them on RabbitMQ
            self.bind(queue)

    def route(self, routing_key: str, body: bytes) -> None:
        """One message to every queue bound to `routing_key`, to one of its consumers."""
        for queue in self.bindings.get(routing_key, []):
            waiting = self.consumers.get(queue.name)
            if waiting:
                waiting[next(self._turn) % len(waiting)].put_nowait(body)
            else:
                self.backlog[queue.name].append(body)

    def bind(self, queue: EventQueue) -> None:
        for key in queue.bindings:
            if queue not in self.bindings[key]:
                self.bindings[key].append(queue)

    async def call(self, queue: str, operation: str, request: RpcRequest) -> RpcResult:
        servers = self.servers.get(queue)
        if not servers:
            raise ServiceUnavailable(f"nobody serves {queue}")
        handlers = servers[next(self._turn) % len(servers)]
        decoded = RpcRequest.from_wire(orjson.loads(orjson.dumps(request.to_wire())))
        return result_of(await dispatch(handlers, operation, decoded))


class MemoryPublisher:
    def __init__(self, bus: MemoryBus) -> None:
        self._bus = bus
        self.published: list[Event] = []

    def publish(self, event: Event) -> None:
        self.published.append(event)
        self._bus.route(event.ROUTING_KEY, encode_events([event]))


class MemoryRpcClient:
    def __init__(self, bus: MemoryBus) -> None:
        self._bus = bus

    async def call(self, queue: str, declared: Operation, request: RpcRequest | None = None,
                   *, timeout_ms: int | None = None, deadline_ms: int | None = None,
                   idempotent: bool = False) -> RpcResult:
        return await self._bus.call(queue, declared.name, request or RpcRequest())


class MemoryBroker:
    """One process's connection to a `MemoryBus` (several may share one bus, as replicas
    and services share RabbitMQ)."""

    def __init__(self, bus: MemoryBus | None = None) -> None:
        self.bus = bus or MemoryBus()
        self._publisher = MemoryPublisher(self.bus)
        self._rpc = MemoryRpcClient(self.bus)
        self._open = False

    @property
    def publisher(self) -> MemoryPublisher:
        return self._publisher

    @property
    def rpc(self) -> MemoryRpcClient:
        return self._rpc

    @property
    def connected(self) -> bool:
        return self._open

    async def open(self, name: str) -> None:
        self._open = True

    async def serve(self, queue: str, handlers: Mapping[str, Handler], *, prefetch: int
                    ) -> Stop:
        self.bus.servers[queue].append(handlers)

        async def stop() -> None:
            self.bus.servers[queue].remove(handlers)

        return stop

    async def consume(self, queue: EventQueue, handler: EventHandler, *, prefetch: int,
                      max_retries: int) -> Stop:
        self.bus.bind(queue)
        inbox: asyncio.Queue[bytes] = asyncio.Queue()
        self.bus.consumers[queue.name].append(inbox)
        for body in self.bus.backlog.pop(queue.name, []):
            inbox.put_nowait(body)
        routing_key = queue.bindings[0]

        async def deliver(body: bytes) -> None:
            batch = decode_events(routing_key, body)
            if batch.malformed:
                self.bus.dead_letters[queue.name].append(batch.malformed_body())
            if not batch.events:
                return
            for _attempt in range(max_retries + 1):
                try:
                    await handler(batch.events)
                    return
                except Exception:  # tried again, as EventConsumer republishes it
                    continue
            self.bus.dead_letters[queue.name].append(encode_events(batch.events))

        async def work() -> None:
            while True:
                body = await inbox.get()
                try:
                    await deliver(body)
                finally:
                    inbox.task_done()

        workers = [asyncio.create_task(work()) for _ in range(max(1, prefetch))]

        async def stop() -> None:
            self.bus.consumers[queue.name].remove(inbox)
            await inbox.join()  # what was delivered is handled, as a grace period allows
            for worker in workers:
                worker.cancel()
            await asyncio.gather(*workers, return_exceptions=True)

        return stop

    async def publish_confirmed(self, routing_key: str, body: bytes, *,
                                delay_s: float | None = None, wait_s: float | None = None
                                ) -> None:
        wait = wait_s if wait_s is not None else delay_s
        if wait is None:
            self.bus.route(routing_key, body)
        else:  # held in this process's memory: what a server's delay queue does
            asyncio.get_running_loop().call_later(wait, self.bus.route, routing_key, body)

    async def close(self) -> None:
        self._open = False
