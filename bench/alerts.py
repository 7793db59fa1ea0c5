"""The alert event rows of `make bench`.

BENCH_ALERT_EVENTS (default 100,000) alert events, stored as the engine stores them
(analytics_svc.alert_store.event_document) for 20 owners with 5 rules each, one event per
rule and evaluation slot, spread over the last 30 days; seeded once into their own
PostgreSQL database (ALERT_EVENT_STORE=postgresql, the default: analytics_svc.alert_events_pg)
and reused by later runs. Through the gateway, BENCH_ALERT_SAMPLES (20) calls each:
`GET /api/v1/alerts/events` first page (limit 20, newest first) as one owner (1/20 of the
events) and as an admin, and `PUT /api/v1/alerts/events/:id/acknowledge` by the owner;
target p95 <= 50 ms. `rows(stack, checks)` runs them inside bench/run.py.

A row stops sampling after BENCH_ALERT_BUDGET_S (120) seconds, with at least one sample: on
FerretDB a listing sorts and counts the whole collection in memory (tens of seconds at
100,000 events), and 20 of them would hold the bench up for half an hour.
"""

from __future__ import annotations

import json
import os
import statistics
import time
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

EVENTS = int(os.environ.get("BENCH_ALERT_EVENTS", "100000"))
SAMPLES = int(os.environ.get("BENCH_ALERT_SAMPLES", "20"))
BUDGET_S = float(os.environ.get("BENCH_ALERT_BUDGET_S", "120"))
OWNERS = 20
RULES_PER_OWNER = 5
SEED_BATCH = 1000
DATASET = "alerts-v1"  # bump when the generated events change
OWNER = 7  # whose events the owner rows read and acknowledge
DATABASE = "gateway_bench_alerts"  # seeded once, kept for later runs
TARGET_MS = 50.0  # p95 of each row


def owner_id(index: int) -> str:
    return f"bench-alert-owner-{index:02d}"


def rules() -> list:
    """The rules the events belong to (never stored: the rows read only events)."""
    from analytics_svc.alert_store import AlertRule
    from contracts.mongo import derived_id

    return [AlertRule(id=str(derived_id("bench-alert-rule", str(n))), name=f"Busy {n}",
                      service="gateway", metric="request_count", window_s=60, threshold=5.0,
                      operator="gt", cool_down_s=300, severity=None, project_id=None,
                      user_id=owner_id(n % OWNERS), owner_is_admin=False)
            for n in range(OWNERS * RULES_PER_OWNER)]


def event_documents(first: int, count: int, total: int, end: datetime) -> list[dict]:
    """Events first..first+count of `total`, oldest first: event i is in evaluation slot i of
    rule i % (number of rules)."""
    from analytics_svc.alert_store import event_document

    every = rules()
    step = timedelta(days=30) / total
    documents = []
    for i in range(first, first + count):
        rule = every[i % len(every)]
        value = 6.0 + i % 10
        severity = "critical" if value > 1.5 * rule.threshold else "warning"
        documents.append(event_document(
            rule, i, value=value, severity=severity, at=end - step * (total - i),
            message=f"[{severity.upper()}] {rule.name}: request_count = {value}"
                    f" (threshold: {rule.threshold})"))
    return documents


