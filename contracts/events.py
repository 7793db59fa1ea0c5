"""Events on the `gw.events` topic exchange: a buffered publisher, a consumer of a durable
work queue, and a per-process exclusive subscription.

Every event message is a batch of typed events of one routing key (`contracts.messages`
gives the types and the wire format). One AMQP message costs ~150 µs of Python CPU on each
side, so per-request events travel many to a message; low-volume events use the same format
so consumers have one code path.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import aio_pika
from aio_pika.abc import (
    AbstractChannel,
    AbstractExchange,
    AbstractIncomingMessage,
    AbstractRobustConnection,
)

from contracts.amqp import (
    QueueConsumer,
    declare_dead_letter,
    declare_event_queue,
    declare_events_exchange,
    publish_dead_letter,
)
from contracts.logging import get_logger
from contracts.messages import DecodedBatch, Event, MalformedMessage, decode_events, encode_events
from contracts.metrics import (
    EVENT_BUFFER_DEPTH,
    EVENTS_CONSUMED,
    EVENTS_PUBLISHED,
    EVENTS_SHED,
    MESSAGES_DEAD_LETTERED,
)
from contracts.names import HEADER_BATCH_SIZE, HEADER_RETRIES, HEADER_ROUTING_KEY, EventQueue
from contracts.tasks import stop_task

log = get_logger(__name__)

# A consumer is a typed function: it gets the decoded events of one message (all of one type).
EventHandler = Callable[[list[Any]], Awaitable[None]]


class EventPublisher:
    """`publish()` never blocks and never raises: events wait in a bounded buffer and a
    background task sends them with publisher confirms, retrying across reconnects.

    Batches: before every batch the sender lingers up to `linger_s` unless `max_batch` events
    already wait (a full batch goes at once), and while one batch waits for its confirm the
    next accumulates. Lingering after a send too, not only after a quiet spell, is what
    keeps batches large under steady load: without it each batch held only the events of
    one confirm round trip (about 40 at 2,000 requests/s), and the gateway spent more CPU
    per request on AMQP messages, its own and those its monitor relay receives.
    """

    def __init__(
        self,
        connection: AbstractRobustConnection,
        *,
        max_buffer: int = 100_000,
        max_batch: int = 500,
        linger_s: float = 0.05,
        shed_log_interval_s: float = 10.0,
    ) -> None:
        self._connection = connection
        self._max_buffer = max_buffer
        self._max_batch = max_batch
        self._linger_s = linger_s
        self._full = asyncio.Event()
        self._shed_log_interval_s = shed_log_interval_s
        self._buffer: deque[Event] = deque()
        self._wakeup = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._task: asyncio.Task[None] | None = None
        self._channel: AbstractChannel | None = None
        self._exchange: AbstractExchange | None = None
        self._shed_since_log = 0
        self._last_shed_log = 0.0

    @property
    def pending(self) -> int:
        return len(self._buffer)

    async def start(self) -> None:
        self._channel = await self._connection.channel(publisher_confirms=True)
        self._exchange = await declare_events_exchange(self._channel)
        self._task = asyncio.create_task(self._run(), name="event-publisher")

    def publish(self, event: Event) -> None:
        if len(self._buffer) >= self._max_buffer:
            self._shed(event.ROUTING_KEY)
            return
        self._buffer.append(event)
        self._idle.clear()
        self._wakeup.set()
        if len(self._buffer) >= self._max_batch:
            self._full.set()

    async def flush(self, timeout: float | None = None) -> bool:  # noqa: ASYNC109
        """Wait until everything buffered so far is confirmed; False on timeout."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except TimeoutError:
            return False
        return True

    async def close(self, timeout: float = 5.0) -> None:  # noqa: ASYNC109
        if not await self.flush(timeout):
            log.warning("events not published before shutdown", pending=len(self._buffer))
        await stop_task(self._task)
        if self._channel is not None and not self._channel.is_closed:
            await self._channel.close()

    def _shed(self, routing_key: str) -> None:
        EVENTS_SHED.labels(routing_key).inc()
        self._shed_since_log += 1
        now = time.monotonic()
        if now - self._last_shed_log >= self._shed_log_interval_s:
            log.error("event buffer full, shedding events", shed=self._shed_since_log,
                      max_buffer=self._max_buffer)
            self._shed_since_log = 0
            self._last_shed_log = now

    def _take_batch(self) -> tuple[str, list[Event]]:
        """The oldest events of one routing key, in order, up to max_batch (not removed)."""
        routing_key = self._buffer[0].ROUTING_KEY
        batch: list[Event] = []
        for event in self._buffer:
            if event.ROUTING_KEY != routing_key or len(batch) >= self._max_batch:
                break
            batch.append(event)
        return routing_key, batch

    async def _run(self) -> None:
        delay = 0.1
        while True:
            if not self._buffer:
                self._idle.set()
                self._wakeup.clear()
                await self._wakeup.wait()
            # Linger so one message carries many events: at ~150 µs of Python CPU per AMQP
            # message, a message per request would cost the gateway a large share of its
            # throughput. A full batch goes at once.
            if self._linger_s and len(self._buffer) < self._max_batch:
                self._full.clear()
                try:
                    await asyncio.wait_for(self._full.wait(), self._linger_s)
                except TimeoutError:
                    pass
            EVENT_BUFFER_DEPTH.set(len(self._buffer))
            routing_key, batch = self._take_batch()
            try:
                await self._send(routing_key, batch)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # broker gone or reconnecting: keep the batch, retry
                log.warning("event publish failed, will retry", error=repr(exc),
                            pending=len(self._buffer))
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
                continue
            delay = 0.1
            for _ in batch:
                self._buffer.popleft()
            EVENT_BUFFER_DEPTH.set(len(self._buffer))
            EVENTS_PUBLISHED.labels(routing_key).inc(len(batch))

    async def _send(self, routing_key: str, batch: list[Event]) -> None:
        assert self._exchange is not None
        await self._exchange.publish(
            aio_pika.Message(
                encode_events(batch),
                content_type="application/json",
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                headers={HEADER_BATCH_SIZE: len(batch)},
            ),
            routing_key=routing_key,
            timeout=10,
        )


