"""Events over the real RabbitMQ: confirms and buffering across dropped connections, the
consumer's ack/retry/dead-letter rules, and per-process exclusive subscriptions.

Test queues are bound to the real routing keys (events are typed by their key), so they also
receive what other tests publish: each test marks its events with its `unique` name and only
counts those."""

from __future__ import annotations

import asyncio
import urllib.error

import aio_pika
import aiormq
import orjson
import pytest

from contracts.amqp import declare_event_queue
from contracts.events import EventConsumer, EventPublisher, ExclusiveSubscription
from contracts.messages import (
    KeyRevoked,
    ProjectDeleted,
    RequestCompleted,
    RouteChanged,
    RouteConfigData,
    decode_events,
    encode_events,
)
from contracts.names import (
    HEADER_DEAD_REASON,
    HEADER_RETRIES,
    HEADER_ROUTING_KEY,
    EventQueue,
    RoutingKey,
    dead_letter_queue,
)
from tests.conftest import TEST_VHOST
from tests.event_support import AT, completed, drain, numbers
from tests.support import close_all_connections, rabbit_api

COMPLETED = RoutingKey.REQUEST_COMPLETED


def work_queue(unique: str) -> EventQueue:
    return EventQueue(unique, (COMPLETED,))


async def get_messages(queue, count: int, within_s: float = 5.0) -> list:
    """Up to `count` messages from `queue` (acked), waiting at most `within_s`."""
    messages = []
    loop = asyncio.get_running_loop()
    until = loop.time() + within_s
    while len(messages) < count and loop.time() < until:
        message = await queue.get(fail=False)
        if message is None:
            await asyncio.sleep(0.05)
            continue
        messages.append(message)
        await message.ack()
    return messages


async def wait_until(condition, within_s: float = 5.0) -> None:
    for _ in range(int(within_s / 0.05)):
        if condition():
            return
        await asyncio.sleep(0.05)


async def test_published_events_arrive_in_batches(amqp, unique):
    connection = await amqp("publisher")
    channel = await (await amqp("reader")).channel()
    queue = await declare_event_queue(channel, unique, (COMPLETED,))
    publisher = EventPublisher(connection, max_batch=100)
    await publisher.start()

    for i in range(250):
        publisher.publish(completed(unique, i))
    assert await publisher.flush(timeout=10)

    messages = await get_messages(queue, 3)
    assert [m.headers["x-batch-size"] for m in messages] == [100, 100, 50]
    assert {m.routing_key for m in messages} == {COMPLETED}
    events = [e for m in messages for e in decode_events(m.routing_key, m.body).events]
    assert numbers(unique, events) == list(range(250))
    assert events[7] == completed(unique, 7)  # typed and whole after the trip
    await publisher.close()


async def test_events_of_different_types_travel_in_separate_messages(amqp, unique):
    channel = await (await amqp("reader")).channel()
    queue = await declare_event_queue(channel, unique, (COMPLETED, RoutingKey.CONFIG_KEY_REVOKED))
    publisher = EventPublisher(await amqp("publisher"))
    await publisher.start()
    revoked = KeyRevoked(f"{unique}-key", "hash", "project", "test", AT)
    publisher.publish(completed(unique, 0))
    publisher.publish(revoked)
    publisher.publish(completed(unique, 1))
    assert await publisher.flush(timeout=10)

    messages = await get_messages(queue, 3)
    decoded = [(m.routing_key, decode_events(m.routing_key, m.body).events) for m in messages]
    assert decoded == [(COMPLETED, [completed(unique, 0)]),
                       (RoutingKey.CONFIG_KEY_REVOKED, [revoked]),
                       (COMPLETED, [completed(unique, 1)])]
    await publisher.close()


async def test_buffer_drains_after_the_broker_drops_every_connection(amqp, unique):
    connection = await amqp("publisher")
    publisher = EventPublisher(connection)
    await publisher.start()
    reader = await amqp("reader")
    queue = await declare_event_queue(await reader.channel(), unique, (COMPLETED,))

    async def keep_publishing() -> None:
        for i in range(300):
            publisher.publish(completed(unique, i))
            await asyncio.sleep(0.005)

    publishing = asyncio.create_task(keep_publishing())
    await asyncio.sleep(0.3)
    await asyncio.to_thread(close_all_connections, TEST_VHOST)
    await publishing  # the caller never noticed: publish() neither blocked nor raised

    assert await publisher.flush(timeout=30), f"{publisher.pending} events still buffered"
    reader_after = await amqp("reader-after")
    queue = await (await reader_after.channel()).declare_queue(
        unique, durable=True, passive=True
    )
    found = await drain(queue, unique, 300)
    # At-least-once: a batch whose confirm was lost with the connection is sent again.
    assert set(found) == set(range(300))
    await publisher.close()


