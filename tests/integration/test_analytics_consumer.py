"""The analytics consumer against the real broker and PostgreSQL: every request counted once,
whatever the broker, the publisher or the consumers do. Each test counts only the view of a
user id of its own (its queue also receives any other request.completed of the vhost)."""

from __future__ import annotations

import asyncio
import random
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import asyncpg
from pydantic_core import to_jsonable_python

from analytics_svc.app import CONSUMER_PREFETCH
from analytics_svc.buckets import TimeRange
from analytics_svc.consumer import RollupWriter
from analytics_svc.handlers import AnalyticsAnswers
from analytics_svc.rollup import ANY_PROJECT
from analytics_svc.store import RollupStore, Scope
from contracts.events import EventConsumer, EventPublisher
from contracts.messages import RequestCompleted
from contracts.names import EventQueue, RoutingKey
from tests import analytics_oracle as oracle
from tests.factories import random_traffic, request_completed


def wire(answer: Any) -> Any:
    """An answer as the service writes it: wire names, JSON values."""
    return to_jsonable_python(answer, by_alias=True)


def spec(unique: str) -> EventQueue:
    return EventQueue(unique, (RoutingKey.REQUEST_COMPLETED,))


def everything_of(viewer: str) -> Scope:
    return Scope(viewer, ANY_PROJECT, TimeRange(None, None))


async def counted(store: RollupStore, viewer: str, expected: int,
                  within_s: float = 60.0) -> int:
    """The requests in `viewer`'s view once they reached `expected` (or the deadline passed),
    looked at again a little later so that a late duplicate would show."""
    loop = asyncio.get_running_loop()
    until = loop.time() + within_s
    count = (await store.totals(everything_of(viewer))).requests
    while count < expected and loop.time() < until:
        await asyncio.sleep(0.1)
        count = (await store.totals(everything_of(viewer))).requests
    await asyncio.sleep(0.3)
    return (await store.totals(everything_of(viewer))).requests


async def publish(publisher: EventPublisher, events: list[RequestCompleted]) -> None:
    for event in events:
        publisher.publish(event)
    assert await publisher.flush(timeout=60)


async def test_a_message_redelivered_after_a_kill_between_commit_and_ack_counts_once(
        amqp, unique, analytics_pool):
    store = RollupStore(analytics_pool)
    committed = asyncio.Event()

    async def fold_then_die(events: list[RequestCompleted]) -> None:
        await store.fold(events)
        committed.set()
        await asyncio.Event().wait()  # never returns, so never acks: killed mid-message

    doomed = await amqp("doomed-consumer")
    await EventConsumer(doomed, spec(unique), fold_then_die, prefetch=1).start()
    publisher = EventPublisher(await amqp("publisher"))
    await publisher.start()
    await publish(publisher, [request_completed(i, user_id=unique) for i in range(50)])
    await asyncio.wait_for(committed.wait(), 10)
    assert (await store.totals(everything_of(unique))).requests == 50
    await doomed.close()  # the broker requeues the unacked message

    redelivered: list[int] = []

    async def count_and_fold(events: list[RequestCompleted]) -> None:
        redelivered.append(sum(event.user_id == unique for event in events))
        await store.fold(events)

    second = EventConsumer(await amqp("second-consumer"), spec(unique), count_and_fold)
    await second.start()
    assert await counted(store, unique, 50) == 50
    assert sum(redelivered) == 50  # the whole message came again and added nothing
    await second.stop()
    await publisher.close()


async def test_events_published_twice_in_different_messages_count_once(
        amqp, unique, analytics_pool):
    store = RollupStore(analytics_pool)
    writer = RollupWriter(store)
    writer.start()
    consumer = EventConsumer(await amqp("consumer"), spec(unique), writer.on_requests,
                             prefetch=CONSUMER_PREFETCH)
    await consumer.start()
    events = [request_completed(i, user_id=unique) for i in range(3000)]
    first = EventPublisher(await amqp("publisher-a"), max_batch=500)
    second = EventPublisher(await amqp("publisher-b"), max_batch=37)
    await first.start()
    await second.start()
    await publish(first, events)
    # as after lost confirms: the same events again, cut into other messages, in another order
    await publish(second, events[::-1])
    assert await counted(store, unique, 3000) == 3000
    errors = (await store.totals(everything_of(unique))).by_class[4]
    assert errors == sum(event.status_code >= 500 for event in events)
    await consumer.stop()
    await writer.close()
    await first.close()
    await second.close()


async def test_two_consumers_on_one_queue_give_the_totals_of_brute_force(
        amqp, unique, analytics_pool, analytics_url):
    rng = random.Random(7)
    now = datetime.now(UTC)
    events = [replace(event, user_id=unique) if event.user_id is not None else event
              for event in random_traffic(rng, 6000, end=now, span_s=3 * 3600)]
    mine = [event for event in events if event.user_id == unique]
    pools: list[asyncpg.Pool] = []
    writers: list[RollupWriter] = []
    for name in ("replica-a", "replica-b"):
        pool = await asyncpg.create_pool(analytics_url, min_size=1, max_size=4)
        pools.append(pool)
        writers.append(RollupWriter(RollupStore(pool)))
        writers[-1].start()
        await EventConsumer(await amqp(name), spec(unique), writers[-1].on_requests,
                            prefetch=CONSUMER_PREFETCH).start()
    publisher = EventPublisher(await amqp("publisher"), max_batch=100)
    await publisher.start()
    await publish(publisher, events)
    await publish(publisher, events[:1000])  # and a resend on top
    store = RollupStore(analytics_pool)
    assert await counted(store, unique, len(mine)) == len(mine)
    answers = AnalyticsAnswers(store)
    where = everything_of(unique)
    seen = oracle.visible(events, unique)
    oracle.assert_matches(wire(await answers.summary(where)), oracle.summary(seen))
    oracle.assert_matches(wire(await answers.latency(where)), oracle.latency(seen))
    assert wire(await answers.top_users(where, 100)) == oracle.top_users(seen, 100)
    for writer in writers:
        await writer.close()
    for pool in pools:
        await pool.close()
    await publisher.close()

