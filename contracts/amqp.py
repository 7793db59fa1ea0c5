"""Broker connection and topology, identical on RabbitMQ 3.10 and 4.x.

- `connect_robust` gives up if the very first connect fails, so start-up retries here.
- Work queues are durable; event queues are quorum queues because they hold data that must
  survive a node failure; per-process queues are exclusive (RabbitMQ 4.3 refuses transient
  non-exclusive ones).
- Dead-lettering is explicit (publish to `gw.dlx`, then ack), not a queue argument: with a
  queue-level DLX every RPC request that expires would be dead-lettered too, burying the real
  poison messages.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aio_pika
from aio_pika.abc import (
    AbstractChannel,
    AbstractExchange,
    AbstractIncomingMessage,
    AbstractQueue,
    AbstractRobustConnection,
    FieldValue,
)

from contracts.logging import get_logger
from contracts.names import (
    DEAD_LETTER_EXCHANGE,
    EVENT_QUEUES,
    EVENTS_EXCHANGE,
    HEADER_DEAD_REASON,
    HEADER_SOURCE_QUEUE,
    dead_letter_queue,
)

log = get_logger(__name__)

QUORUM: dict[str, FieldValue] = {"x-queue-type": "quorum"}


async def connect(
    url: str, *, name: str, give_up_after: float | None = None
) -> AbstractRobustConnection:
    """Connect, retrying with capped backoff until the broker answers (or `give_up_after` s)."""
    started = time.monotonic()
    delay = 0.2
    attempt = 0
    while True:
        attempt += 1
        try:
            connection = await aio_pika.connect_robust(
                url, client_properties={"connection_name": name}, timeout=5,
                reconnect_interval=1,
            )
        except (TimeoutError, OSError, aio_pika.exceptions.AMQPError) as exc:
            waited = time.monotonic() - started
            if give_up_after is not None and waited >= give_up_after:
                raise
            if attempt == 1 or attempt % 10 == 0:
                log.warning("broker not reachable yet, retrying", error=repr(exc),
                            waited_s=round(waited, 1))
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)
            continue
        connection.close_callbacks.add(_log_connection_lost)
        connection.reconnect_callbacks.add(lambda _conn: log.info("broker connection restored"))
        return connection


def _log_connection_lost(_connection: object, exc: BaseException | None) -> None:
    if exc is not None and not isinstance(exc, asyncio.CancelledError):  # not our own close()
        log.warning("broker connection lost; reconnecting", error=repr(exc))


async def declare_events_exchange(channel: AbstractChannel) -> AbstractExchange:
    return await channel.declare_exchange(
        EVENTS_EXCHANGE, aio_pika.ExchangeType.TOPIC, durable=True
    )


async def declare_dead_letter(channel: AbstractChannel, source_queue: str) -> AbstractQueue:
    """The durable queue that keeps `source_queue`'s poison messages visible in the UI."""
    dlx = await channel.declare_exchange(
        DEAD_LETTER_EXCHANGE, aio_pika.ExchangeType.DIRECT, durable=True
    )
    queue = await channel.declare_queue(
        dead_letter_queue(source_queue), durable=True, arguments=QUORUM
    )
    await queue.bind(dlx, routing_key=source_queue)
    return queue


async def declare_rpc_queue(channel: AbstractChannel, name: str) -> AbstractQueue:
    # Classic durable: an RPC request is worthless once its caller's deadline passed, and
    # per-message TTL is what drops it.
    queue = await channel.declare_queue(name, durable=True)
    await declare_dead_letter(channel, name)
    return queue


async def declare_event_queue(
    channel: AbstractChannel, name: str, bindings: tuple[str, ...]
) -> AbstractQueue:
    exchange = await declare_events_exchange(channel)
    queue = await channel.declare_queue(name, durable=True, arguments=QUORUM)
    for key in bindings:
        await queue.bind(exchange, routing_key=key)
    await declare_dead_letter(channel, name)
    return queue


async def declare_topology(connection: AbstractRobustConnection) -> None:
    """Every process declares the shared topology at start, so that no event published before
    its consumer first ran is unroutable (and thus silently lost)."""
    channel = await connection.channel()
    try:
        await declare_events_exchange(channel)
        for spec in EVENT_QUEUES:
            await declare_event_queue(channel, spec.name, spec.bindings)
    finally:
        await channel.close()


async def publish_dead_letter(
    channel: AbstractChannel, source_queue: str, body: bytes, headers: dict[str, Any], reason: str
) -> None:
    """Publish on a confirm channel, so the caller may ack the original afterwards."""
    exchange = await channel.get_exchange(DEAD_LETTER_EXCHANGE)
    await exchange.publish(
        aio_pika.Message(
            body,
            headers={
                **headers, HEADER_DEAD_REASON: reason[:500], HEADER_SOURCE_QUEUE: source_queue,
            },
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            content_type="application/octet-stream",
        ),
        routing_key=source_queue,
    )


class QueueConsumer:
    """What RPC servers and event consumers share: consume one queue, track the handlers in
    flight, and stop gracefully (take nothing more, let those in flight finish, close)."""

    def __init__(self, queue_name: str) -> None:
        self.queue_name = queue_name
        self._queue: AbstractQueue | None = None
        self._consumer_tag: str | None = None
        self._channels: list[AbstractChannel] = []
        self._in_flight: set[asyncio.Task[Any]] = set()

    async def _consume(self, queue: AbstractQueue, channels: list[AbstractChannel]) -> None:
        self._queue, self._channels = queue, channels
        self._consumer_tag = await queue.consume(self._on_delivery)

    async def _on_delivery(self, message: AbstractIncomingMessage) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._in_flight.add(task)
        try:
            await self._process(message)
        finally:
            if task is not None:
                self._in_flight.discard(task)

    async def _process(self, message: AbstractIncomingMessage) -> None:
        raise NotImplementedError

    async def stop(self, grace_s: float = 10.0) -> None:
        if self._queue is not None and self._consumer_tag is not None:
            try:
                await self._queue.cancel(self._consumer_tag)
            except Exception:  # the connection may already be gone
                log.warning("could not cancel consumer", queue=self.queue_name)
            self._consumer_tag = None
        if self._in_flight:
            await asyncio.wait(set(self._in_flight), timeout=grace_s)
        for channel in self._channels:
            if not channel.is_closed:
                await channel.close()