async def test_publisher_sheds_beyond_its_bound_and_keeps_working(amqp, unique):
    publisher = EventPublisher(await amqp("publisher"), max_buffer=10)
    await publisher.start()
    channel = await (await amqp("reader")).channel()
    queue = await declare_event_queue(channel, unique, (COMPLETED,))

    for i in range(50):  # no await in between: the sender cannot run, the buffer fills
        publisher.publish(completed(unique, i))
    assert publisher.pending == 10
    assert await publisher.flush(timeout=10)

    assert await drain(queue, unique, 10) == list(range(10))
    await publisher.close()


async def test_consumer_acks_after_success(amqp, unique):
    seen: list = []

    async def handler(events: list) -> None:
        assert all(isinstance(e, RequestCompleted) for e in events)
        seen.extend(events)

    consumer = EventConsumer(await amqp("consumer"), work_queue(unique), handler)
    await consumer.start()
    publisher = EventPublisher(await amqp("publisher"))
    await publisher.start()
    for i in range(20):
        publisher.publish(completed(unique, i))
    assert await publisher.flush(timeout=10)

    await wait_until(lambda: len(numbers(unique, seen)) >= 20)
    assert sorted(numbers(unique, seen)) == list(range(20))
    await consumer.stop()
    queue = await (await (await amqp("check")).channel()).declare_queue(
        unique, durable=True, passive=True)
    assert queue.declaration_result.message_count == 0
    await publisher.close()


async def test_failing_handler_is_retried_then_dead_lettered(amqp, unique):
    attempts: list[int] = []

    async def flaky(events: list) -> None:
        (i,) = numbers(unique, events)
        attempts.append(i)
        if i == 1 or attempts.count(0) < 3:
            raise RuntimeError("database unavailable")

    consumer = EventConsumer(await amqp("consumer"), work_queue(unique), flaky, max_retries=3,
                             retry_backoff_s=0.01)
    await consumer.start()
    channel = await (await amqp("raw")).channel()
    exchange = await channel.get_exchange("gw.events")
    for i in (0, 1):
        await exchange.publish(aio_pika.Message(encode_events([completed(unique, i)])),
                               routing_key=COMPLETED)
    await exchange.publish(aio_pika.Message(b"garbage"), routing_key=COMPLETED)

    dead = await channel.declare_queue(dead_letter_queue(unique), durable=True, passive=True)
    dead_messages = await get_messages(dead, 2)

    assert attempts.count(0) == 3  # failed twice, succeeded on the third try: not dead
    assert attempts.count(1) == 4  # first try plus three retries, then dead-lettered
    reasons = sorted(m.headers[HEADER_DEAD_REASON].split(":")[0] for m in dead_messages)
    assert reasons == ["failed 4 times", "malformed"]
    failed = next(m for m in dead_messages if m.headers[HEADER_DEAD_REASON].startswith("failed"))
    assert failed.headers[HEADER_RETRIES] == 3
    assert failed.headers[HEADER_ROUTING_KEY] == COMPLETED  # so it can be replayed
    assert decode_events(COMPLETED, failed.body).events == [completed(unique, 1)]
    garbage = next(m for m in dead_messages if m.headers[HEADER_DEAD_REASON].startswith("mal"))
    assert garbage.body == b"garbage"
    await consumer.stop()


async def test_a_malformed_event_is_dead_lettered_alone(amqp, unique):
    seen: list = []

    async def handler(events: list) -> None:
        seen.append(events)

    consumer = EventConsumer(await amqp("consumer"), work_queue(unique), handler)
    await consumer.start()
    channel = await (await amqp("raw")).channel()
    exchange = await channel.get_exchange("gw.events")
    bad = {**completed(unique, 1).to_wire(), "statusCode": 999}
    raw = [completed(unique, 0).to_wire(), bad, completed(unique, 2).to_wire()]
    await exchange.publish(aio_pika.Message(orjson.dumps({"events": raw})),
                           routing_key=COMPLETED)

    await wait_until(lambda: bool(seen))
    # The good events of the message reach the handler, in one call, in order.
    assert seen == [[completed(unique, 0), completed(unique, 2)]]
    dead = await channel.declare_queue(dead_letter_queue(unique), durable=True, passive=True)
    (dead_message,) = await get_messages(dead, 1)
    assert orjson.loads(dead_message.body) == {"events": [bad]}
    reason = dead_message.headers[HEADER_DEAD_REASON]
    assert reason.startswith("malformed") and "statusCode" in reason
    assert dead_message.headers[HEADER_ROUTING_KEY] == COMPLETED
    assert await dead.get(fail=False) is None  # nothing else was dead-lettered
    await consumer.stop()
    queue = await channel.declare_queue(unique, durable=True, passive=True)
    assert queue.declaration_result.message_count == 0  # the message itself was acked


