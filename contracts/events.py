"""Events on the `gw.events` topic exchange: the batch format, a buffered publisher and a
consumer helper.

Every event message is a batch: body `{"events": [...]}`, all of one routing key. One AMQP
message costs ~150 µs of Python CPU on each side, so per-request events travel many to a
message; low-volume events use the same format so consumers have one code path.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

import aio_pika
import orjson
from aio_pika.abc import (
    AbstractChannel,
    AbstractExchange,
    AbstractIncomingMessage,
    AbstractRobustConnection,
)

from contracts.amqp import (
    QueueConsumer,
    declare_event_queue,
    declare_events_exchange,
    publish_dead_letter,
)
from contracts.logging import get_logger
from contracts.metrics import (
    EVENT_BUFFER_DEPTH,
    EVENTS_CONSUMED,
    EVENTS_PUBLISHED,
    EVENTS_SHED,
    MESSAGES_DEAD_LETTERED,
)
from contracts.names import HEADER_BATCH_SIZE, HEADER_RETRIES, HEADER_ROUTING_KEY, EventQueue

log = get_logger(__name__)

Event = dict[str, Any]
BatchHandler = Callable[[list[Event], str], Awaitable[None]]


def encode_batch(events: list[Event]) -> bytes:
    return orjson.dumps({"events": events})


def decode_batch(body: bytes) -> list[Event]:
    """Raise ValueError for anything that is not a batch of JSON objects."""
    try:
        decoded = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"not JSON: {exc}") from None
    events = decoded.get("events") if isinstance(decoded, dict) else None
    if not isinstance(events, list) or not all(isinstance(e, dict) for e in events):
        raise ValueError('an event message is {"events": [object, ...]}')
    return events


class EventPublisher:
    """`publish()` never blocks and never raises: events wait in a bounded buffer and a
    background task sends them with publisher confirms, retrying across reconnects.

    Batches: after the first event of a quiet spell the sender lingers up to `linger_s` (or
    until `max_batch` events wait), and while one batch waits for its confirm the next
    accumulates.
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
        self._buffer: deque[tuple[str, Event]] = deque()
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

    def publish(self, routing_key: str, event: Event) -> None:
        if len(self._buffer) >= self._max_buffer:
            self._shed(routing_key)
            return
        self._buffer.append((routing_key, event))
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
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
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
        routing_key = self._buffer[0][0]
        batch: list[Event] = []
        for key, event in self._buffer:
            if key != routing_key or len(batch) >= self._max_batch:
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
                # Linger so one message carries many events: at ~150 µs of Python CPU per
                # AMQP message, a message per request would cost the gateway a large share
                # of its throughput. A full batch goes at once.
                if self._linger_s and len(self._buffer) < self._max_batch:
                    self._full.clear()
                    try:
                        await asyncio.wait_for(self._full.wait(), self._linger_s)
                    except TimeoutError:
                        pass
                continue
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
                encode_batch(batch),
                content_type="application/json",
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                headers={HEADER_BATCH_SIZE: len(batch)},
            ),
            routing_key=routing_key,
            timeout=10,
        )


class EventConsumer(QueueConsumer):
    """Consume a durable event queue: ack only after the handler succeeded; after a failure
    republish with a retry count (after a back-off), and dead-letter after `max_retries`.

    The retry count travels in a header rather than relying on the broker's delivery count,
    which classic queues on RabbitMQ 3.10 do not have.
    """

    def __init__(
        self,
        connection: AbstractRobustConnection,
        spec: EventQueue,
        handler: BatchHandler,
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
        try:
            events = decode_batch(message.body)
        except ValueError as exc:
            await self._dead_letter(message, f"malformed: {exc}", "malformed")
            return
        # A retried copy travels through the default exchange: its own key is in a header.
        routing_key = str((message.headers or {}).get(HEADER_ROUTING_KEY)
                          or message.routing_key or "")
        try:
            await self._handler(events, routing_key)
        except Exception as exc:
            retries = int((message.headers or {}).get(HEADER_RETRIES, 0) or 0)
            if retries >= self._max_retries:
                log.exception("event handler failed; dead-lettering", queue=queue,
                              retries=retries)
                await self._dead_letter(message, f"failed {retries + 1} times: {exc!r}",
                                        "failed")
                return
            log.warning("event handler failed; will retry", queue=queue, retries=retries,
                        error=repr(exc))
            await asyncio.sleep(self._retry_backoff_s * (2**retries))
            try:
                await self._channel.default_exchange.publish(
                    aio_pika.Message(
                        message.body,
                        content_type=message.content_type,
                        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                        headers={**(message.headers or {}), HEADER_RETRIES: retries + 1,
                                 HEADER_ROUTING_KEY: routing_key},
                    ),
                    routing_key=queue,
                )
            except Exception:  # the copy is not safely queued: let the broker redeliver
                await message.nack(requeue=True)
                return
            await message.ack()
            EVENTS_CONSUMED.labels(queue, "retried").inc()
            return
        await message.ack()
        EVENTS_CONSUMED.labels(queue, "ok").inc()

    async def _dead_letter(
        self, message: AbstractIncomingMessage, reason: str, kind: str
    ) -> None:
        assert self._channel is not None
        await publish_dead_letter(
            self._channel, self._spec.name, message.body, dict(message.headers or {}), reason
        )
        await message.ack()
        MESSAGES_DEAD_LETTERED.labels(self._spec.name, kind).inc()
        EVENTS_CONSUMED.labels(self._spec.name, "dead_lettered").inc()
