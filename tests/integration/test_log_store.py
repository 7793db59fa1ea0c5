"""The log store against the real MongoDB-protocol server: all-or-nothing external batches
(also racing ones), separate id spaces, visibility, and retention."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from contracts.identity import Caller, Role
from logging_svc import store as store_module
from logging_svc.retention import RetentionSweeper
from logging_svc.store import DuplicateRequestId, LogFilter, LogStore
from tests.factories import request_completed as completed

ADMIN = Caller("admin-1", "admin@example.com", Role.ADMIN)
ALICE = Caller("alice", "alice@example.com", Role.DEVELOPER)
BOB = Caller("bob", "bob@example.com", Role.DEVELOPER)


def ingest(request_id: str | None = None, **fields) -> dict:
    return {"requestId": request_id or str(uuid.uuid4()), "method": "POST", "path": "/ext",
            "statusCode": 201, "latency": 2.0, "ip": "10.0.0.1", **fields}


async def test_a_batch_meeting_a_stored_id_leaves_nothing_behind(log_entries):
    store = LogStore(log_entries)
    taken = str(uuid.uuid4())
    await store.store_external([ingest(taken)])
    batch = [ingest() for _ in range(300)] + [ingest(taken)] + [ingest() for _ in range(300)]
    with pytest.raises(DuplicateRequestId) as refused:
        await store.store_external(batch)
    assert refused.value.request_id == taken
    assert await log_entries.count_documents({}) == 1


async def test_a_duplicate_inside_a_batch_is_refused_before_any_write(log_entries):
    store = LogStore(log_entries)
    twice = str(uuid.uuid4())
    with pytest.raises(DuplicateRequestId):
        await store.store_external([ingest(twice), ingest(), ingest(twice.upper())])
    assert await log_entries.count_documents({}) == 0


async def test_racing_overlapping_batches_are_each_all_or_nothing(log_entries):
    store = LogStore(log_entries)
    for _ in range(5):
        shared = [ingest() for _ in range(20)]
        first = [ingest() for _ in range(200)] + shared
        second = shared + [ingest() for _ in range(200)]
        outcomes = await asyncio.gather(store.store_external(first),
                                        store.store_external(second), return_exceptions=True)
        for batch, outcome in zip((first, second), outcomes, strict=True):
            ids = [entry["requestId"] for entry in batch]
            own = [i for i in ids if i not in {e["requestId"] for e in shared}]
            stored = await log_entries.count_documents({"requestId": {"$in": own}})
            if outcome is None:
                assert stored == len(own)
            else:
                assert isinstance(outcome, DuplicateRequestId)
                assert stored == 0
        assert sum(o is None for o in outcomes) <= 1  # they overlap: both cannot win
        stored_shared = await log_entries.count_documents(
            {"requestId": {"$in": [e["requestId"] for e in shared]}})
        assert stored_shared == (len(shared) if None in outcomes else 0)


async def test_external_entries_cannot_shadow_a_gateway_request(log_entries):
    store = LogStore(log_entries)
    event = completed(1, user_id=BOB.user_id)
    await store.store_external([ingest(event.request_id, userId="forged")])
    assert await store.store_gateway_events([event]) == 1  # stored, not taken as a duplicate
    entry = await store.by_request_id(BOB, event.request_id)
    assert entry["source"] == "gateway" and entry["userId"] == BOB.user_id
    # a caller who cannot see the gateway entry gets the external one
    assert (await store.by_request_id(ALICE, event.request_id))["source"] == "external"


async def test_visibility_follows_the_caller(log_entries):
    store = LogStore(log_entries)
    await store.store_gateway_events([
        completed(1, user_id="alice", path="/mine"),
        completed(2, user_id="carol", owner_id="alice", project_id="p-a", path="/to-my-project"),
        completed(3, user_id="bob", path="/bobs"),
    ])
    await store.store_external([ingest(path="/ext")])

    async def paths(caller: Caller, **where) -> set[str]:
        page = await store.page(caller, LogFilter(**where), page=1, limit=100)
        assert page.total == len(page.entries)
        return {entry["path"] for entry in page.entries}

    assert await paths(ALICE) == {"/mine", "/to-my-project", "/ext"}
    assert await paths(BOB) == {"/bobs", "/ext"}
    assert await paths(ADMIN) == {"/mine", "/to-my-project", "/bobs", "/ext"}
    assert await paths(ALICE, user_id="bob") == set()
    assert await paths(ALICE, source="gateway") == {"/mine", "/to-my-project"}
    assert await paths(ALICE, project_id="p-a") == {"/to-my-project"}


async def test_newest_first_with_total_and_pages(log_entries):
    store = LogStore(log_entries)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    await store.store_external([
        ingest(timestamp=(start + timedelta(seconds=i)).isoformat(), path=f"/p{i}")
        for i in range(25)])
    first = await store.page(ADMIN, LogFilter(), page=1, limit=10)
    third = await store.page(ADMIN, LogFilter(), page=3, limit=10)
    assert [e["path"] for e in first.entries] == [f"/p{i}" for i in range(24, 14, -1)]
    assert [e["path"] for e in third.entries] == [f"/p{i}" for i in range(4, -1, -1)]
    assert first.to_wire()["totalPages"] == 3 and third.total == 25
    window = await store.page(ADMIN, LogFilter(since=start + timedelta(seconds=5),
                                               until=start + timedelta(seconds=7)),
                              page=1, limit=10)
    assert [e["path"] for e in window.entries] == ["/p7", "/p6", "/p5"]  # bounds inclusive


async def test_retention_deletes_expired_entries_in_chunks_and_keeps_the_rest(
        log_entries, monkeypatch):
    monkeypatch.setattr(store_module, "DELETE_CHUNK", 7)
    store = LogStore(log_entries)
    old = datetime.now(UTC) - timedelta(days=31)
    await store.store_external([ingest(timestamp=(old + timedelta(seconds=i)).isoformat())
                                for i in range(30)])
    await store.store_gateway_events([completed(i) for i in range(5)])  # stamped now
    sweeper = RetentionSweeper(store, retention=timedelta(days=30), interval_s=3600)
    assert await sweeper.sweep() == 30
    assert await log_entries.count_documents({}) == 5
    assert await sweeper.sweep() == 0