async def test_a_message_of_only_malformed_events_is_not_handled(amqp, unique):
    seen: list = []

    async def handler(events: list) -> None:
        seen.append(events)

    consumer = EventConsumer(await amqp("consumer"), work_queue(unique), handler)
    await consumer.start()
    channel = await (await amqp("raw")).channel()
    exchange = await channel.get_exchange("gw.events")
    await exchange.publish(aio_pika.Message(b'{"events": [1, {"requestId": "x"}]}'),
                           routing_key=COMPLETED)
    dead = await channel.declare_queue(dead_letter_queue(unique), durable=True, passive=True)
    (dead_message,) = await get_messages(dead, 1)
    assert orjson.loads(dead_message.body) == {"events": [1, {"requestId": "x"}]}
    assert dead_message.headers[HEADER_DEAD_REASON].startswith("malformed")
    await consumer.stop()
    assert seen == []


async def test_a_retried_message_carries_only_its_good_events(amqp, unique):
    calls: list[list[int]] = []

    async def flaky(events: list) -> None:
        calls.append(numbers(unique, events))
        if len(calls) == 1:
            raise RuntimeError("once")

    consumer = EventConsumer(await amqp("consumer"), work_queue(unique), flaky,
                             retry_backoff_s=0.01)
    await consumer.start()
    channel = await (await amqp("raw")).channel()
    exchange = await channel.get_exchange("gw.events")
    raw = [completed(unique, 0).to_wire(), "not an event", completed(unique, 1).to_wire()]
    await exchange.publish(aio_pika.Message(orjson.dumps({"events": raw})),
                           routing_key=COMPLETED)
    await wait_until(lambda: len(calls) >= 2)
    await consumer.stop()
    assert calls == [[0, 1], [0, 1]]
    dead = await channel.declare_queue(dead_letter_queue(unique), durable=True, passive=True)
    dead_messages = await get_messages(dead, 2, within_s=1.0)
    # The bad event was dead-lettered once, not again with the retried copy.
    assert [orjson.loads(m.body) for m in dead_messages] == [{"events": ["not an event"]}]


@pytest.mark.parametrize("prefetch", [1, 8])
async def test_consumer_stop_lets_handlers_finish(amqp, unique, prefetch):
    finished: list[int] = []

    async def slow(events: list) -> None:
        await asyncio.sleep(0.3)
        finished.extend(numbers(unique, events))

    consumer = EventConsumer(await amqp("consumer"), work_queue(unique), slow,
                             prefetch=prefetch)
    await consumer.start()
    channel = await (await amqp("raw")).channel()
    exchange = await channel.get_exchange("gw.events")
    await exchange.publish(aio_pika.Message(encode_events([completed(unique, 1)])),
                           routing_key=COMPLETED)
    await asyncio.sleep(0.1)
    await consumer.stop(grace_s=5)
    assert finished == [1]


# --- exclusive subscriptions -------------------------------------------------------------------


def config_events(unique: str) -> list:
    route = RouteConfigData(
        id=f"{unique}-route", project_id=f"{unique}-project", path="/shop", method="GET",
        service=None, upstream_url="https://93.184.216.34", rate_limit=None, cache_ttl=None,
        auth_required=True, active=True, owner_id="owner", created_at=AT, updated_at=AT)
    return [
        RouteChanged("created", route, AT),
        KeyRevoked(f"{unique}-key", "hash", f"{unique}-project", "test", AT),
        RouteChanged("deleted", route, AT),
        ProjectDeleted(f"{unique}-project", (f"{unique}-key",), ("hash",),
                       (f"{unique}-route",), AT),
    ]


def ours(unique: str, events: list) -> list:
    """This test's config events among `events` (every config event carries a project id)."""
    return [e for e in events
            if (e.route.project_id if isinstance(e, RouteChanged) else e.project_id)
            == f"{unique}-project"]


async def test_every_subscription_receives_every_event(amqp, unique):
    received: dict[str, list] = {"a": [], "b": []}

    def collector(name: str):
        async def handler(events: list) -> None:
            received[name].extend(events)
        return handler

    subscriptions = [
        ExclusiveSubscription(await amqp(f"sub-{name}"), unique, ["config.#"], collector(name))
        for name in received
    ]
    for subscription in subscriptions:
        await subscription.start()
    assert subscriptions[0].queue_name != subscriptions[1].queue_name

    publisher = EventPublisher(await amqp("publisher"))
    await publisher.start()
    published = config_events(unique)
    for event in published:
        publisher.publish(event)
    publisher.publish(completed(unique, 0))  # not config.#: neither sees it
    assert await publisher.flush(timeout=10)

    await wait_until(lambda: all(len(ours(unique, got)) >= len(published)
                                 for got in received.values()))
    for name, got in received.items():
        assert not any(isinstance(e, RequestCompleted) for e in got), name
        assert ours(unique, got) == published, name  # every event, typed, in order
    for subscription in subscriptions:
        await subscription.close()
    await publisher.close()