def dead_letter_headers(message: AbstractIncomingMessage,
                        count: int | None = None) -> dict[str, Any]:
    """The message's headers, naming its routing key (a retried copy already does) and, when
    only some of its events are dead-lettered, how many."""
    headers = {HEADER_ROUTING_KEY: message.routing_key or "", **(message.headers or {})}
    if count is not None:
        headers[HEADER_BATCH_SIZE] = count
    return headers


async def decode_or_dead_letter(channel: AbstractChannel, source: str, routing_key: str,
                                message: AbstractIncomingMessage) -> DecodedBatch:
    """The message's events that decode. The rest go to `<source>.dead` as a message of
    their own, with the reason; a body that is no batch at all goes there whole."""
    try:
        batch = decode_events(routing_key, message.body)
    except MalformedMessage as exc:
        body, reason, count = message.body, f"malformed: {exc}", None
        batch = DecodedBatch([])
    else:
        if not batch.malformed:
            return batch
        body, reason = batch.malformed_body(), batch.malformed_reason()
        count = len(batch.malformed)
    log.warning("dead-lettering malformed events", source=source, routing_key=routing_key,
                reason=reason)
    await publish_dead_letter(channel, source, body, dead_letter_headers(message, count),
                              reason)
    MESSAGES_DEAD_LETTERED.labels(source, "malformed").inc()
    return batch


class EventConsumer(QueueConsumer):
    """Consume a durable event queue with a typed handler: ack only after the handler
    succeeded; after a failure republish with a retry count (after a back-off), and
    dead-letter after `max_retries`. Events that do not decode are dead-lettered on their
    own; the rest of their message is still handled.

    The retry count travels in a header rather than relying on the broker's delivery count,
    which classic queues on RabbitMQ 3.10 do not have.
    """

    def __init__(
        self,
        connection: AbstractRobustConnection,
        spec: EventQueue,
        handler: EventHandler,
        *,
        prefetch: int = 16,
        max_retries: int = 5,
        retry_backoff_s: float = 0.2,
    ) -> None:
        super().__init__(spec.name)
        self._connection = connection
        self._spec = spec
        self._handler = handler
        self._prefetch = prefetch
        self._max_retries = max_retries
        self._retry_backoff_s = retry_backoff_s
        self._channel: AbstractChannel | None = None

    async def start(self) -> None:
        # Confirms on: a retry copy must be safely queued before the original is acked.
        self._channel = await self._connection.channel(publisher_confirms=True)
        await self._channel.set_qos(prefetch_count=self._prefetch)
        queue = await declare_event_queue(self._channel, self._spec.name, self._spec.bindings)
        await self._consume(queue, [self._channel])

    async def _process(self, message: AbstractIncomingMessage) -> None:
        assert self._channel is not None
        queue = self._spec.name
        # A retried copy travels through the default exchange: its own key is in a header.
        routing_key = str((message.headers or {}).get(HEADER_ROUTING_KEY)
                          or message.routing_key or "")
        batch = await decode_or_dead_letter(self._channel, queue, routing_key, message)
        if not batch.events:
            await message.ack()
            EVENTS_CONSUMED.labels(queue, "dead_lettered").inc()
            return
        try:
            await self._handler(batch.events)
        except Exception as exc:
            await self._retry_or_dead_letter(message, batch, routing_key, exc)
            return
        await message.ack()
        EVENTS_CONSUMED.labels(queue, "ok").inc()

    async def _retry_or_dead_letter(self, message: AbstractIncomingMessage,
                                    batch: DecodedBatch, routing_key: str,
                                    exc: Exception) -> None:
        assert self._channel is not None
        queue = self._spec.name
        # Only the events that decoded travel on: the others are dead-lettered already.
        body = encode_events(batch.events) if batch.malformed else message.body
        retries = _count((message.headers or {}).get(HEADER_RETRIES))
        if retries >= self._max_retries:
            log.exception("event handler failed; dead-lettering", queue=queue,
                          retries=retries)
            await self._dead_letter(body, message, f"failed {retries + 1} times: {exc!r}",
                                    len(batch.events))
            await message.ack()
            return
        log.warning("event handler failed; will retry", queue=queue, retries=retries,
                    error=repr(exc))
        await asyncio.sleep(self._retry_backoff_s * (2**retries))
        try:
            await self._channel.default_exchange.publish(
                aio_pika.Message(
                    body,
                    content_type=message.content_type,
                    delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                    headers={**(message.headers or {}), HEADER_RETRIES: retries + 1,
                             HEADER_ROUTING_KEY: routing_key,
                             HEADER_BATCH_SIZE: len(batch.events)},
                ),
                routing_key=queue,
            )
        except Exception:  # the copy is not safely queued: let the broker redeliver
            await message.nack(requeue=True)
            return
        await message.ack()
        EVENTS_CONSUMED.labels(queue, "retried").inc()

    async def _dead_letter(self, body: bytes, message: AbstractIncomingMessage, reason: str,
                           count: int) -> None:
        assert self._channel is not None
        headers = dead_letter_headers(message, count)
        await publish_dead_letter(self._channel, self._spec.name, body, headers, reason)
        MESSAGES_DEAD_LETTERED.labels(self._spec.name, "failed").inc()
        EVENTS_CONSUMED.labels(self._spec.name, "dead_lettered").inc()


