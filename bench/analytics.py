"""The analytics rows of `make bench`.

- Ingest: the same run as the log ingest row (bench/logs.py publishes through the gateway's
  publisher while the logging and analytics services both consume); here, the rate at which
  the analytics service folded those events into its rollups, read from its own counter,
  and how many are missing from the rollups afterwards (counted in the database).
- Queries: BENCH_ANALYTICS_REQUESTS (default 1,000,000) requests over 7 days from 20
  tenants, folded once into the rollups of their own database (the service's fold code, fed
  directly rather than through the broker to save minutes) and stored once as raw log
  entries in the MongoDB-protocol server; both are kept for later runs. Then `summary`,
  `latency` and `top-endpoints` for the last 7 days and the last hour of that data, as an
  admin and as one tenant, through the gateway (p50/p95 of BENCH_ANALYTICS_SAMPLES calls);
  and the same three answers computed the original's way: every matching raw entry read and
  the numbers computed in Python (the local server has no `$percentile`), once per case.
"""

from __future__ import annotations

import asyncio
import random
import re
import time
import urllib.request
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from contracts.messages import RequestCompleted, RequestError
from contracts.timeutil import to_iso

TENANTS = 20
ROUTES = ("/shop/items", "/shop/items/:id", "/shop/orders", "/shop/orders/:id", "/shop/cart")
SEED_BATCH = 5000
DATASET = "analytics-v2"  # bump when the generated traffic or the rollup tables change


# --- the traffic -----------------------------------------------------------------------------


def tenant(index: int) -> str:
    return f"bench-tenant-{index:02d}"


def generated_traffic(count: int, end: datetime) -> Iterator[RequestCompleted]:
    """`count` requests over the 7 days before `end`, oldest first, the same for a given
    count and end: each tenant owns one project; callers mostly use their own, sometimes
    another tenant's, sometimes only an API key; some paths match nothing."""
    rng = random.Random(count)
    step = timedelta(days=7) / count
    start = end - timedelta(days=7)
    for index in range(count):
        owner = rng.randrange(TENANTS)
        roll = rng.random()
        caller = owner if roll < 0.7 else (rng.randrange(TENANTS) if roll < 0.85 else None)
        route = rng.choice(ROUTES) if rng.random() < 0.97 else None
        status = rng.choices((200, 201, 304, 400, 401, 404, 429, 500, 502),
                             (70, 8, 4, 4, 3, 5, 2, 2, 2))[0]
        yield RequestCompleted(
            request_id=str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            timestamp=to_iso(start + step * index), method=rng.choice(("GET", "GET", "POST")),
            path=(route or "/wp-login.php").replace(":id", str(index % 1000)), route=route,
            status_code=status, latency=round(rng.lognormvariate(2.5, 1.0), 3),
            ip="10.0.0.1", user_id=tenant(caller) if caller is not None else None,
            api_key_id=f"bench-key-{owner:02d}" if caller is None else None,
            project_id=f"bench-project-{owner:02d}" if route else None,
            owner_id=tenant(owner) if route else None, user_agent="bench-analytics",
            content_length=0,
            error=None if status < 400 else RequestError(
                "CLIENT_ERROR" if status < 500 else "INTERNAL", "Error"))


def data_end(now: datetime) -> datetime:
    """The end of the generated week: the start of the current hour."""
    return now.replace(minute=0, second=0, microsecond=0)


# --- seeding (once; later runs reuse it) -------------------------------------------------------


async def seeded_end(database_url: str, requests: int) -> datetime | None:
    """The end of the week an earlier run folded into `database_url`, if it folded this
    dataset."""
    import asyncpg

    try:
        connection = await asyncpg.connect(database_url)
    except asyncpg.InvalidCatalogNameError:
        return None
    try:
        return await connection.fetchval(
            "SELECT data_end FROM bench_meta WHERE dataset = $1 AND requests = $2",
            DATASET, requests)
    except asyncpg.UndefinedTableError:
        return None
    finally:
        await connection.close()


