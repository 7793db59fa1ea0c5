"""Broker connection and topology, identical on RabbitMQ 3.10 and 4.x.

- `AMQP_URL` may name several nodes of one cluster, comma-separated. A process connects to
  one of them (in an order shuffled per process, so processes spread over the nodes) and,
  when that connection drops or an attempt fails, tries the next one; each full round of
  failed attempts waits longer (capped). aio-pika's robust connection restores every channel,
  queue, binding and consumer on whichever node it reaches, so a per-process exclusive queue
  is declared again there.
- `connect_robust` gives up if the very first connect fails, so start-up retries here.
- Work queues are durable; event and RPC queues are quorum queues because they must survive
  a node failure (an RPC queue on one node made every call to its service fail while that
  node was down); per-process queues are exclusive (RabbitMQ 4.3 refuses transient
  non-exclusive ones).
- Dead-lettering is explicit (publish to `gw.dlx`, then ack), not a queue argument: with a
  queue-level DLX every RPC request that expires would be dead-lettered too, burying the real
  poison messages.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Sequence
from typing import Any

import aio_pika
from aio_pika.abc import (
    AbstractChannel,
    AbstractConnection,
    AbstractExchange,
    AbstractIncomingMessage,
    AbstractQueue,
    AbstractRobustConnection,
    FieldValue,
)
from aio_pika.robust_connection import RobustConnection
from yarl import URL

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
CLASSIC: dict[str, FieldValue] = {"x-queue-type": "classic"}


def broker_urls(value: str) -> list[str]:
    """The nodes `AMQP_URL` names: one URL, or several separated by commas (a comma inside a
    password is written %2C)."""
    urls = [part.strip() for part in value.split(",") if part.strip()]
    if not urls:
        raise ValueError("AMQP_URL names no broker")
    for url in urls:
        try:
            parsed = URL(url)
            valid = parsed.scheme in ("amqp", "amqps") and bool(parsed.host)
            parsed.port  # noqa: B018 (yarl checks the port when it is read)
        except ValueError:
            valid = False
        if not valid:
            raise ValueError("not an amqp:// or amqps:// URL in AMQP_URL (a comma in a "
                             f"password is written %2C): {_redacted(url)}")
    return urls


def _redacted(url: str) -> str:
    try:
        parsed = URL(url)
        return str(parsed.with_password("******")) if parsed.password else url
    except ValueError:
        return "<unparsable>"


# Within a round the next node is tried almost at once (a stopped node refuses in
# microseconds); after a whole round failed the wait doubles, up to a cap.
NEXT_NODE_DELAY_S = 0.1
RECONNECT_DELAY_S = 1.0
START_DELAY_S = 0.2
MAX_ROUND_DELAY_S = 5.0


class NodeRotation:
    """Which node to try next, and how long to wait before trying it."""

    def __init__(self, urls: Sequence[str], *, shuffle: bool = True) -> None:
        self.urls = list(urls)
        if shuffle:
            random.shuffle(self.urls)
        self._index = 0
        self._failed_in_round = 0
        self._rounds_failed = 0

    @property
    def current(self) -> str:
        return self.urls[self._index]

    def failed(self, first_round_delay_s: float) -> float:
        """The current node failed: move to the next; the delay before trying it."""
        self._index = (self._index + 1) % len(self.urls)
        self._failed_in_round += 1
        if self._failed_in_round < len(self.urls):
            return NEXT_NODE_DELAY_S
        self._failed_in_round = 0
        self._rounds_failed += 1
        delay = min(first_round_delay_s * 2.0 ** (self._rounds_failed - 1), MAX_ROUND_DELAY_S)
        return delay * random.uniform(0.8, 1.2)  # replicas of one outage do not retry in step

    def connected(self) -> None:
        self._failed_in_round = 0
        self._rounds_failed = 0


class ClusterConnection(RobustConnection):
    """A robust connection that reconnects to the next node of its list, not only to the one
    it lost. aio-pika's reconnect loop reads `self.url` for every attempt and calls
    `_on_connection_close` both when a connection drops and when an attempt fails, so that
    is where the node and the wait before the next attempt (`reconnect_interval`) change.
    With one node it reconnects every `RECONNECT_DELAY_S`, as before."""

    def __init__(self, rotation: NodeRotation, **kwargs: Any) -> None:
        super().__init__(URL(rotation.current), **kwargs)
        self._rotation = rotation

    async def _on_connection_close(self, closing: asyncio.Future[Any]) -> None:
        # Failures before the first connection are the start-up loop's (`connect`) to count.
        if self.connection_attempt and not self._close_called and len(self._rotation.urls) > 1:
            self.reconnect_interval = self._rotation.failed(RECONNECT_DELAY_S)
            self.url = URL(self._rotation.current)
        await super()._on_connection_close(closing)

    async def _on_connected(self) -> None:
        await super()._on_connected()
        self._rotation.connected()


async def connect(
    url: str, *, name: str, give_up_after: float | None = None, shuffle: bool = True
) -> AbstractRobustConnection:
    """Connect to one of the nodes `url` names (`broker_urls`), retrying through them with
    capped backoff until one answers (or `give_up_after` s)."""
    rotation = NodeRotation(broker_urls(url), shuffle=shuffle)
    started = time.monotonic()
    attempt = 0
    while True:
        attempt += 1
        connection = ClusterConnection(rotation, client_properties={"connection_name": name},
                                       reconnect_interval=RECONNECT_DELAY_S)
        try:
            await connection.connect(timeout=5)
        except (TimeoutError, OSError, aio_pika.exceptions.AMQPError) as exc:
            waited = time.monotonic() - started
            if give_up_after is not None and waited >= give_up_after:
                raise
            if attempt == 1 or attempt % 10 == 0:
                log.warning("broker not reachable yet, retrying", error=repr(exc),
                            node=_redacted(rotation.current), waited_s=round(waited, 1))
            await asyncio.sleep(rotation.failed(START_DELAY_S))
            continue
        connection.close_callbacks.add(_log_connection_lost)
        connection.reconnect_callbacks.add(
            lambda conn: log.info("broker connection restored", node=str(conn)))
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


async def declare_rpc_queue(connection: AbstractConnection, channel: AbstractChannel,
                            name: str) -> AbstractQueue:
    """A quorum queue, so that calls survive the loss of a node. Quorum queues drop expired
    messages (per-message TTL, which carries the caller's deadline) from RabbitMQ 3.10 on.

    A broker that ran an earlier version holds `name` as a classic queue, and declaring it
    as a quorum queue fails (PRECONDITION_FAILED): `upgrade_rpc_queue` replaces it."""
    try:
        queue = await channel.declare_queue(name, durable=True, arguments=QUORUM)
    except aio_pika.exceptions.ChannelPreconditionFailed:
        # the failed declare closed the channel; aio-pika's robust channel reopens it
        await upgrade_rpc_queue(connection, name)
        queue = await channel.declare_queue(name, durable=True, arguments=QUORUM)
    await declare_dead_letter(channel, name)
    return queue


UPGRADE_WAIT_S = 30.0


async def upgrade_rpc_queue(connection: AbstractConnection, name: str,
                            wait_s: float = UPGRADE_WAIT_S) -> None:
    """Delete the classic queue `name` once it is empty, so it can be declared again as a
    quorum queue. Requests still in it are served or expire within their deadline; replicas
    of the earlier version that consume it lose their consumer (a rolling upgrade replaces
    them anyway). Each step runs on a channel of its own: a refused declare closes its
    channel."""
    deadline = time.monotonic() + wait_s
    while True:
        channel = await connection.channel(publisher_confirms=False)
        try:
            # Still classic? (Another replica may have upgraded it meanwhile: then this
            # declare is refused and there is nothing to do.)
            await channel.declare_queue(name, durable=True, arguments=CLASSIC)
        except aio_pika.exceptions.ChannelPreconditionFailed:
            return
        try:
            underlay = await channel.get_underlay_channel()
            await underlay.queue_delete(name, if_empty=True)
            log.warning("replaced a classic RPC queue by a quorum queue", queue=name)
            return
        except aio_pika.exceptions.ChannelPreconditionFailed:  # not empty yet
            if time.monotonic() >= deadline:
                raise RuntimeError(
                    f"{name} is a classic queue that still holds messages after {wait_s} s; "
                    f"delete it (rabbitmqctl delete_queue {name}) so it can be declared "
                    "as a quorum queue") from None
            await asyncio.sleep(0.5)
        finally:
            if not channel.is_closed:
                await channel.close()


async def declare_event_queue(
    channel: AbstractChannel, name: str, bindings: tuple[str, ...]
) -> AbstractQueue:
    exchange = await declare_events_exchange(channel)
    queue = await channel.declare_queue(name, durable=True, arguments=QUORUM)
    for key in bindings:
        await queue.bind(exchange, routing_key=key)
    await declare_dead_letter(channel, name)
    return queue


def delay_queue_name(routing_key: str, delay_s: float) -> str:
    return f"delay.{routing_key}.{delay_s:g}s"


async def declare_delay_queue(channel: AbstractChannel, routing_key: str, delay_s: float
                              ) -> AbstractQueue:
    """Where a message waits before it goes to `gw.events` under `routing_key`: a quorum queue
    nobody consumes, whose messages expire (each its own expiration) and are dead-lettered
    to the exchange. `at-least-once` dead-lettering (which needs `overflow: reject-publish`),
    since quorum queues otherwise dead-letter at most once. One queue per routing key and
    nominal delay, because a queue expires only its head: a 10 h message ahead of a 5 s one
    would hold it for 10 h; jitter within a queue only reorders by that jitter. Another
    delay declares another queue, never this one with other arguments."""
    return await channel.declare_queue(delay_queue_name(routing_key, delay_s), durable=True,
                                       arguments={
        **QUORUM,
        "x-dead-letter-exchange": EVENTS_EXCHANGE,
        "x-dead-letter-routing-key": routing_key,
        "x-dead-letter-strategy": "at-least-once",
        "x-overflow": "reject-publish",
    })


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