class ExclusiveSubscription:
    """This process's own view of `gw.events`: an exclusive, auto-deleted queue bound to
    `patterns` that lives and dies with the process, so every process sees every event
    (config followers, monitor relays) and nothing piles up for a process that is gone.

    Delivery is at-most-once per process by design (a process that is not running has
    nothing to catch up on; config followers resync). A handler error is logged and the
    message acked; events that do not decode are dead-lettered under `purpose`, so they
    stay visible in the management UI (`<purpose>.dead`).
    """

    def __init__(self, connection: AbstractRobustConnection, purpose: str,
                 patterns: Sequence[str], handler: EventHandler, *,
                 prefetch: int = 64, wanted: Callable[[str], bool] | None = None) -> None:
        """`wanted(routing_key)`, when given, is asked before a message is decoded: a message
        nobody in this process wants right now is acked without the cost of decoding it."""
        self._connection = connection
        self._wanted = wanted
        self._purpose = purpose
        self._patterns = tuple(patterns)
        self._handler = handler
        self._prefetch = prefetch
        self._channel: AbstractChannel | None = None
        self.queue_name = f"{purpose}.{os.getpid()}.{uuid.uuid4().hex[:8]}"
        self._in_order = asyncio.Lock()

    async def start(self) -> None:
        self._channel = await self._connection.channel(publisher_confirms=True)
        await self._channel.set_qos(prefetch_count=self._prefetch)
        exchange = await declare_events_exchange(self._channel)
        await declare_dead_letter(self._channel, self._purpose)
        queue = await self._channel.declare_queue(self.queue_name, exclusive=True,
                                                  auto_delete=True)
        for pattern in self._patterns:
            await queue.bind(exchange, pattern)
        await queue.consume(self._on_message)

    async def close(self) -> None:
        if self._channel is not None and not self._channel.is_closed:
            await self._channel.close()

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        # aio-pika runs each delivery as a task of its own: without the lock a handler that
        # awaits would be overtaken by later events (a route created, then deleted, applied
        # in the other order).
        async with self._in_order:
            await self._handle(message)

    async def _handle(self, message: AbstractIncomingMessage) -> None:
        assert self._channel is not None
        if self._wanted is not None and not self._wanted(message.routing_key or ""):
            await message.ack()
            return
        try:
            batch = await decode_or_dead_letter(self._channel, self._purpose,
                                                message.routing_key or "", message)
            if batch.events:
                await self._handler(batch.events)
        except Exception:
            log.exception("event subscription handler failed", purpose=self._purpose,
                          routing_key=message.routing_key)
        try:
            await message.ack()
        except Exception:  # channel gone: the exclusive queue went with it
            log.warning("could not ack a subscription message", purpose=self._purpose)


def _count(header: object) -> int:
    """A count header as we write it (an int); anything else counts as 0."""
    return header if isinstance(header, int) and not isinstance(header, bool) else 0