async def seed_rollups(database_url: str, requests: int, end: datetime) -> float:
    """Fold the traffic into a new migrated database; returns the seconds it took."""
    from analytics_svc.app import MIGRATIONS
    from analytics_svc.store import RollupStore
    from contracts.migrations import open_migrated_pool
    from tests.support import recreate_database

    await recreate_database(database_url)
    pool = await open_migrated_pool(database_url, MIGRATIONS)
    store = RollupStore(pool)
    started = time.perf_counter()
    batch: list[RequestCompleted] = []
    now = datetime.now(UTC)
    for event in generated_traffic(requests, end):
        batch.append(event)
        if len(batch) == SEED_BATCH:
            await store.fold(batch, now)
            batch = []
    if batch:
        await store.fold(batch, now)
    await pool.execute("CREATE TABLE bench_meta (dataset text, requests int,"
                       " data_end timestamptz)")
    await pool.execute("INSERT INTO bench_meta VALUES ($1, $2, $3)", DATASET, requests, end)
    await pool.execute("VACUUM ANALYZE")
    await pool.close()
    return time.perf_counter() - started


def seed_raw(mongo_url: str, mongo_db: str, requests: int, end: datetime) -> float:
    """The same traffic as raw log entries (the logging service's documents)."""
    from pymongo import MongoClient

    from logging_svc.entries import LogRecord
    from logging_svc.mongo_store import document_of

    marker = f"{DATASET}:{requests}:{to_iso(end)}"
    client: MongoClient = MongoClient(mongo_url)
    meta = client[mongo_db]["bench_meta"]
    if (meta.find_one({"_id": "seeded"}) or {}).get("marker") == marker:
        client.close()
        return 0.0
    client.drop_database(mongo_db)
    collection = client[mongo_db]["logentries"]
    started = time.perf_counter()
    batch = []
    for event in generated_traffic(requests, end):
        batch.append(document_of(LogRecord.of_event(event)))
        if len(batch) == 1000:
            collection.insert_many(batch, ordered=False)
            batch = []
    if batch:
        collection.insert_many(batch, ordered=False)
    meta.insert_one({"_id": "seeded", "marker": marker})
    client.close()
    return time.perf_counter() - started


# --- the questions -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    endpoint: str  # summary | latency | top-endpoints
    span: str  # 7 days | 1 hour
    role: str  # admin | tenant
    since: datetime
    until: datetime  # inclusive, 1 ms before the end

    @property
    def label(self) -> str:
        return f"{self.endpoint} {self.span} {self.role}"


def cases(end: datetime) -> list[Case]:
    last = end - timedelta(milliseconds=1)
    spans = (("7 days", end - timedelta(days=7)), ("1 hour", end - timedelta(hours=1)))
    return [Case(endpoint, span, role, since, last)
            for span, since in spans for role in ("admin", "tenant")
            for endpoint in ("summary", "latency", "top-endpoints")]


def rollup_latencies(gateway: str, case: Case, token: str, samples: int) -> dict[str, float]:
    from bench.logs import query_latencies

    query = urlencode({"from": to_iso(case.since), "to": to_iso(case.until)})
    return query_latencies(f"{gateway}/api/v1/analytics/{case.endpoint}?{query}", token,
                           samples)


def raw_fetch(collection, since: datetime, until: datetime,
              viewer: str | None) -> tuple[float, list[dict]]:
    """Every matching raw entry (only the fields the answers need); (ms, entries)."""
    started = time.perf_counter()
    where: dict[str, Any] = {"source": "gateway", "timestamp": {"$gte": since, "$lte": until}}
    if viewer is not None:
        where["$or"] = [{"userId": viewer}, {"ownerId": viewer}]
    fields = {"_id": 0, "latency": 1, "statusCode": 1, "userId": 1, "method": 1, "route": 1}
    entries = list(collection.find(where, fields))
    return (time.perf_counter() - started) * 1000, entries


