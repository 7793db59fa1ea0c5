"""Events over the real RabbitMQ: confirms and buffering across dropped connections, the
consumer's ack/retry/dead-letter rules."""

from __future__ import annotations

import asyncio
import subprocess

import aio_pika
import pytest

from contracts.amqp import declare_event_queue
from contracts.events import EventConsumer, EventPublisher, decode_batch, encode_batch
from contracts.names import (
    HEADER_DEAD_REASON,
    HEADER_RETRIES,
    EventQueue,
    dead_letter_queue,
)
from tests.conftest import TEST_VHOST


async def drain(queue, expected: int, within_s: float = 20.0) -> list[dict]:
    """Read event batches from `queue` until at least `expected` distinct events arrived and
    the queue is empty (redelivered duplicates are kept, so callers can see them)."""
    events: list[dict] = []
    loop = asyncio.get_running_loop()
    until = loop.time() + within_s
    while loop.time() < until:
        message = await queue.get(fail=False)
        if message is None:
            if len({repr(e) for e in events}) >= expected:
                break
            await asyncio.sleep(0.05)
            continue
        events.extend(decode_batch(message.body))
        await message.ack()
    return events


async def test_published_events_arrive_in_batches(amqp, unique):
    connection = await amqp("publisher")
    channel = await (await amqp("reader")).channel()
    queue = await declare_event_queue(channel, unique, (f"{unique}.happened",))
    publisher = EventPublisher(connection, max_batch=100)
    await publisher.start()

    for i in range(250):
        publisher.publish(f"{unique}.happened", {"i": i})
    assert await publisher.flush(timeout=10)

    events = await drain(queue, 250)
    assert [e["i"] for e in events] == list(range(250))
    assert queue.declaration_result is not None
    await publisher.close()


def close_all_connections() -> None:
    subprocess.run(
        ["rabbitmqctl", "close_all_connections", "-p", TEST_VHOST, "test: drop connections"],
        check=True, capture_output=True, timeout=60,
    )


async def test_buffer_drains_after_the_broker_drops_every_connection(amqp, unique):
    connection = await amqp("publisher")
    publisher = EventPublisher(connection)
    await publisher.start()
    reader = await amqp("reader")
    queue = await declare_event_queue(await reader.channel(), unique, (f"{unique}.happened",))

    async def keep_publishing() -> None:
        for i in range(300):
            publisher.publish(f"{unique}.happened", {"i": i})
            await asyncio.sleep(0.005)

    publishing = asyncio.create_task(keep_publishing())
    await asyncio.sleep(0.3)
    await asyncio.to_thread(close_all_connections)
    await publishing  # the caller never noticed: publish() neither blocked nor raised

    assert await publisher.flush(timeout=30), f"{publisher.pending} events still buffered"
    reader_after = await amqp("reader-after")
    queue = await (await reader_after.channel()).declare_queue(
        unique, durable=True, passive=True
    )
    events = await drain(queue, 300)
    # At-least-once: a batch whose confirm was lost with the connection is sent again.
    assert {e["i"] for e in events} == set(range(300))
    await publisher.close()


async def test_publisher_sheds_beyond_its_bound_and_keeps_working(amqp, unique):
    publisher = EventPublisher(await amqp("publisher"), max_buffer=10)
    await publisher.start()
    channel = await (await amqp("reader")).channel()
    queue = await declare_event_queue(channel, unique, (f"{unique}.happened",))

    for i in range(50):  # no await in between: the sender cannot run, the buffer fills
        publisher.publish(f"{unique}.happened", {"i": i})
    assert publisher.pending == 10
    assert await publisher.flush(timeout=10)

    assert [e["i"] for e in await drain(queue, 10)] == list(range(10))
    await publisher.close()


async def test_consumer_acks_after_success(amqp, unique):
    spec = EventQueue(unique, (f"{unique}.happened",))
    seen: list[dict] = []

    async def handler(events: list[dict], routing_key: str) -> None:
        assert routing_key == f"{unique}.happened"
        seen.extend(events)

    consumer = EventConsumer(await amqp("consumer"), spec, handler)
    await consumer.start()
    publisher = EventPublisher(await amqp("publisher"))
    await publisher.start()
    for i in range(20):
        publisher.publish(f"{unique}.happened", {"i": i})
    await publisher.flush(timeout=10)

    for _ in range(100):
        if len(seen) == 20:
            break
        await asyncio.sleep(0.05)
    assert sorted(e["i"] for e in seen) == list(range(20))
    await consumer.stop()
    queue = await (await (await amqp("check")).channel()).declare_queue(
        unique, durable=True, passive=True)
    assert queue.declaration_result.message_count == 0
    await publisher.close()


async def test_failing_handler_is_retried_then_dead_lettered(amqp, unique):
    spec = EventQueue(unique, (f"{unique}.happened",))
    attempts: list[int] = []

    async def flaky(events: list[dict], _key: str) -> None:
        attempts.append(events[0]["i"])
        if events[0]["i"] == 1 or len([a for a in attempts if a == 0]) < 3:
            raise RuntimeError("database unavailable")

    consumer = EventConsumer(await amqp("consumer"), spec, flaky, max_retries=3,
                             retry_backoff_s=0.01)
    await consumer.start()
    channel = await (await amqp("raw")).channel()
    exchange = await channel.get_exchange("gw.events")
    for i in (0, 1):
        await exchange.publish(aio_pika.Message(encode_batch([{"i": i}])),
                               routing_key=f"{unique}.happened")
    await exchange.publish(aio_pika.Message(b"garbage"), routing_key=f"{unique}.happened")

    dead = await channel.declare_queue(dead_letter_queue(unique), durable=True, passive=True)
    dead_messages = []
    for _ in range(100):
        message = await dead.get(fail=False)
        if message is not None:
            dead_messages.append(message)
            await message.ack()
        if len(dead_messages) == 2:
            break
        await asyncio.sleep(0.05)

    assert attempts.count(0) == 3  # failed twice, succeeded on the third try: not dead
    assert attempts.count(1) == 4  # first try plus three retries, then dead-lettered
    reasons = sorted(m.headers[HEADER_DEAD_REASON].split(":")[0] for m in dead_messages)
    assert reasons == ["failed 4 times", "malformed"]
    failed = next(m for m in dead_messages if m.headers[HEADER_DEAD_REASON].startswith("failed"))
    assert failed.headers[HEADER_RETRIES] == 3
    assert decode_batch(failed.body) == [{"i": 1}]
    await consumer.stop()


@pytest.mark.parametrize("prefetch", [1, 8])
async def test_consumer_stop_lets_handlers_finish(amqp, unique, prefetch):
    spec = EventQueue(unique, (f"{unique}.happened",))
    finished: list[int] = []

    async def slow(events: list[dict], _key: str) -> None:
        await asyncio.sleep(0.3)
        finished.extend(e["i"] for e in events)

    consumer = EventConsumer(await amqp("consumer"), spec, slow, prefetch=prefetch)
    await consumer.start()
    channel = await (await amqp("raw")).channel()
    exchange = await channel.get_exchange("gw.events")
    await exchange.publish(aio_pika.Message(encode_batch([{"i": 1}])),
                           routing_key=f"{unique}.happened")
    await asyncio.sleep(0.1)
    await consumer.stop(grace_s=5)
    assert finished == [1]
