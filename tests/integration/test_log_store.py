"""The log store contract, run against both stores (PostgreSQL and the MongoDB-protocol
server): all-or-nothing external batches (also racing ones), separate id spaces, visibility,
newest-first order with positions, capped counts, and retention."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from contracts.identity import Caller, Role
from contracts.schemas.logs import LogIngest
from logging_svc.entries import DuplicateRequestId, LogFilter, LogRecord
from logging_svc.retention import RetentionSweeper
from tests.factories import request_completed as completed
from tests.integration.conftest import StoreUnderTest

ADMIN = Caller("admin-1", "admin@example.com", Role.ADMIN)
ALICE = Caller("alice", "alice@example.com", Role.DEVELOPER)
BOB = Caller("bob", "bob@example.com", Role.DEVELOPER)
NOW = datetime.now(UTC)


def utc_text(moment: datetime) -> str:
    """A moment as a client sends it: ISO-8601 in UTC ending in Z, to the microsecond."""
    return moment.isoformat(timespec="microseconds").replace("+00:00", "Z")


def ingest(request_id: str | None = None, **fields) -> LogRecord:
    return LogRecord.of_ingest(LogIngest.model_validate({
        "requestId": request_id or str(uuid.uuid4()), "method": "POST", "path": "/ext",
        "statusCode": 201, "latency": 2.0, "ip": "10.0.0.1", **fields}), NOW)


def event(index: int, **fields) -> LogRecord:
    return LogRecord.of_event(completed(index, **fields))


async def stored(under_test: StoreUnderTest, **where) -> int:
    return await under_test.store.count(ADMIN, LogFilter(**where), up_to=1_000_000)


async def test_a_batch_meeting_a_stored_id_leaves_nothing_behind(log_store: StoreUnderTest):
    store = log_store.store
    taken = str(uuid.uuid4())
    await store.store_external([ingest(taken)])
    batch = [ingest() for _ in range(300)] + [ingest(taken)] + [ingest() for _ in range(300)]
    with pytest.raises(DuplicateRequestId) as refused:
        await store.store_external(batch)
    assert refused.value.request_id == taken
    assert await stored(log_store) == 1


async def test_a_duplicate_inside_a_batch_is_refused_before_any_write(
        log_store: StoreUnderTest):
    twice = str(uuid.uuid4())
    with pytest.raises(DuplicateRequestId):
        await log_store.store.store_external([ingest(twice), ingest(), ingest(twice.upper())])
    assert await stored(log_store) == 0


async def test_racing_overlapping_batches_are_each_all_or_nothing(log_store: StoreUnderTest):
    store = log_store.store
    for _ in range(5):
        shared = [ingest(path="/shared") for _ in range(20)]
        first = [ingest(path="/first") for _ in range(200)] + shared
        second = shared + [ingest(path="/second") for _ in range(200)]
        before = await stored(log_store, source="external")
        outcomes = await asyncio.gather(store.store_external(first),
                                        store.store_external(second), return_exceptions=True)
        assert all(o is None or isinstance(o, DuplicateRequestId) for o in outcomes), outcomes
        assert sum(o is None for o in outcomes) <= 1  # they overlap: both cannot win
        added = await stored(log_store, source="external") - before
        assert added == (220 if None in outcomes else 0)


async def test_gateway_events_are_stored_once(log_store: StoreUnderTest):
    store = log_store.store
    events = [event(i) for i in range(50)]
    assert await store.store_once(events) == 50
    assert await store.store_once([*events[:10], event(50)]) == 1
    twice = event(51)
    assert await store.store_once([twice, twice]) == 1  # within one batch
    assert await stored(log_store) == 52


async def test_external_entries_cannot_shadow_a_gateway_request(log_store: StoreUnderTest):
    store = log_store.store
    gateway = completed(1, user_id=BOB.user_id)
    await store.store_external([ingest(gateway.request_id, userId="forged")])
    assert await store.store_once([LogRecord.of_event(gateway)]) == 1
    entry = await store.by_request_id(BOB, gateway.request_id)
    assert entry["source"] == "gateway" and entry["userId"] == BOB.user_id
    # a caller who cannot see the gateway entry gets the external one
    assert (await store.by_request_id(ALICE, gateway.request_id))["source"] == "external"
    assert await store.by_request_id(ALICE, str(uuid.uuid4())) is None


async def test_entries_come_back_as_they_went_in(log_store: StoreUnderTest):
    store = log_store.store
    record = LogRecord.of_event(completed(7, user_id="alice", owner_id="alice",
                                          project_id=str(uuid.uuid4()), status_code=503))
    await store.store_once([record])
    entry = await store.by_request_id(ADMIN, record.request_id)
    assert entry == record.to_wire()
    assert entry["traceId"] == record.trace_id is not None  # the request's trace, kept
    [found] = await store.newest(ADMIN, LogFilter(), after=None, skip=0, limit=10)
    assert found.entry == record.to_wire()


async def test_external_entries_have_no_trace(log_store: StoreUnderTest):
    record = ingest()
    await log_store.store.store_external([record])
    entry = await log_store.store.by_request_id(ADMIN, record.request_id)
    assert entry == record.to_wire() and entry["traceId"] is None


async def test_visibility_follows_the_caller(log_store: StoreUnderTest):
    store = log_store.store
    await store.store_once([
        event(1, user_id="alice", path="/mine"),
        event(2, user_id="carol", owner_id="alice", project_id="p-a", path="/to-my-project"),
        event(3, user_id="alice", owner_id="alice", project_id="p-a", path="/both"),
        event(4, user_id="bob", path="/bobs"),
    ])
    await store.store_external([ingest(path="/ext", userId="alice")])

    async def paths(caller: Caller, **where) -> set[str]:
        found = await store.newest(caller, LogFilter(**where), after=None, skip=0, limit=100)
        assert await store.count(caller, LogFilter(**where), up_to=100) == len(found)
        return {item.entry["path"] for item in found}

    assert await paths(ALICE) == {"/mine", "/to-my-project", "/both", "/ext"}
    assert await paths(BOB) == {"/bobs", "/ext"}
    assert await paths(ADMIN) == {"/mine", "/to-my-project", "/both", "/bobs", "/ext"}
    assert await paths(ALICE, user_id="bob") == set()
    assert await paths(ALICE, user_id="alice") == {"/mine", "/both", "/ext"}
    assert await paths(ALICE, source="gateway") == {"/mine", "/to-my-project", "/both"}
    assert await paths(ALICE, source="external") == {"/ext"}
    assert await paths(ALICE, project_id="p-a") == {"/to-my-project", "/both"}
    assert await paths(BOB, project_id="p-a") == set()


async def test_newest_first_by_offset_and_by_position(log_store: StoreUnderTest):
    store = log_store.store
    start = NOW - timedelta(hours=1)
    # a second of one entry each, and three entries in the same millisecond
    await store.store_external(
        [ingest(timestamp=utc_text(start + timedelta(seconds=i)), path=f"/p{i}")
         for i in range(25)]
        + [ingest(timestamp=utc_text(start + timedelta(seconds=30)), path=f"/same{i}")
           for i in range(3)])
    everything = LogFilter()
    first = await store.newest(ADMIN, everything, after=None, skip=0, limit=10)
    assert {item.entry["path"] for item in first[:3]} == {"/same0", "/same1", "/same2"}
    assert [item.entry["path"] for item in first[3:]] == [f"/p{i}" for i in range(24, 17, -1)]
    third = await store.newest(ADMIN, everything, after=None, skip=20, limit=10)
    assert [item.entry["path"] for item in third] == [f"/p{i}" for i in range(7, -1, -1)]
    # positions continue exactly where a page ended, ties included
    walked, after = [], None
    while True:
        page = await store.newest(ADMIN, everything, after=after, skip=0, limit=2)
        if not page:
            break
        walked += [item.entry["path"] for item in page]
        after = page[-1].position
    assert walked == [item.entry["path"] for item in
                      await store.newest(ADMIN, everything, after=None, skip=0, limit=100)]
    assert len(walked) == 28
    window = LogFilter(since=start + timedelta(seconds=5), until=start + timedelta(seconds=7))
    found = await store.newest(ADMIN, window, after=None, skip=0, limit=10)
    assert [item.entry["path"] for item in found] == ["/p7", "/p6", "/p5"]  # inclusive
    assert await store.count(ADMIN, everything, up_to=10) == 10  # counting stops there


async def test_filters_errors_status_and_method(log_store: StoreUnderTest):
    store = log_store.store
    await store.store_once([event(i, user_id="alice") for i in range(40)])
    found = await store.newest(ALICE, LogFilter(errors_only=True), after=None, skip=0,
                               limit=100)
    assert found and all(item.entry["statusCode"] >= 400 for item in found)
    statuses = {item.entry["statusCode"] for item in found}
    for status in statuses:
        only = await store.newest(ALICE, LogFilter(status_code=status), after=None, skip=0,
                                  limit=100)
        assert {item.entry["statusCode"] for item in only} == {status}
    lower = await store.newest(ALICE, LogFilter(method="get"), after=None, skip=0, limit=100)
    assert lower and {item.entry["method"] for item in lower} == {"GET"}


async def test_retention_removes_expired_entries_and_keeps_the_rest(
        log_store: StoreUnderTest):
    store = log_store.store
    old = NOW - timedelta(days=33)
    # entries from before the retention: what a store kept from earlier days
    await store.store_external([ingest(timestamp=utc_text(old + timedelta(seconds=i)))
                                for i in range(30)])
    await store.store_once([event(i) for i in range(5)])  # stamped now
    sweeper = RetentionSweeper(store)
    assert await sweeper.sweep() == 30
    assert await stored(log_store) == 5
    assert await sweeper.sweep() == 0
    # and an event already past the retention (a backlog replayed late) is not stored
    assert await store.store_once([replace(event(99), timestamp=old)]) == 0