def _quantile(ordered: list[float], q: float) -> float:
    return ordered[int(q * (len(ordered) - 1))] if ordered else 0.0


def _raw_summary(entries: list[dict]) -> dict[str, Any]:
    latencies = sorted(e["latency"] for e in entries)
    errors = sum(e["statusCode"] >= 400 for e in entries)
    return {"totalRequests": len(entries), "p95Latency": _quantile(latencies, 0.95),
            "errorCount": errors,
            "statusBreakdown": dict(Counter(f"{e['statusCode'] // 100}xx" for e in entries)),
            "uniqueUsers": len({e["userId"] for e in entries if e.get("userId")}),
            "uniqueEndpoints": len({(e["method"], e.get("route")) for e in entries})}


def _raw_latency(entries: list[dict]) -> dict[str, float]:
    latencies = sorted(e["latency"] for e in entries)
    return {f"p{int(q * 100)}": _quantile(latencies, q) for q in (0.5, 0.95, 0.99)}


def _raw_top_endpoints(entries: list[dict]) -> list[tuple[str, str, int]]:
    groups: dict[tuple[str, str], int] = defaultdict(int)
    for e in entries:
        groups[(e["method"], e.get("route") or "(unmatched)")] += 1
    return sorted(((m, r, n) for (m, r), n in groups.items()), key=lambda t: -t[2])[:10]


RAW_ANSWERS = {"summary": _raw_summary, "latency": _raw_latency,
               "top-endpoints": _raw_top_endpoints}


def raw_latencies(mongo_url: str, mongo_db: str, all_cases: list[Case],
                  viewers: dict[str, str | None]) -> dict[str, float]:
    """Per case: reading its entries plus computing its answer. The three endpoints of one
    range and role read the same entries, so they are read once and each answer is charged
    the reading time (each call of the original read them again)."""
    from pymongo import MongoClient

    client: MongoClient = MongoClient(mongo_url)
    collection = client[mongo_db]["logentries"]
    timings: dict[str, float] = {}
    fetched: dict[tuple[str, str], tuple[float, list[dict]]] = {}
    for case in all_cases:
        key = (case.span, case.role)
        if key not in fetched:
            fetched.clear()  # one range's entries in memory at a time
            fetched[key] = raw_fetch(collection, case.since, case.until, viewers[case.role])
        reading_ms, entries = fetched[key]
        started = time.perf_counter()
        RAW_ANSWERS[case.endpoint](entries)
        timings[case.label] = reading_ms + (time.perf_counter() - started) * 1000
    client.close()
    return timings


# --- ingest into rollups -------------------------------------------------------------------------


def folded_by_service(metrics_url: str) -> int:
    text = urllib.request.urlopen(metrics_url, timeout=5).read().decode()
    found = re.search(r'^analytics_events_folded_total\{outcome="new"\} ([0-9.e+]+)$', text,
                      re.M)
    return int(float(found.group(1))) if found else 0


async def folded_in_database(database_url: str) -> int:
    import asyncpg

    connection = await asyncpg.connect(database_url)
    try:
        return await connection.fetchval(
            "SELECT coalesce(sum(requests), 0) FROM traffic WHERE viewer = '*'"
            " AND project = '*' AND resolution = 3600")
    finally:
        await connection.close()


# the viewers of bench.logs.tokens: tenant 7, and an admin (all traffic)
VIEWERS = {"tenant": tenant(7), "admin": None}


def run_seed(database_url: str, mongo_url: str, mongo_db: str, requests: int,
             now: datetime) -> tuple[datetime, float, float]:
    """Seed both stores unless an earlier run did so within the last day; returns (end of
    the data, seconds folding, seconds storing raw entries)."""
    end = asyncio.run(seeded_end(database_url, requests))
    rollup_s = 0.0
    if end is None or now - end > timedelta(days=1):
        end = data_end(now)
        rollup_s = asyncio.run(seed_rollups(database_url, requests, end))
    raw_s = seed_raw(mongo_url, mongo_db, requests, end)
    return end, rollup_s, raw_s