async def test_a_subscription_queue_goes_away_with_its_subscriber(amqp, unique):
    async def handler(_events: list) -> None:
        return None

    subscription = ExclusiveSubscription(await amqp("sub"), unique, ["config.#"], handler)
    await subscription.start()
    other = await (await amqp("other")).channel()
    with pytest.raises(aiormq.exceptions.ChannelLockedResource):  # exclusive to its owner
        await other.declare_queue(subscription.queue_name, passive=True)
    path = f"/queues/{TEST_VHOST}/{subscription.queue_name}"
    assert (await asyncio.to_thread(rabbit_api, "GET", path))["exclusive"] is True
    await subscription.close()
    await asyncio.sleep(0.2)
    with pytest.raises(urllib.error.HTTPError) as gone:
        await asyncio.to_thread(rabbit_api, "GET", path)
    assert gone.value.code == 404


async def test_a_malformed_message_on_a_subscription_is_dead_lettered(amqp, unique):
    received: list = []

    async def handler(events: list) -> None:
        received.extend(events)

    purpose = f"{unique}.config"
    subscription = ExclusiveSubscription(await amqp("sub"), purpose, ["config.#"], handler)
    await subscription.start()
    channel = await (await amqp("raw")).channel()
    exchange = await channel.get_exchange("gw.events")
    await exchange.publish(aio_pika.Message(b"garbage"),
                           routing_key=RoutingKey.CONFIG_KEY_REVOKED)
    good = KeyRevoked(f"{unique}-key", "hash", f"{unique}-project", "test", AT)
    bad = {"keyId": f"{unique}-bad"}  # no hash, project, reason or time
    await exchange.publish(
        aio_pika.Message(orjson.dumps({"events": [good.to_wire(), bad]})),
        routing_key=RoutingKey.CONFIG_KEY_REVOKED)
    # Afterwards the subscription still works.
    after = KeyRevoked(f"{unique}-after", "hash", f"{unique}-project", "test", AT)
    await exchange.publish(aio_pika.Message(encode_events([after])),
                           routing_key=RoutingKey.CONFIG_KEY_REVOKED)

    await wait_until(lambda: len(ours(unique, received)) >= 2)
    # The good event of the mixed message is handled too. (Messages are handled concurrently,
    # and the mixed one waits for its dead letter's confirm: no order between them.)
    got = ours(unique, received)
    assert len(got) == 2 and set(got) == {good, after}

    dead = await channel.declare_queue(dead_letter_queue(purpose), durable=True, passive=True)
    dead_messages = await get_messages(dead, 2)
    assert len(dead_messages) == 2
    garbage = next(m for m in dead_messages if m.body == b"garbage")
    mixed = next(m for m in dead_messages if m is not garbage)
    assert garbage.body == b"garbage"
    assert garbage.headers[HEADER_DEAD_REASON].startswith("malformed")
    assert garbage.headers[HEADER_ROUTING_KEY] == RoutingKey.CONFIG_KEY_REVOKED
    assert bad in orjson.loads(mixed.body)["events"]
    assert "keyHash" in mixed.headers[HEADER_DEAD_REASON]
    assert await dead.get(fail=False) is None
    await subscription.close()


async def test_a_failing_subscription_handler_does_not_stop_the_subscription(amqp, unique):
    received: list = []

    async def handler(events: list) -> None:
        received.extend(events)
        if len(received) == 1:
            raise RuntimeError("first one fails")

    subscription = ExclusiveSubscription(await amqp("sub"), unique, ["config.key.*"], handler)
    await subscription.start()
    publisher = EventPublisher(await amqp("publisher"), linger_s=0)
    await publisher.start()
    first = KeyRevoked(f"{unique}-1", "h1", f"{unique}-project", "test", AT)
    second = KeyRevoked(f"{unique}-2", "h2", f"{unique}-project", "test", AT)
    publisher.publish(first)
    assert await publisher.flush(timeout=10)
    await wait_until(lambda: len(received) >= 1)
    publisher.publish(second)
    assert await publisher.flush(timeout=10)
    await wait_until(lambda: len(received) >= 2)
    # At most once: the failed event is not delivered again, the next one is.
    assert ours(unique, received) == [first, second]
    await subscription.close()
    await publisher.close()
