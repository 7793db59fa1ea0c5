"""The alert engine against real PostgreSQL rollups, MongoDB rules and events, Redis and the
broker: metrics over a known traffic pattern, cool-down, one event per breach whatever the
number of engines, and a hand-over when an engine dies."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import aio_pika
import pytest

from analytics_svc.alert_engine import AlertEngine, Lease
from analytics_svc.alert_store import AlertRule, AlertStore, EventFilter
from analytics_svc.store import RollupStore
from contracts.events import EventPublisher
from contracts.identity import Caller, Role
from contracts.messages import AlertTriggered, decode_events
from contracts.names import EVENTS_EXCHANGE, RoutingKey
from contracts.timeutil import to_iso
from tests.factories import request_completed

INTERVAL_MS = 1000
OWNER = Caller("owner-1", "owner@example.com", Role.DEVELOPER)
ADMIN = Caller("admin-1", "admin@example.com", Role.ADMIN)


def rule_fields(**changes) -> dict:
    return {"name": "Busy", "description": "", "service": "gateway",
            "metric": "request_count", "windowSeconds": 60, "threshold": 5, "operator": "gte",
            "enabled": True, "coolDownSeconds": 0, "severity": None, "projectId": None,
            **changes}


async def traffic(pool, now: datetime, user: str = "owner-1") -> None:
    """10 requests of `user` in the last 30 s: 6 x 200, 3 x 404, 1 x 500; latency 10..100."""
    statuses = [200] * 6 + [404] * 3 + [500]
    await RollupStore(pool).fold([
        request_completed(i, user_id=user, status_code=status, latency=10.0 * (i + 1),
                          timestamp=to_iso(now - timedelta(seconds=3 * i)))
        for i, status in enumerate(statuses)], now=now)


@pytest.fixture
async def publisher(amqp):
    events = EventPublisher(await amqp("alert-publisher"))
    await events.start()
    yield events
    await events.close()


def engine_of(alert_store: AlertStore, pool, publisher, redis, key: str,
              ttl_ms: int = 3 * INTERVAL_MS) -> AlertEngine:
    return AlertEngine(alert_store, RollupStore(pool), publisher, Lease(redis, key, ttl_ms),
                       INTERVAL_MS)


async def rule_of(alert_store: AlertStore, caller: Caller = OWNER, **changes) -> AlertRule:
    created = await alert_store.create_rule(caller, rule_fields(**changes))
    [rule] = [r for r in await alert_store.enabled_rules() if r.id == created.id]
    return rule


@pytest.mark.parametrize(("metric", "operator", "threshold", "fires", "value"), [
    ("request_count", "gte", 10, True, 10), ("request_count", "gt", 10, False, None),
    ("error_rate", "gt", 39.99, True, 40.0), ("error_rate", "lt", 40, False, None),
    ("uptime", "lte", 90, True, 90.0), ("uptime", "eq", 90, True, 90.0),
    ("request_rate", "gt", 0.16, True, 0.17), ("error_count", "eq", 4, True, 4),
    ("5xx_count", "gte", 2, False, None), ("avg_latency", "eq", 55, True, 55.0),
    ("latency_p50", "gt", 49, True, None), ("p95_latency", "lt", 89, False, None),
    ("latency_p99", "gte", 89, True, None),
])
async def test_each_metric_and_operator_over_a_known_traffic_pattern(
        analytics_pool, alert_store, publisher, redis, unique, metric, operator, threshold,
        fires, value):
    now = datetime.now(UTC)
    await traffic(analytics_pool, now)
    await traffic(analytics_pool, now, user="someone-else")  # not in the owner's view
    rule = await rule_of(alert_store, metric=metric, operator=operator, threshold=threshold)
    engine = engine_of(alert_store, analytics_pool, publisher, redis, unique)
    event = await engine.evaluate(rule, now, slot=1)
    assert (event is not None) is fires
    if event is not None:
        if value is not None:
            assert event.value == value
        assert event.message == (f"[{event.severity.upper()}] Busy: {metric} = "
                                 f"{event.message.split(' = ')[1].split(' (')[0]} "
                                 f"(threshold: {threshold})")


async def test_an_admins_rule_sees_all_traffic_and_a_project_narrows_it(
        analytics_pool, alert_store, publisher, redis, unique):
    now = datetime.now(UTC)
    await traffic(analytics_pool, now)
    await traffic(analytics_pool, now, user="someone-else")
    engine = engine_of(alert_store, analytics_pool, publisher, redis, unique)
    everything = await rule_of(alert_store, ADMIN, threshold=20)
    assert (await engine.evaluate(everything, now, 1)).value == 20
    narrowed = await rule_of(alert_store, ADMIN, threshold=1,
                             projectId="00000000-0000-4000-8000-000000000000")
    assert await engine.evaluate(narrowed, now, 1) is None  # no traffic in that project


async def test_the_window_is_the_last_window_seconds_to_within_ten_seconds(
        analytics_pool, alert_store, publisher, redis, unique):
    now = datetime.now(UTC)
    store = RollupStore(analytics_pool)
    await store.fold([request_completed(i, user_id="owner-1",
                                        timestamp=to_iso(now - timedelta(seconds=s)))
                      for i, s in enumerate((1, 5, 25, 45, 95))], now=now)
    engine = engine_of(alert_store, analytics_pool, publisher, redis, unique)
    rule = await rule_of(alert_store, windowSeconds=10, threshold=0, operator="gt")
    event = await engine.evaluate(rule, now, 1)
    assert event is not None and event.value in (2, 3)  # 1 s and 5 s ago (25 s is too old)


async def test_cool_down_is_respected_across_ticks(
        analytics_pool, alert_store, publisher, redis, unique):
    now = datetime.now(UTC)
    await traffic(analytics_pool, now)
    engine = engine_of(alert_store, analytics_pool, publisher, redis, unique)
    # the traffic stays in a 300 s window for every tick below
    quiet = await rule_of(alert_store, coolDownSeconds=60, windowSeconds=300)
    chatty = await rule_of(alert_store, coolDownSeconds=0, windowSeconds=300, name="Chatty")
    fired = []
    for tick in range(4):
        fired += await engine.tick(now + timedelta(seconds=tick))
    assert [e.rule_id for e in fired].count(quiet.id) == 1
    assert [e.rule_id for e in fired].count(chatty.id) == 4
    later = await engine.tick(now + timedelta(seconds=61))
    assert quiet.id in [e.rule_id for e in later]
    listed = await alert_store.events(OWNER, EventFilter(), limit=100, offset=0)
    assert listed.total == 7


async def test_two_engines_store_one_event_per_breach(
        analytics_pool, alert_store, publisher, redis, unique, amqp):
    now = datetime.now(UTC)
    await traffic(analytics_pool, now)
    rule = await rule_of(alert_store, coolDownSeconds=0)
    channel = await (await amqp("alert-listener")).channel()
    queue = await channel.declare_queue(exclusive=True)
    await queue.bind(EVENTS_EXCHANGE, RoutingKey.ALERT_TRIGGERED)
    first = engine_of(alert_store, analytics_pool, publisher, redis, unique)
    second = engine_of(alert_store, analytics_pool, publisher, redis, unique)
    fired = []
    for tick in range(3):
        moment = now + timedelta(milliseconds=INTERVAL_MS * tick)
        fired += await asyncio.gather(first.tick(moment), second.tick(moment))
    assert [len(a) + len(b) for a, b in zip(fired[::2], fired[1::2], strict=True)] == [1] * 3
    # the first engine's lease ran out while it was paused; the second took over, and the
    # first, waking up, still evaluates the very same tick
    await redis.delete(unique)
    moment = now + timedelta(milliseconds=INTERVAL_MS * 5)
    by_new_holder = await second.tick(moment)
    by_paused = await first.evaluate(rule, moment, int(moment.timestamp() * 1000) // INTERVAL_MS)
    assert len(by_new_holder) == 1 and by_paused is None
    assert await publisher.flush(timeout=10)
    published = await _drain(queue)
    assert len(published) == 4
    assert all(event.rule_id == rule.id and event.user_id == "owner-1" for event in published)


async def _drain(queue: aio_pika.abc.AbstractQueue) -> list[AlertTriggered]:
    events = []
    while True:
        message = await queue.get(fail=False, timeout=2)
        if message is None:
            return events
        await message.ack()
        events += decode_events(RoutingKey.ALERT_TRIGGERED, message.body).events


async def test_when_the_engine_dies_another_takes_over(
        analytics_pool, alert_store, publisher, redis, unique):
    now = datetime.now(UTC)
    await traffic(analytics_pool, now)
    await rule_of(alert_store, coolDownSeconds=0)
    doomed = engine_of(alert_store, analytics_pool, publisher, redis, unique, ttl_ms=600)
    heir = engine_of(alert_store, analytics_pool, publisher, redis, unique, ttl_ms=600)
    assert len(await doomed.tick(now)) == 1
    assert await heir.tick(now + timedelta(seconds=1)) == []  # the lease is still held
    await asyncio.sleep(0.7)  # the doomed engine never renews: its lease runs out
    assert len(await heir.tick(now + timedelta(seconds=2))) == 1
    await heir.close()  # a clean stop releases the lease at once
    assert len(await doomed.tick(now + timedelta(seconds=3))) == 1