def owner_event_ids(total: int, count: int) -> list[str]:
    """`count` of the owner's events, spread over the collection (event i is rule i % 100's,
    whose owner is i % 20)."""
    from contracts.mongo import derived_id

    every = rules()
    mine = range(OWNER, total, OWNERS)
    picked = [mine[k * len(mine) // count] for k in range(min(count, len(mine)))]
    return [str(derived_id("alert", every[i % len(every)].id, str(i))) for i in picked]


def seed_postgres(url: str, events: int) -> float:
    """Make sure `events` bench events exist in the analytics database at `url` (migrated
    here); returns the seconds spent seeding (0 when an earlier run did it)."""
    import asyncio

    from analytics_svc.alert_events_pg import COLUMNS, row_of
    from analytics_svc.app import MIGRATIONS
    from contracts.migrations import open_migrated_pool

    marker = f"{DATASET}:{events}"

    async def run() -> float:
        import asyncpg

        from tests.support import recreate_database

        try:
            pool = await open_migrated_pool(url, MIGRATIONS)
        except asyncpg.InvalidCatalogNameError:  # the first run: no database yet
            await recreate_database(url)
            pool = await open_migrated_pool(url, MIGRATIONS)
        try:
            async with pool.acquire() as connection:
                await connection.execute(
                    "CREATE TABLE IF NOT EXISTS bench_meta (marker text PRIMARY KEY)")
                if await connection.fetchval("SELECT marker FROM bench_meta") == marker:
                    return 0.0
                started = time.perf_counter()
                await connection.execute("TRUNCATE alert_events, bench_meta")
                end = datetime.now(UTC)
                for first in range(0, events, 10 * SEED_BATCH):
                    documents = event_documents(first, min(10 * SEED_BATCH, events - first),
                                                events, end)
                    await connection.copy_records_to_table(
                        "alert_events", columns=COLUMNS,
                        records=[row_of(document) for document in documents])
                await connection.execute("ANALYZE alert_events")
                await connection.execute("INSERT INTO bench_meta VALUES ($1)", marker)
                return time.perf_counter() - started
        finally:
            await pool.close()

    return asyncio.run(run())


def seed(mongo_url: str, mongo_db: str, events: int) -> float:
    """Make sure `events` bench events exist; returns the seconds spent seeding (0 when an
    earlier run did it). Prints progress while it seeds."""
    from pymongo import MongoClient

    from analytics_svc.alert_store import EVENTS as COLLECTION

    client: MongoClient = MongoClient(mongo_url)
    try:
        meta = client[mongo_db]["bench_meta"]
        if (meta.find_one({"_id": "seeded"}) or {}).get("marker") == f"{DATASET}:{events}":
            return 0.0
        client.drop_database(mongo_db)
        collection = client[mongo_db][COLLECTION]
        started = last_print = time.perf_counter()
        end = datetime.now(UTC)
        for first in range(0, events, SEED_BATCH):
            collection.insert_many(
                event_documents(first, min(SEED_BATCH, events - first), events, end),
                ordered=False)
            done, now = min(events, first + SEED_BATCH), time.perf_counter()
            if now - last_print >= 5 or done == events:
                rate = done / (now - started)
                say(f"  {done:,} of {events:,} events stored, {rate:,.0f}/s,"
                    f" {(events - done) / rate:.0f} s left")
                last_print = now
        meta.insert_one({"_id": "seeded", "marker": f"{DATASET}:{events}"})
        return time.perf_counter() - started
    finally:
        client.close()


def tokens(secret: str) -> dict[str, str]:
    from contracts.identity import issue_access_token

    return {
        "owner": issue_access_token(secret, user_id=owner_id(OWNER),
                                    email="owner@example.com", role="DEVELOPER"),
        "admin": issue_access_token(secret, user_id="bench-admin", email="admin@example.com",
                                    role="ADMIN"),
    }


def latencies(call: Callable[[int], urllib.request.Request], samples: int = SAMPLES,
              budget_s: float = BUDGET_S) -> dict[str, float]:
    """p50/p95 (ms) of up to `samples` calls of call(n)'s request, fewer when the budget runs
    out (at least one)."""
    timings: list[float] = []
    started = time.perf_counter()
    for n in range(samples):
        request = call(n)
        began = time.perf_counter()
        with urllib.request.urlopen(request, timeout=600) as response:
            response.read()
        timings.append((time.perf_counter() - began) * 1000)
        if time.perf_counter() - started > budget_s:
            break
    timings.sort()
    p95 = timings[min(len(timings) - 1, max(0, round(0.95 * len(timings)) - 1))]
    return {"p50": statistics.median(timings), "p95": p95, "samples": len(timings)}


def cases(gateway: str, secret: str, events: int = EVENTS,
          samples: int = SAMPLES) -> list[tuple[str, Callable[[int], urllib.request.Request]]]:
    """The three rows' requests (sample n -> request), against a gateway whose analytics
    service reads the seeded database."""
    who = tokens(secret)

    def listing(role: str) -> Callable[[int], urllib.request.Request]:
        return lambda _: urllib.request.Request(
            f"{gateway}/api/v1/alerts/events?limit=20&offset=0",
            headers={"Authorization": f"Bearer {who[role]}"})

    ids = owner_event_ids(events, samples)

    def acknowledge(n: int) -> urllib.request.Request:
        return urllib.request.Request(
            f"{gateway}/api/v1/alerts/events/{ids[n % len(ids)]}/acknowledge", method="PUT",
            data=json.dumps({}).encode(), headers={"Authorization": f"Bearer {who['owner']}",
                                                   "Content-Type": "application/json"})

    return [("GET /alerts/events owner", listing("owner")),
            ("GET /alerts/events admin", listing("admin")),
            ("PUT /alerts/events/:id/ack owner", acknowledge)]


def say(text: str = "") -> None:
    print(text, flush=True)


def rows(stack, checks: list[tuple[str, bool]]) -> None:
    """The rows in `make bench` (bench/run.py's Stack): the analytics service stops while
    the events are seeded, then reads them (ANALYTICS_DATABASE_URL naming DATABASE); each
    row is printed as it is measured, with its target, and ends up in `checks`."""
    from contracts.settings import DEV_SECRETS

    url = f"{stack.env['ANALYTICS_DATABASE_URL'].rpartition('/')[0]}/{DATABASE}"
    say(f"\nalert events: {EVENTS:,} in PostgreSQL {DATABASE} (analytics service stopped"
        " meanwhile)")
    stack.stop_service("analytics_svc")
    seeded_s = seed_postgres(url, EVENTS)
    say(f"  seeded in {seeded_s:.0f} s" if seeded_s else "  seeded by an earlier run")
    stack.restart("analytics_svc", ANALYTICS_DATABASE_URL=url, ALERT_EVENT_STORE="postgresql")
    say(f"\nalert events over {EVENTS:,} ({OWNERS} owners), through the gateway, limit 20,"
        f" up to {SAMPLES} samples per row, at most {BUDGET_S:.0f} s a row")
    say(f"  {'row':34} {'p50 ms':>9} {'p95 ms':>9} {'samples':>8}   target")
    worst = 0.0
    for label, call in cases(stack.gateway, DEV_SECRETS["ACCESS_TOKEN_SECRET"]):
        result = latencies(call)
        worst = max(worst, result["p95"])
        met = "met" if result["p95"] <= TARGET_MS else "MISSED"
        say(f"  {label:34} {result['p50']:9.1f} {result['p95']:9.1f} {result['samples']:8.0f}"
            f"   p95 <= {TARGET_MS:.0f} ms {met}")
    checks.append((f"alert events p95 <= {TARGET_MS:.0f} ms, {EVENTS:,} events: worst"
                   f" {worst:.0f} ms", worst <= TARGET_MS))
    stack.restart("analytics_svc")  # the stack's own again
