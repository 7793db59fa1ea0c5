"""The logging service's consumer against the real broker and the default log store
(PostgreSQL): every gateway event stored exactly once, whatever the broker or the consumer
does."""

from __future__ import annotations

import asyncio

import aio_pika

from contracts.amqp import declare_event_queue
from contracts.events import EventConsumer, EventPublisher
from contracts.identity import Caller, Role
from contracts.messages import RequestCompleted, encode_events
from contracts.names import HEADER_DEAD_REASON, EventQueue, RoutingKey, dead_letter_queue
from logging_svc.consumer import RequestLogWriter
from logging_svc.entries import LogFilter, LogRecord
from tests.conftest import TEST_VHOST
from tests.factories import request_completed
from tests.integration.conftest import StoreUnderTest
from tests.support import close_all_connections

ADMIN = Caller("admin", "admin@example.com", Role.ADMIN)


def spec(unique: str) -> EventQueue:
    return EventQueue(unique, (RoutingKey.REQUEST_COMPLETED,))


async def stored_count(under_test: StoreUnderTest, expected: int, within_s: float = 30.0, *,
                       marker: str) -> int:
    """The number of this test's entries (user agent `marker`: the queue is bound to every
    request.completed of the vhost) once it reached `expected` (or the deadline passed)."""
    loop = asyncio.get_running_loop()
    until = loop.time() + within_s
    count = await under_test.count_marked(marker)
    while count < expected and loop.time() < until:
        await asyncio.sleep(0.1)
        count = await under_test.count_marked(marker)
    await asyncio.sleep(0.3)  # anything extra (a duplicate) would show up now
    return await under_test.count_marked(marker)


async def test_a_batch_redelivered_after_a_kill_between_write_and_ack_is_stored_once(
        amqp, unique, default_log_store):
    store = default_log_store.store
    written = asyncio.Event()

    async def write_then_die(events: list[RequestCompleted]) -> None:
        await store.store_once([LogRecord.of_event(e) for e in events])
        written.set()
        await asyncio.Event().wait()  # never returns, so never acks: killed mid-message

    doomed = await amqp("doomed-consumer")
    first = EventConsumer(doomed, spec(unique), write_then_die, prefetch=1)
    await first.start()
    events = [request_completed(i, user_agent=unique) for i in range(50)]
    publisher = EventPublisher(await amqp("publisher"))
    await publisher.start()
    for event in events:
        publisher.publish(event)
    assert await publisher.flush(timeout=10)
    await asyncio.wait_for(written.wait(), 10)
    assert await default_log_store.count_marked(unique) == 50
    await doomed.close()  # the broker requeues the unacked message

    seen: list[int] = []

    async def count_and_store(batch: list[RequestCompleted]) -> None:
        seen.append(sum(event.user_agent == unique for event in batch))
        await store.store_once([LogRecord.of_event(e) for e in batch])

    second = EventConsumer(await amqp("second-consumer"), spec(unique), count_and_store)
    await second.start()
    assert await stored_count(default_log_store, 50, marker=unique) == 50
    assert sum(seen) == 50  # the whole batch came again, and none of it was stored twice
    for sent in events:
        assert await store.by_request_id(ADMIN, sent.request_id) is not None
    await second.stop()
    await publisher.close()


async def test_closing_every_broker_connection_mid_stream_loses_nothing(
        amqp, unique, default_log_store):
    writer = RequestLogWriter(default_log_store.store)
    consumer = EventConsumer(await amqp("consumer"), spec(unique), writer.on_requests)
    await consumer.start()
    publisher = EventPublisher(await amqp("publisher"), max_batch=50, linger_s=0.01)
    await publisher.start()
    total = 2000

    async def keep_publishing() -> None:
        for i in range(total):
            publisher.publish(request_completed(i, user_agent=unique))
            if i % 50 == 0:
                await asyncio.sleep(0.01)

    publishing = asyncio.create_task(keep_publishing())
    await asyncio.sleep(0.15)
    await asyncio.to_thread(close_all_connections, TEST_VHOST)
    await publishing
    assert await publisher.flush(timeout=60)
    assert await stored_count(default_log_store, total, within_s=60, marker=unique) == total
    await consumer.stop()
    await publisher.close()


async def test_ten_thousand_events_through_the_gateway_publisher_are_stored_exactly_once(
        amqp, unique, default_log_store):
    writer = RequestLogWriter(default_log_store.store)
    consumer = EventConsumer(await amqp("consumer"), spec(unique), writer.on_requests,
                             prefetch=8)
    await consumer.start()
    publisher = EventPublisher(await amqp("publisher"))
    await publisher.start()
    events = [request_completed(i, user_agent=unique) for i in range(10_000)]
    for event in events:
        publisher.publish(event)
    # the publisher is at-least-once: a resend after a lost confirm must not count twice
    for event in events[:500]:
        publisher.publish(event)
    assert await publisher.flush(timeout=60)
    assert await stored_count(default_log_store, 10_000, within_s=120, marker=unique) == 10_000
    errors = await default_log_store.store.count(ADMIN, LogFilter(status_code=503),
                                                 up_to=100_000)
    assert errors >= sum(1 for e in events if e.status_code == 503)
    await consumer.stop()
    await publisher.close()


async def test_a_poison_message_is_dead_lettered_and_the_next_good_one_is_stored(
        amqp, unique, default_log_store):
    writer = RequestLogWriter(default_log_store.store)
    connection = await amqp("consumer")
    consumer = EventConsumer(connection, spec(unique), writer.on_requests)
    await consumer.start()
    channel = await (await amqp("raw-publisher")).channel(publisher_confirms=True)
    await declare_event_queue(channel, unique, (RoutingKey.REQUEST_COMPLETED,))
    poison = b'{"events": [{"requestId": 42}]}'
    good = request_completed(1, user_agent=unique)
    for body in (b"not json at all", poison, encode_events([good])):
        await channel.default_exchange.publish(
            aio_pika.Message(body, headers={"x-routing-key": RoutingKey.REQUEST_COMPLETED}),
            routing_key=unique)

    assert await stored_count(default_log_store, 1, marker=unique) == 1
    assert await default_log_store.store.by_request_id(ADMIN, good.request_id)
    dead = await channel.declare_queue(dead_letter_queue(unique), passive=True)
    reasons = []
    for _ in range(50):
        message = await dead.get(fail=False)
        if message is None:
            if len(reasons) >= 2:
                break
            await asyncio.sleep(0.1)
            continue
        reasons.append(message.headers[HEADER_DEAD_REASON])
        await message.ack()
    assert len(reasons) == 2
    assert any("not JSON" in r for r in reasons)
    assert any("requestId" in r for r in reasons)
    await consumer.stop()
