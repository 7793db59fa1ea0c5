"""The logging rows of `make bench`.

- Ingest: events from the gateway's publisher (`EventPublisher`, as the gateway uses it) to
  stored log entries, with the logging service consuming as under `make run`: events are
  published as fast as the publisher confirms them (at most PUBLISH_AHEAD waiting) for the
  duration, then the rate is stored entries / time until the last one was stored, read
  from the service's own counter; lost = published - stored (counted in the database).
- Queries: `GET /api/v1/logs` first page, newest first, with and without a `statusCode`
  filter, as a tenant and as an admin, over BENCH_LOG_ENTRIES stored entries (seeded once
  into their own database and reused by later runs).
"""

from __future__ import annotations

import asyncio
import re
import statistics
import time
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from contracts.messages import RequestCompleted, RequestError
from contracts.timeutil import to_iso

PUBLISH_AHEAD = 20_000
SEED_BATCH = 1000
TENANTS = 100
MARKER_AGENT = "bench-ingest"


def synthetic_event(index: int, moment: datetime, user_agent: str) -> RequestCompleted:
    status = (200, 200, 200, 201, 404, 200, 500, 200, 401, 200)[index % 10]
    tenant = f"bench-tenant-{index % TENANTS:02d}"
    return RequestCompleted(
        request_id=str(uuid.uuid4()), timestamp=to_iso(moment), method="GET",
        path=f"/shop/items/{index}", route="/shop/items/:id", status_code=status,
        latency=1.0 + index % 50, ip="127.0.0.1", user_id=tenant, api_key_id=None,
        project_id=None, owner_id=f"bench-owner-{index % 10}", user_agent=user_agent,
        content_length=0,
        error=None if status < 400 else RequestError(
            "CLIENT_ERROR" if status < 500 else "INTERNAL", "Error"))


def stored_by_service(metrics_url: str) -> int:
    text = urllib.request.urlopen(metrics_url, timeout=5).read().decode()
    found = re.search(
        r'^log_entries_stored_total\{outcome="new",source="gateway"\} ([0-9.e+]+)$', text, re.M)
    return int(float(found.group(1))) if found else 0


@dataclass
class Sink:
    """A consumer of the published events: how far it got, read from its service."""

    name: str
    read: Callable[[], int]  # a cumulative counter of the service
    before: int = 0
    done: int = 0
    elapsed_s: float = 0.0  # from the first publish to the last change of the counter


@dataclass
class IngestResult:
    published: int
    publish_s: float
    sinks: dict[str, Sink]


async def ingest(amqp_url: str, sinks: list[Sink], seconds: float) -> IngestResult:
    """Publish for `seconds`, then wait until every sink counted them all (or stalled 30 s)."""
    from contracts.amqp import connect
    from contracts.events import EventPublisher

    connection = await connect(amqp_url, name="bench-ingest")
    publisher = EventPublisher(connection)
    await publisher.start()
    for sink in sinks:
        sink.before = sink.read()
    started = time.perf_counter()
    published = 0
    while time.perf_counter() - started < seconds:
        if publisher.pending > PUBLISH_AHEAD:
            await asyncio.sleep(0.005)
            continue
        now = datetime.now(UTC)
        for _ in range(500):
            publisher.publish(synthetic_event(published, now, MARKER_AGENT))
            published += 1
        await asyncio.sleep(0)
    await publisher.flush(timeout=120)
    publish_s = time.perf_counter() - started
    waiting = {sink.name: time.perf_counter() for sink in sinks}
    while waiting:
        for sink in sinks:
            if sink.name not in waiting:
                continue
            count = sink.read() - sink.before
            if count != sink.done:
                sink.done, waiting[sink.name] = count, time.perf_counter()
                sink.elapsed_s = waiting[sink.name] - started
            if sink.done >= published or time.perf_counter() - waiting[sink.name] > 30:
                del waiting[sink.name]
        await asyncio.sleep(0.05)
    await publisher.close()
    await connection.close()
    return IngestResult(published, publish_s, {sink.name: sink for sink in sinks})


async def stored_in_database(mongo_url: str, mongo_db: str) -> int:
    from pymongo import AsyncMongoClient

    client: AsyncMongoClient = AsyncMongoClient(mongo_url)
    try:
        return await client[mongo_db]["logentries"].count_documents(
            {"userAgent": MARKER_AGENT})
    finally:
        await client.close()


def seed(mongo_url: str, mongo_db: str, entries: int) -> float:
    """Make sure `entries` synthetic entries exist (spread over the last 7 days); returns
    the seconds spent seeding (0 when an earlier run had done it)."""
    from pymongo import MongoClient

    from logging_svc.store import gateway_document

    client: MongoClient = MongoClient(mongo_url)
    meta = client[mongo_db]["bench_meta"]
    if (meta.find_one({"_id": "seeded"}) or {}).get("entries") == entries:
        client.close()
        return 0.0
    client.drop_database(mongo_db)
    collection = client[mongo_db]["logentries"]
    started = time.perf_counter()
    now = datetime.now(UTC)
    step = timedelta(days=7) / entries
    for first in range(0, entries, SEED_BATCH):
        batch = [gateway_document(synthetic_event(i, now - step * i, "bench-seed"))
                 for i in range(first, min(entries, first + SEED_BATCH))]
        collection.insert_many(batch, ordered=False)
    meta.insert_one({"_id": "seeded", "entries": entries})
    client.close()
    return time.perf_counter() - started


def query_latencies(url: str, token: str, samples: int) -> dict[str, float]:
    timings = []
    for _ in range(samples):
        request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
        started = time.perf_counter()
        with urllib.request.urlopen(request, timeout=600) as response:
            response.read()
        timings.append((time.perf_counter() - started) * 1000)
    timings.sort()
    p95 = timings[min(len(timings) - 1, max(0, round(0.95 * len(timings)) - 1))]
    return {"p50": statistics.median(timings), "p95": p95, "samples": samples}


def tokens(secret: str) -> dict[str, str]:
    from contracts.identity import issue_access_token

    return {
        "tenant": issue_access_token(secret, user_id="bench-tenant-07",
                                     email="tenant@example.com", role="DEVELOPER"),
        "admin": issue_access_token(secret, user_id="bench-admin", email="admin@example.com",
                                    role="ADMIN"),
    }
