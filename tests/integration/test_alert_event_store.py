"""The alert event store contract, run against both stores (PostgreSQL and the
MongoDB-protocol server): one event per rule and slot with the same derived `_id`, the list
newest first with its filters, offset, limit and exact total, tenancy (an owner's own, an
admin's all), acknowledging, and a rule's latest event for the engine's cool-down."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic_core import to_jsonable_python

from analytics_svc.alert_events_mongo import MongoAlertEventStore
from analytics_svc.alert_events_pg import PostgresAlertEventStore, milliseconds
from analytics_svc.alert_store import AlertEventStore, AlertRule, EventFilter
from contracts.amqp import declare_event_queue
from contracts.identity import Caller, Role
from contracts.messages import DomainEvent, decode_events
from contracts.mongo import derived_id
from contracts.names import domain_routing_key
from contracts.outbox import ConfirmedPublish, DocumentOutboxRelay, OutboxRelay
from contracts.timeutil import to_iso

pytestmark = pytest.mark.integration

OWNER = Caller("owner-1", "owner@example.com", Role.DEVELOPER)
OTHER = Caller("other-1", "other@example.com", Role.DEVELOPER)
ADMIN = Caller("admin-1", "admin@example.com", Role.ADMIN)
RULE = AlertRule(id="6500000000000000000000aa", name="Busy", service="gateway",
                 metric="request_count", window_s=60, threshold=5.0, operator="gt",
                 cool_down_s=0, severity=None, project_id="2f1c0d3e-1111-4222-8333-444455556666",
                 user_id=OWNER.user_id, owner_is_admin=False)
OTHER_RULE = replace(RULE, id="6500000000000000000000bb", name="Theirs", service="billing",
                     user_id=OTHER.user_id, project_id=None)
BASE = milliseconds(datetime.now(UTC)) - timedelta(hours=1)
WIRE_KEYS = {"id", "_id", "ruleId", "ruleName", "service", "metric", "value", "threshold",
             "operator", "message", "severity", "timestamp", "acknowledged", "acknowledgedBy",
             "acknowledgedAt", "userId", "projectId"}


def wire(answer: Any) -> Any:
    """An answer as the service writes it: wire names, JSON values."""
    return to_jsonable_python(answer, by_alias=True)


async def store(events: AlertEventStore, rule: AlertRule, slot: int, *, seconds: float = 0,
                severity: str = "warning", value: float = 12.0):
    return await events.store_event(rule, slot, value=value, severity=severity,
                                    message=f"{rule.name} {slot}",
                                    at=BASE + timedelta(seconds=seconds))


async def listed(events: AlertEventStore, caller: Caller = OWNER, *, limit: int = 100,
                 offset: int = 0, **where) -> dict:
    return wire(await events.events(caller, EventFilter(**where), limit=limit, offset=offset))


async def test_one_event_per_rule_and_slot_with_the_derived_id(
        alert_event_store: AlertEventStore):
    first = await store(alert_event_store, RULE, 7, value=12.5)
    assert first is not None
    assert first.id == str(derived_id("alert", RULE.id, "7"))
    assert (first.rule_id, first.value, first.user_id, first.project_id) == (
        RULE.id, 12.5, OWNER.user_id, RULE.project_id)
    assert first.timestamp == to_iso(BASE)
    assert await store(alert_event_store, RULE, 7, seconds=5) is None  # another engine
    page = await listed(alert_event_store)
    assert page["total"] == 1
    [event] = page["events"]
    assert set(event) == WIRE_KEYS
    assert event == {
        "id": first.id, "_id": first.id, "ruleId": RULE.id, "ruleName": "Busy",
        "service": "gateway", "metric": "request_count", "value": 12.5, "threshold": 5.0,
        "operator": "gt", "message": "Busy 7", "severity": "warning",
        "timestamp": to_iso(BASE), "acknowledged": False, "acknowledgedBy": None,
        "acknowledgedAt": None, "userId": OWNER.user_id, "projectId": RULE.project_id}


async def test_the_list_is_newest_first_in_pages_with_an_exact_total(
        alert_event_store: AlertEventStore):
    for slot in range(25):
        await store(alert_event_store, RULE, slot, seconds=slot)
    for slot in (100, 101, 102):  # one instant: the `_id` orders them, descending
        await store(alert_event_store, RULE, slot, seconds=30)
    everything = (await listed(alert_event_store))["events"]
    assert len(everything) == 28
    order = [(e["timestamp"], e["_id"]) for e in everything]
    assert order == sorted(order, reverse=True)
    assert [e["message"] for e in everything[3:6]] == ["Busy 24", "Busy 23", "Busy 22"]
    page = await listed(alert_event_store, limit=10, offset=10)
    assert (page["total"], page["limit"], page["offset"]) == (28, 10, 10)
    assert page["events"] == everything[10:20]
    last = await listed(alert_event_store, limit=10, offset=20)
    assert last["events"] == everything[20:] and last["total"] == 28
    assert await listed(alert_event_store, limit=10, offset=40) == {
        "events": [], "total": 28, "limit": 10, "offset": 40}
    first = await listed(alert_event_store, limit=5)
    assert first["total"] == 28 and first["events"] == everything[:5]


async def test_filters_narrow_the_list_and_its_total(alert_event_store: AlertEventStore):
    for slot in range(6):
        await store(alert_event_store, RULE, slot, seconds=slot * 10,
                    severity="critical" if slot % 2 else "info")
    await store(alert_event_store, replace(RULE, service="billing"), 50, seconds=100)
    ids = [e["id"] for e in (await listed(alert_event_store))["events"]]
    assert await alert_event_store.acknowledge(OWNER, ids[0], "on-call") is not None

    async def messages(**where) -> list[str]:
        page = await listed(alert_event_store, limit=2, **where)
        everything = await listed(alert_event_store, **where)
        assert page["total"] == everything["total"] == len(everything["events"])
        assert page["events"] == everything["events"][:2]
        return [e["message"] for e in everything["events"]]

    assert await messages(severity="critical") == ["Busy 5", "Busy 3", "Busy 1"]
    assert await messages(service="billing") == ["Busy 50"]
    assert await messages(service="gateway", severity="info") == ["Busy 4", "Busy 2", "Busy 0"]
    assert await messages(acknowledged=True) == ["Busy 50"]
    assert len(await messages(acknowledged=False)) == 6
    # inclusive bounds on the timestamp
    assert await messages(since=BASE + timedelta(seconds=20),
                          until=BASE + timedelta(seconds=40)) == ["Busy 4", "Busy 3", "Busy 2"]
    assert await messages(since=BASE + timedelta(seconds=50), acknowledged=False) == ["Busy 5"]
    assert await messages(until=BASE - timedelta(milliseconds=1)) == []
    assert await messages(severity="warning") == ["Busy 50"]
    assert await messages(severity="warning", service="gateway") == []


async def test_an_owner_sees_their_own_and_an_admin_everything(
        alert_event_store: AlertEventStore):
    for slot in range(3):
        await store(alert_event_store, RULE, slot, seconds=slot)
    for slot in range(4):
        await store(alert_event_store, OTHER_RULE, slot, seconds=slot + 0.5)
    mine = await listed(alert_event_store, OWNER)
    theirs = await listed(alert_event_store, OTHER)
    everyone = await listed(alert_event_store, ADMIN)
    assert mine["total"] == 3 and {e["userId"] for e in mine["events"]} == {OWNER.user_id}
    assert theirs["total"] == 4 and {e["userId"] for e in theirs["events"]} == {OTHER.user_id}
    assert everyone["total"] == 7
    assert {e["id"] for e in everyone["events"]} == {
        e["id"] for e in mine["events"] + theirs["events"]}
    assert (await listed(alert_event_store, ADMIN, limit=2, service="billing"))["total"] == 4
    assert (await listed(alert_event_store, OWNER, service="billing"))["total"] == 0


async def test_only_the_owner_or_an_admin_acknowledges(alert_event_store: AlertEventStore):
    stored = await store(alert_event_store, RULE, 1)
    assert stored is not None

    async def the_event() -> dict:
        [event] = (await listed(alert_event_store))["events"]
        return event

    assert await alert_event_store.acknowledge(OTHER, stored.id, OTHER.email) is None
    assert (await the_event())["acknowledged"] is False
    before = datetime.now(UTC) - timedelta(seconds=1)
    mine = wire(await alert_event_store.acknowledge(OWNER, stored.id, "on-call"))
    assert mine is not None
    assert (mine["acknowledged"], mine["acknowledgedBy"]) == (True, "on-call")
    assert datetime.fromisoformat(mine["acknowledgedAt"]) >= before
    assert await the_event() == mine
    again = wire(await alert_event_store.acknowledge(ADMIN, stored.id, ADMIN.email))
    assert again is not None and again["acknowledgedBy"] == ADMIN.email  # overwritten
    assert {k: v for k, v in again.items() if not k.startswith("acknowledged")} == {
        k: v for k, v in mine.items() if not k.startswith("acknowledged")}
    assert await alert_event_store.acknowledge(OWNER, "0" * 24, OWNER.email) is None
    assert await alert_event_store.acknowledge(ADMIN, "0" * 24, ADMIN.email) is None


async def test_a_rules_latest_event_is_its_own(alert_event_store: AlertEventStore):
    assert await alert_event_store.last_event_at(RULE.id) is None
    await store(alert_event_store, RULE, 1, seconds=10)
    await store(alert_event_store, RULE, 3, seconds=30.1234)
    await store(alert_event_store, RULE, 2, seconds=20)
    await store(alert_event_store, OTHER_RULE, 9, seconds=90)
    latest = await alert_event_store.last_event_at(RULE.id)
    assert latest == milliseconds(BASE + timedelta(seconds=30.1234))
    assert latest is not None and latest.utcoffset() == timedelta(0)
    assert await alert_event_store.last_event_at(OTHER_RULE.id) == BASE + timedelta(seconds=90)
    assert await alert_event_store.last_event_at("6500000000000000000000cc") is None


def relay_of(events: AlertEventStore,
             publish: ConfirmedPublish) -> OutboxRelay | DocumentOutboxRelay:
    """The relay that publishes what `events` announces, as its service opens it."""
    if isinstance(events, PostgresAlertEventStore):
        return OutboxRelay(events._pool, publish)
    assert isinstance(events, MongoAlertEventStore)
    return DocumentOutboxRelay(events._events, publish)


async def received(queue, expected: int, within_s: float = 10.0) -> list[DomainEvent]:
    """Domain events read from `queue` until `expected` arrived and it stayed empty a moment."""
    found: list[DomainEvent] = []
    loop = asyncio.get_running_loop()
    until = loop.time() + within_s
    while loop.time() < until:
        message = await queue.get(fail=False)
        if message is None:
            if len(found) >= expected:
                break
            await asyncio.sleep(0.05)
            continue
        batch = decode_events(message.routing_key, message.body)
        found.extend(event for event in batch.events if isinstance(event, DomainEvent))
        await message.ack()
    await asyncio.sleep(0.3)
    assert await queue.get(fail=False) is None, "more than announced"
    return found


async def test_each_stored_event_and_acknowledgement_is_announced_once(
        alert_event_store: AlertEventStore, amqp, brokers, unique: str):
    """Webhooks' domain events are written by the change's own write (a PostgreSQL outbox row
    in its transaction; in MongoDB, the document's own `outbox` entries) and published by a
    relay, here one started only after the writes, as after a crash."""
    queue = await declare_event_queue(
        await (await amqp("reader")).channel(), unique,
        (domain_routing_key("alert.triggered"), domain_routing_key("alert.acknowledged")))
    first = await store(alert_event_store, RULE, 40)
    assert first is not None
    assert await store(alert_event_store, RULE, 40) is None  # the slot again: no second one
    await alert_event_store.acknowledge(OWNER, first.id, "me")
    assert await alert_event_store.acknowledge(OTHER, first.id, "someone") is None
    listed_now = (await listed(alert_event_store))["events"]
    assert [set(event) for event in listed_now] == [WIRE_KEYS]  # nothing of the outbox shown

    relay = relay_of(alert_event_store, (await brokers("relay")).publish_confirmed)
    assert await relay.relay_once() >= 1
    assert await relay.relay_once() == 0  # published once, then gone
    events = await received(queue, 2)
    assert [event.type for event in events] == ["alert.triggered", "alert.acknowledged"]
    assert len({event.event_id for event in events}) == 2
    assert {event.data["id"] for event in events} == {first.id}
    assert all(event.project_id == RULE.project_id and event.owner_id == OWNER.user_id
               for event in events)
    assert events[0].data["acknowledged"] is False
    assert events[1].data["acknowledged"] is True and events[1].data["acknowledgedBy"] == "me"
    assert events[1].data == wire(await alert_event_store.events(
        OWNER, EventFilter(), limit=1, offset=0))["events"][0]
