"""The logging rows of `make bench` (issue 20: log entries in PostgreSQL, LOG_STORE=postgresql).

- Ingest: events from the gateway's publisher (`EventPublisher`, as the gateway uses it) to
  stored log entries, with the logging service (LOG_STORE=postgresql, a bench database of its
  own) and the analytics service consuming as under `make run`: events are published as
  fast as the publisher confirms them (at most PUBLISH_AHEAD waiting) for the duration, then
  the rate is stored entries / time until the last one was stored, read from the service's
  own counter; lost = published - entries with the ingest's marker counted in the database.
  Target: >= 10,000 events/s, 0 lost.
- The dataset (`generate`): BENCH_LOG_ENTRIES entries spread over the 7 days before seeding
  (so 8 UTC day partitions, the oldest and today's partial), oldest first: 20 developers,
  10 projects owned by 7 of them (created through the gateway, so a `projectId` filter passes
  the project service's visibility check); 3 % external entries (POST /logs: no project,
  half with a userId), 9 % platform routes and unmatched paths (no project), the rest
  project traffic called by the owner (55 %), by another developer (20 %) or with only an
  API key (25 %); statuses mostly 2xx (about 7 % 4xx, 3 % 5xx), methods mostly GET. The
  developer with many entries owns the two busiest projects (about 40 % of all traffic); the
  one with few owns one project with 0.2 % and hardly calls others' (about 0.2 % of all
  entries are theirs; like every developer they also see every external entry).
- Seeding: straight into the bench database with the store's own batch path: gateway
  records are built field for field as `LogRecord.of_event` builds them from the gateway's
  `RequestCompleted` (every 97th is rebuilt through `of_event` and must be equal) and written
  with `PostgresLogStore.store_once` (what the consumer does); external ones are ingest
  objects turned into records by `LogRecord.of_ingest` and written with `store_external` in
  batches of 1000 (what POST /logs/batch does); two batches in flight while the next is
  generated in a thread; then VACUUM (ANALYZE) (the statistics, and the visibility map
  autovacuum gives a day partition once written). A progress line every 5 s (count, rate,
  time left).
- Queries (`QUERIES`): GET /api/v1/logs through the gateway as an admin, the developer with
  many entries and the one with few: first page, page 5, the page the 50th `nextCursor`
  reaches (the 50 hops are walked once, untimed; the 51st request, with that cursor, is the
  one timed, `samples` times), `statusCode=500`, `method=POST`, `projectId` (the admin and
  the busy developer: the busiest project; the other: their own small one), the last 24
  hours (`from`), `/logs/errors`, and `GET /logs/:requestId` (a different visible entry per
  sample). limit=20 throughout. One untimed warm-up request per row, then `samples` timed
  ones; p50 and p95 (nearest rank); target p95 <= 100 ms.
- Partition drop: the oldest whole day (about entries / 7) is dropped the way retention does
  it (`PostgresLogStore.upkeep` with the retention set so that this day is the one past it:
  `partitions.drop_before`, i.e. DROP TABLE under the partition lock, then that day's ids
  deleted from `log_ids` in chunks), while two clients keep asking for first pages (the
  admin's, the busy developer's); their latency before and while it runs.
- MongoDB: the same rows with LOG_STORE=mongodb on the local FerretDB at
  BENCH_MONGO_LOG_ENTRIES, fewer samples, each request cut off at a time limit, the rows
  together within a time budget (the rest listed as not run).
"""

from __future__ import annotations

import asyncio
import bisect
import itertools
import json
import math
import random
import re
import statistics
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from contracts.messages import RequestCompleted, RequestError
from contracts.schemas.logs import LogIngest
from contracts.timeutil import to_iso

PUBLISH_AHEAD = 20_000
TENANTS = 100
MARKER_AGENT = "bench-ingest"
TARGET_P95_MS = 100.0
INGEST_TARGET = 10_000  # events/s


def say(text: str = "") -> None:
    print(text, flush=True)


# --- ingest ------------------------------------------------------------------------------------


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


async def stored_in_database(database_url: str) -> int:
    """Entries of the ingest run (its marker user agent) in the PostgreSQL log store."""
    import asyncpg

    connection = await asyncpg.connect(database_url)
    try:
        return await connection.fetchval(
            "SELECT count(*) FROM log_entries"
            " WHERE convert_from(rest, 'UTF8')::jsonb ->> 'userAgent' = $1", MARKER_AGENT)
    finally:
        await connection.close()


# --- the dataset -------------------------------------------------------------------------------

DEVELOPERS = 20
# PROJECT_OWNERS[i] (a developer index) owns project i; PROJECT_WEIGHTS[i] is its share
PROJECT_OWNERS = (0, 0, 1, 1, 2, 3, 4, 5, 6, 19)
PROJECT_WEIGHTS = (26.0, 14.0, 12.0, 9.0, 10.0, 8.0, 7.0, 6.0, 7.8, 0.2)
MANY, FEW = 0, 19
# how often each developer calls someone else's project (the one with few: hardly ever)
CALLER_WEIGHTS = tuple(0.05 if n == FEW else 1.0 + (n * 7 % 5) for n in range(DEVELOPERS))
EXTERNAL_SHARE, PLATFORM_SHARE = 0.03, 0.09
DAYS = 7
STATUSES = (200, 201, 204, 304, 400, 401, 403, 404, 409, 429, 500, 502, 503, 504)
STATUS_WEIGHTS = (72, 8, 3, 4, 2.5, 1.5, 0.5, 2, 0.5, 1, 1.5, 1, 0.5, 0.5)
ERRORS = {400: ("VALIDATION_ERROR", "Request validation failed"),
          401: ("UNAUTHORIZED", "Unauthorized"), 403: ("FORBIDDEN", "Insufficient permissions"),
          404: ("NOT_FOUND", "Resource not found"), 409: ("CONFLICT", "Conflict"),
          429: ("TOO_MANY_REQUESTS", "Too many requests"),
          500: ("INTERNAL_ERROR", "Internal server error"),
          502: ("UPSTREAM_ERROR", "Upstream service failed"),
          503: ("SERVICE_UNAVAILABLE", "Service unavailable"),
          504: ("UPSTREAM_ERROR", "Upstream service timed out")}
METHODS = ("GET", "POST", "PUT", "DELETE", "PATCH")
METHOD_WEIGHTS = (75, 15, 5, 4, 1)
ROUTES = ("/items", "/items/:id", "/orders", "/orders/:id", "/cart", "/checkout", "/users/:id")
PLATFORM = (("GET", "/api/v1/projects"), ("GET", "/api/v1/logs"),
            ("GET", "/api/v1/analytics/summary"), ("POST", "/api/v1/auth/refresh"),
            ("GET", "/api/v1/auth/profile"))
AGENTS = ("Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0", "curl/8.5.0", "python-httpx/0.27.0",
          "okhttp/4.12.0", "Go-http-client/1.1", "axios/1.7.2")


def developer_id(index: int) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"gateway-bench/developer/{index}"))


@dataclass(frozen=True)
class Tenancy:
    """Who owns what: developer user ids and the project ids the project service gave."""

    developers: tuple[str, ...]
    projects: tuple[str, ...]

    @property
    def many(self) -> str:
        return self.developers[MANY]

    @property
    def few(self) -> str:
        return self.developers[FEW]

    def owner_of(self, project: int) -> str:
        return self.developers[PROJECT_OWNERS[project]]


def create_projects(gateway: str, secret: str) -> Tenancy:
    """The ten projects, created through the gateway by their owners."""
    developers = tuple(developer_id(n) for n in range(DEVELOPERS))
    projects = []
    for n, owner in enumerate(PROJECT_OWNERS):
        token = developer_token(secret, developers[owner])
        request = urllib.request.Request(
            f"{gateway}/api/v1/projects", method="POST",
            data=json.dumps({"name": f"bench-logs-{n}"}).encode(),
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"})
        with urllib.request.urlopen(request, timeout=10) as response:
            projects.append(json.loads(response.read())["id"])
    return Tenancy(developers, tuple(projects))


@dataclass
class Census:
    """What the generated entries hold, for the report and the by-request-id row."""

    entries: int = 0
    external: int = 0
    own: dict[str, int] = field(default_factory=dict)  # developer -> entries with them as
    # userId or ownerId
    ids: dict[str, list[str]] = field(default_factory=dict)  # caller label -> request ids
    seen: dict[str, int] = field(default_factory=dict)


class _Pick:
    """rng.choices(values, weights)[0] without building the cumulative weights each time."""

    def __init__(self, values: tuple[Any, ...] | range, weights: tuple[float, ...]) -> None:
        self.values = tuple(values)
        self.bounds = list(itertools.accumulate(weights))
        self.total = self.bounds[-1]

    def __call__(self, rng: random.Random) -> Any:
        return self.values[bisect.bisect_right(self.bounds, rng.random() * self.total)]


def _error(status: int) -> dict[str, Any] | None:
    """A gateway entry's `error` as LogRecord.of_event stores it."""
    if status < 400:
        return None
    code, message = ERRORS[status]
    return RequestError(code, message).to_wire()


def _as_event(record: Any) -> RequestCompleted:
    """The event the gateway would have published for a gateway record."""
    error = record.error
    return RequestCompleted(
        request_id=record.request_id, timestamp=to_iso(record.timestamp), method=record.method,
        path=record.path, route=record.route, status_code=record.status_code,
        latency=record.latency, ip=record.ip, user_id=record.user_id,
        api_key_id=record.api_key_id, project_id=record.project_id, owner_id=record.owner_id,
        user_agent=record.user_agent, content_length=record.content_length,
        error=None if error is None else RequestError(error["code"], error["message"]))


CHECK_EVERY = 97  # every so many gateway records are rebuilt through the consumer's path


def generate(count: int, tenancy: Tenancy, end: datetime, census: Census,
             keep_ids: int) -> Iterator[Any]:
    """`count` records (logging_svc.entries.LogRecord) over the DAYS days before `end`,
    oldest first, the same for the same arguments; `census` is filled in as they go, keeping
    `keep_ids` request ids per caller (a reservoir over all their visible gateway entries).

    Gateway records are built as LogRecord.of_event builds them (timestamps to the
    millisecond, as events carry them); every CHECK_EVERY-th is rebuilt from its
    RequestCompleted event through LogRecord.of_event and must come out equal. External ones
    go through LogRecord.of_ingest, like POST /logs."""
    from logging_svc.entries import GATEWAY, LogRecord

    rng = random.Random(count)
    picks = random.Random(count + 1)  # the reservoirs draw from their own stream
    start_ms = int(end.timestamp() * 1000) - DAYS * 86_400_000
    step_ms = DAYS * 86_400_000 / count
    ips = [f"10.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"
           for _ in range(400)]
    keys = [str(uuid.uuid5(uuid.NAMESPACE_URL, f"gateway-bench/key/{p}"))
            for p in tenancy.projects]
    developers, projects = tenancy.developers, tenancy.projects
    owners = [tenancy.owner_of(n) for n in range(len(projects))]
    status_of, method_of = _Pick(STATUSES, STATUS_WEIGHTS), _Pick(METHODS, METHOD_WEIGHTS)
    project_of = _Pick(range(len(projects)), PROJECT_WEIGHTS)
    caller_of = _Pick(developers, CALLER_WEIGHTS)
    errors = {status: _error(status) for status in STATUSES}
    watched = (("admin", None), ("developer, many", tenancy.many),
               ("developer, few", tenancy.few))
    for label, _ in watched:
        census.ids.setdefault(label, [])
        census.seen.setdefault(label, 0)
    own = census.own
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    for index in range(count):
        moment = epoch + timedelta(milliseconds=int(start_ms + step_ms * (index + rng.random())))
        request_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        roll = rng.random()
        status = status_of(rng)
        latency = round(rng.lognormvariate(3.0, 0.9) * (4 if status >= 500 else 1), 3)
        size = rng.randrange(200, 20_000) if status < 300 else rng.randrange(60, 300)
        if roll < EXTERNAL_SHARE:
            error = errors[status]
            census.external += 1
            census.entries += 1
            yield LogRecord.of_ingest(LogIngest.model_validate({
                "requestId": request_id, "timestamp": to_iso(moment),
                "method": method_of(rng), "path": f"/jobs/{rng.randrange(10_000)}",
                "statusCode": status, "latency": latency, "ip": rng.choice(ips),
                "userId": rng.choice(developers) if rng.random() < 0.5 else None,
                "apiKeyId": None, "userAgent": "worker/2.1", "contentLength": size,
                "error": None if error is None else {**error, "stack": "Error\n    at job"}}),
                moment)
            continue
        project = owner = project_id = api_key = None
        if roll < EXTERNAL_SHARE + PLATFORM_SHARE:
            if rng.random() < 0.5:  # a platform route, signed in
                method, route = rng.choice(PLATFORM)
                path, user = route, caller_of(rng)
            else:  # a path no route matches
                method, route, status = "GET", None, 404
                path = rng.choice(("/wp-login.php", "/.env", "/admin", "/favicon.ico",
                                   f"/api/v2/items/{rng.randrange(1000)}"))
                user = caller_of(rng) if rng.random() < 0.3 else None
        else:
            project = project_of(rng)
            owner, project_id = owners[project], projects[project]
            method = method_of(rng)
            route = f"/shop{project}{rng.choice(ROUTES)}"
            path = route.replace(":id", str(rng.randrange(100_000)))
            who = rng.random()
            user = owner if who < 0.55 else caller_of(rng) if who < 0.75 else None
            if user is None:
                api_key = keys[project]
        record = LogRecord(
            request_id=request_id, timestamp=moment, source=GATEWAY, method=method,
            path=path, route=route, status_code=status, latency=latency, ip=rng.choice(ips),
            user_id=user, api_key_id=api_key, project_id=project_id, owner_id=owner,
            user_agent=rng.choice(AGENTS), content_length=size, error=errors[status])
        if index % CHECK_EVERY == 0 and LogRecord.of_event(_as_event(record)) != record:
            raise AssertionError(f"generated record differs from the consumer's: {record}")
        if user is not None:
            own[user] = own.get(user, 0) + 1
        if owner is not None and owner != user:
            own[owner] = own.get(owner, 0) + 1
        for label, viewer in watched:
            if viewer is None or viewer == user or viewer == owner:
                seen = census.seen[label] = census.seen[label] + 1
                kept = census.ids[label]
                if len(kept) < keep_ids:
                    kept.append(request_id)
                elif (slot := picks.randrange(seen)) < keep_ids:
                    kept[slot] = request_id
        census.entries += 1
        yield record


# --- seeding -----------------------------------------------------------------------------------


class Progress:
    """A line every `every_s` seconds: how many, how fast, how long still."""

    def __init__(self, what: str, total: int, every_s: float = 5.0) -> None:
        self.what, self.total, self.every_s = what, total, every_s
        self.started = self.last = time.perf_counter()

    def update(self, done: int, final: bool = False) -> None:
        now = time.perf_counter()
        if not final and now - self.last < self.every_s:
            return
        self.last = now
        elapsed = now - self.started
        rate = done / elapsed if elapsed else 0.0
        left = (self.total - done) / rate if rate else float("inf")
        tail = f"done in {elapsed:.1f} s" if final else f"~{left:.0f} s left"
        say(f"    {self.what}: {done:,}/{self.total:,} entries, {rate:,.0f}/s, {tail}")


def _batches(records: Iterator[Any], gateway_size: int, external_size: int
             ) -> Iterator[tuple[bool, list[Any]]]:
    """(external?, records) batches of each kind, in generation order per kind."""
    gateway: list[Any] = []
    external: list[Any] = []
    for record in records:
        if record.external:
            external.append(record)
            if len(external) == external_size:
                yield True, external
                external = []
        else:
            gateway.append(record)
            if len(gateway) == gateway_size:
                yield False, gateway
                gateway = []
    if gateway:
        yield False, gateway
    if external:
        yield True, external


async def _seed(store: Any, records: Iterator[Any], total: int, what: str,
                gateway_size: int, external_size: int, in_flight: int) -> float:
    """Write the records with the store's own batch methods, `in_flight` batches at once,
    the next batch generated in a thread meanwhile; returns the seconds it took."""
    loop = asyncio.get_running_loop()
    batches = _batches(records, gateway_size, external_size)
    progress = Progress(what, total)
    done = 0
    running: set[asyncio.Task] = set()

    async def write(external: bool, batch: list[Any]) -> None:
        nonlocal done
        if external:
            await store.store_external(batch)
        else:
            stored = await store.store_once(batch)
            if stored != len(batch):
                raise RuntimeError(f"seeding: {len(batch) - stored} entries not stored")
        done += len(batch)
        progress.update(done)

    upcoming = loop.run_in_executor(None, next, batches, None)
    while True:
        batch = await upcoming
        if batch is None:
            break
        upcoming = loop.run_in_executor(None, next, batches, None)
        while len(running) >= in_flight:
            finished, running = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
            for task in finished:
                task.result()
        running.add(asyncio.create_task(write(*batch)))
    for task in asyncio.as_completed(running):
        await task
    progress.update(done, final=True)
    return time.perf_counter() - progress.started


@dataclass
class Seeded:
    entries: int
    census: Census
    end: datetime
    seed_s: float = 0.0
    analyze_s: float = 0.0
    table_mb: float = 0.0
    days: dict[date, int] = field(default_factory=dict)  # entries per day partition


async def seed_postgres(database_url: str, tenancy: Tenancy, count: int, keep_ids: int,
                        in_flight: int = 2) -> Seeded:
    """A new bench database (migrated like the service's) with `count` entries, analyzed."""
    from logging_svc.pg_store import PostgresLogStore
    from tests.support import recreate_database

    await recreate_database(database_url)
    store = await PostgresLogStore.open(database_url, retention_days=30, ahead_days=7)
    end = datetime.now(UTC)
    census = Census()
    seeded = Seeded(count, census, end)
    try:
        seeded.seed_s = await _seed(
            store, generate(count, tenancy, end, census, keep_ids), count,
            "seeding PostgreSQL", 5000, 1000, in_flight)
        started = time.perf_counter()
        pool = store._pool  # the bench reads its own database
        # VACUUM as well: the visibility map autovacuum's insert-triggered runs give a
        # day's partition in service (index-only scans depend on it)
        await pool.execute("VACUUM (ANALYZE) log_entries")
        await pool.execute("VACUUM (ANALYZE) log_ids")
        seeded.analyze_s = time.perf_counter() - started
        seeded.table_mb = await pool.fetchval(
            "SELECT (sum(pg_total_relation_size(c.oid)) + pg_total_relation_size('log_ids'))"
            " / 1048576.0 FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
            " WHERE i.inhparent = 'log_entries'::regclass")
        rows = await pool.fetch(
            "SELECT (ts AT TIME ZONE 'UTC')::date AS day, count(*) AS n FROM log_entries"
            " GROUP BY 1 ORDER BY 1")
        seeded.days = {row["day"]: row["n"] for row in rows}
    finally:
        await store.close()
    return seeded


async def seed_mongo(mongo_url: str, mongo_db: str, tenancy: Tenancy, count: int,
                     keep_ids: int) -> Seeded:
    """The same kind of data in a new MongoDB database (FerretDB locally), written with
    MongoLogStore's batch methods after the indexes the service creates."""
    from contracts.mongo import open_mongo
    from logging_svc.mongo_store import COLLECTION, MongoLogStore, indexes

    mongo = await open_mongo(mongo_url, mongo_db, app_name="bench-logs")
    try:
        await mongo.client.drop_database(mongo_db)
        collection = mongo.db[COLLECTION]
        await mongo.ensure_indexes(collection, indexes(timedelta(days=30)))
        store = MongoLogStore(collection, retention_days=30)
        end = datetime.now(UTC)
        census = Census()
        seeded = Seeded(count, census, end)
        seeded.seed_s = await _seed(
            store, generate(count, tenancy, end, census, keep_ids), count,
            "seeding MongoDB (FerretDB)", 1000, 1000, 1)
    finally:
        await mongo.close()
    return seeded


def describe(seeded: Seeded, tenancy: Tenancy, store: str) -> None:
    census = seeded.census
    say(f"  {store}: {seeded.entries:,} entries over {DAYS} days "
        f"({census.external:,} external), seeded in {seeded.seed_s:.1f} s "
        f"({seeded.entries / seeded.seed_s:,.0f}/s)"
        + (f", VACUUM ANALYZE {seeded.analyze_s:.1f} s, {seeded.table_mb:,.0f} MB with "
           "indexes"
           if seeded.analyze_s else ""))
    for label, viewer in (("developer, many", tenancy.many), ("developer, few", tenancy.few)):
        say(f"    {label}: {census.own.get(viewer, 0):,} entries of their own "
            f"(+ {census.external:,} external ones every developer sees)")
    if seeded.days:
        say("    entries per day partition: " + ", ".join(
            f"{day:%m-%d} {count:,}" for day, count in seeded.days.items()))


# --- tokens ------------------------------------------------------------------------------------


def developer_token(secret: str, user_id: str) -> str:
    from contracts.identity import issue_access_token

    return issue_access_token(secret, user_id=user_id, email=f"{user_id[:8]}@example.com",
                              role="DEVELOPER")


def admin_token(secret: str) -> str:
    from contracts.identity import issue_access_token

    return issue_access_token(secret, user_id="bench-admin", email="admin@example.com",
                              role="ADMIN")


def tokens(secret: str) -> dict[str, str]:
    """The callers of the analytics rows (bench/analytics.py VIEWERS)."""
    from contracts.identity import issue_access_token

    return {
        "tenant": issue_access_token(secret, user_id="bench-tenant-07",
                                     email="tenant@example.com", role="DEVELOPER"),
        "admin": admin_token(secret),
    }


# --- queries -----------------------------------------------------------------------------------


SENT = [0]  # GET requests made (each one RPC operation of the logging service)


class TooSlow(Exception):
    """A request past the time limit."""


def get(url: str, token: str, timeout_s: float) -> tuple[float, Any]:
    """(ms, decoded answer) of one GET; TooSlow past `timeout_s`."""
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    SENT[0] += 1
    started = time.perf_counter()
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            body = response.read()
    except (TimeoutError, urllib.error.URLError) as exc:
        if isinstance(exc, TimeoutError) or isinstance(getattr(exc, "reason", None),
                                                       TimeoutError):
            raise TooSlow from None
        raise
    return (time.perf_counter() - started) * 1000, json.loads(body)


def nearest_rank(ordered: list[float], q: float) -> float:
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def query_latencies(url: str, token: str, samples: int) -> dict[str, float]:
    """p50/p95 of `samples` GETs of `url` (bench/analytics.py uses it too)."""
    timings = sorted(get(url, token, 600)[0] for _ in range(samples))
    return {"p50": statistics.median(timings), "p95": nearest_rank(timings, 0.95),
            "samples": samples}


@dataclass
class Caller:
    """Who asks: a fresh access token every minute (tokens live 15 minutes and a run takes
    longer; a cursor is bound to the user and role, not to the token)."""

    label: str
    user_id: str
    role: str
    secret: str
    project: str  # the project of its projectId row
    _token: str = ""
    _issued: float = 0.0

    @property
    def token(self) -> str:
        if time.monotonic() - self._issued > 60:
            from contracts.identity import issue_access_token

            self._token = issue_access_token(self.secret, user_id=self.user_id,
                                             email=f"{self.user_id[:8]}@example.com",
                                             role=self.role)
            self._issued = time.monotonic()
        return self._token


def callers(secret: str, tenancy: Tenancy) -> list[Caller]:
    return [Caller("admin", "bench-admin", "ADMIN", secret, tenancy.projects[0]),
            Caller("developer, many", tenancy.many, "DEVELOPER", secret, tenancy.projects[0]),
            Caller("developer, few", tenancy.few, "DEVELOPER", secret, tenancy.projects[9])]


# (label, path after /api/v1/logs, query parameters); None marks the special rows
QUERIES: tuple[tuple[str, str, dict[str, str] | None], ...] = (
    ("first page", "", {}),
    ("page 5", "", {"page": "5"}),
    ("cursor: page 51 (50 hops)", "", None),
    ("statusCode=500", "", {"statusCode": "500"}),
    ("method=POST", "", {"method": "POST"}),
    ("projectId", "", {"projectId": ""}),
    ("last 24 h (from)", "", {"from": ""}),
    ("/logs/errors", "/errors", {}),
    ("by request id", "/:requestId", None),
)
HOPS = 50


@dataclass
class Row:
    query: str
    caller: str
    p50: float | None = None  # ms; None: past the time limit
    p95: float | None = None
    samples: int = 0
    matches: str = ""  # the first answer's total ("10,000+" when not exact)
    note: str = ""
    cut: bool = False  # a request went past the time limit

    def figure(self, value: float | None, limit_s: float) -> str:
        if value is not None:
            return f"{value:.1f}"
        return f"> {limit_s:.0f} s" if self.cut else "-"

    @property
    def met(self) -> bool:
        return self.p95 is not None and self.p95 <= TARGET_P95_MS


def _matches(answer: Any) -> str:
    if not isinstance(answer, dict) or "total" not in answer:
        return "-"
    return f"{answer['total']:,}" + ("" if answer.get("totalExact", True) else "+")


def _sample(url: str, token: str, samples: int, timeout_s: float, warm_up: bool,
            urls: list[str] | None = None) -> tuple[list[float], Any, bool]:
    """(sorted ms, first answer, cut off?) of `samples` GETs (of `urls[i]` when given)."""
    first = None
    if warm_up:
        first = get(urls[0] if urls else url, token, timeout_s)[1]
    timings = []
    for n in range(samples):
        try:
            elapsed, answer = get(urls[n % len(urls)] if urls else url, token, timeout_s)
        except TooSlow:
            return sorted(timings), first, True
        first = answer if first is None else first
        timings.append(elapsed)
    return sorted(timings), first, False


def measure(gateway: str, caller: Caller, query: tuple[str, str, dict[str, str] | None],
            ids: list[str], samples: int, timeout_s: float, warm_up: bool) -> Row:
    """One row: `samples` timed requests (fewer when one is past `timeout_s`: the row then
    reads "> limit", as the rest would)."""
    label, suffix, params = query
    base = f"{gateway}/api/v1/logs"
    row = Row(label, caller.label)
    urls: list[str] | None = None
    try:
        if label.startswith("cursor"):
            url = f"{base}?limit=20"
            walked = time.perf_counter()
            answer = get(url, caller.token, timeout_s)[1]
            row.matches = _matches(answer)
            for _ in range(HOPS):
                cursor = answer.get("nextCursor")
                if cursor is None:
                    row.note = "fewer than 51 pages"
                    return row
                url = f"{base}?limit=20&cursor={urllib.parse.quote(cursor)}"
                answer = get(url, caller.token, timeout_s)[1]
            row.note = f"hops walked in {time.perf_counter() - walked:.1f} s"
        elif label == "by request id":
            if not ids:
                row.note = "no visible entry"
                return row
            urls = [f"{base}/{request_id}" for request_id in ids]
            url = urls[0]
        else:
            values = dict(params or {})
            if "projectId" in values:
                values["projectId"] = caller.project
            if "from" in values:
                values["from"] = to_iso(datetime.now(UTC) - timedelta(hours=24))
            url = f"{base}{suffix}?" + urllib.parse.urlencode({"limit": "20", **values})
        timings, answer, cut = _sample(url, caller.token, samples, timeout_s, warm_up, urls)
    except TooSlow:
        timings, answer, cut = [], None, True
    if not row.matches:
        row.matches = _matches(answer)
    row.samples = len(timings)
    row.cut = cut
    if cut:
        row.note = (row.note + "; " if row.note else "") + \
            f"cut off at {timeout_s:.0f} s after {len(timings)} sample(s)"
        return row
    row.p50 = statistics.median(timings)
    row.p95 = nearest_rank(timings, 0.95)
    return row


def print_header(title: str) -> None:
    say(title)
    say(f"  {'query':27} {'caller':16} {'matches':>11} {'p50 ms':>9} {'p95 ms':>9}"
        f"  {'target':>11}")


def print_row(row: Row, limit_s: float, with_target: bool = True) -> None:
    verdict = ("met" if row.met else "MISSED") if with_target else ""
    target = f"p95 <= {TARGET_P95_MS:.0f} ms" if with_target else ""
    note = f"  ({row.note})" if row.note else ""
    if row.p95 is None and not row.cut:
        say(f"  {row.query:27} {row.caller:16} {row.matches:>11} {'-':>9} {'-':>9}{note}")
        return
    say(f"  {row.query:27} {row.caller:16} {row.matches:>11} {row.figure(row.p50, limit_s):>9} "
        f"{row.figure(row.p95, limit_s):>9}  {target:>11} {verdict}{note}")


def run_queries(gateway: str, all_callers: list[Caller], census: Census, samples: int,
                timeout_s: float, warm_up: bool, with_target: bool,
                after_cut: Callable[[], float] | None = None,
                budget_s: float | None = None) -> list[Row]:
    """Every query for every caller, in order; past `budget_s` (the waits after a cut-off
    included) the remaining rows are listed as not run, so a slow store cannot make the
    bench run for many minutes."""
    rows = []
    started = time.monotonic()
    for query in QUERIES:
        for caller in all_callers:
            if budget_s is not None and time.monotonic() - started > budget_s:
                row = Row(query[0], caller.label, matches="-",
                          note=f"not run: the {budget_s:.0f} s budget of these rows was spent")
                print_row(row, timeout_s, with_target)
                rows.append(row)
                continue
            row = measure(gateway, caller, query, census.ids.get(caller.label, []), samples,
                          timeout_s, warm_up)
            print_row(row, timeout_s, with_target)
            rows.append(row)
            if row.cut and after_cut is not None:
                waited = after_cut()
                say(f"    (the service finished the abandoned request {waited:.0f} s later: "
                    f"about {timeout_s + waited:.0f} s in all)")
    return rows


# --- the partition drop ------------------------------------------------------------------------


@dataclass
class Hammer:
    """One client per caller asking for first pages in a loop; each request's (start, end)
    kept per caller."""

    gateway: str
    callers: list[Caller]
    spans: dict[str, list[tuple[float, float]]] = field(default_factory=dict)
    errors: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    def _loop(self, caller: Caller) -> None:
        url = f"{self.gateway}/api/v1/logs?limit=20"
        spans = self.spans.setdefault(caller.label, [])
        while not self._stop.is_set():
            started = time.perf_counter()
            try:
                get(url, caller.token, 60)
            except Exception:  # counted; the loop goes on
                self.errors += 1
                continue
            spans.append((started, time.perf_counter()))

    def start(self) -> None:
        for caller in self.callers:
            thread = threading.Thread(target=self._loop, args=(caller,), daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(70)

    def within(self, label: str, start: float, end: float) -> list[float]:
        """ms of `label`'s requests that overlapped [start, end]."""
        return sorted((e - s) * 1000 for s, e in list(self.spans.get(label, []))
                      if s <= end and e >= start)

    def before(self, label: str, moment: float) -> list[float]:
        """ms of `label`'s requests that ended before `moment`."""
        return sorted((e - s) * 1000 for s, e in list(self.spans.get(label, [])) if e < moment)


@dataclass
class DropResult:
    day: date
    entries: int
    drop_ms: float
    ids_ms: float
    ids_deleted: int
    # per caller: (before, overlapping the DROP TABLE, during the id deletion), ms each
    latencies: dict[str, tuple[list[float], list[float], list[float]]]
    errors: int
    prepared: str


async def _drop_day(database_url: str, day: date, now: datetime
                    ) -> tuple[float, float, float, float, int]:
    """Retention of exactly `day` (all older days already gone): the store's own methods
    with the retention ending at the day after it. Returns the perf_counter moments around
    the DROP TABLE (partitions.drop_before) and around the deletion of its ids (upkeep: the
    partition is gone, its ids remain), and the ids deleted."""
    import asyncpg

    from logging_svc.pg_store import PostgresLogStore

    pool = await asyncpg.create_pool(database_url, min_size=2, max_size=2)
    try:
        store = PostgresLogStore(pool, retention_days=(now.date() - day).days - 1,
                                 ahead_days=7)
        await store.partitions.load()
        drop_start = time.perf_counter()
        dropped = await store.partitions.drop_before(day + timedelta(days=1))
        drop_end = time.perf_counter()
        if dropped != [day]:
            raise RuntimeError(f"partition drop: dropped {dropped}, meant {day}")
        deleted = await store.upkeep(now)
        return drop_start, drop_end, drop_end, time.perf_counter(), deleted
    finally:
        await pool.close()


async def _prepare_drop(database_url: str, now: datetime) -> tuple[date, int, str]:
    """Retention up to the oldest whole day: the partial oldest day goes first (not timed).
    Returns (that whole day, its entries, what was done first)."""
    import asyncpg

    from logging_svc.pg_store import PostgresLogStore

    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=2)
    try:
        store = PostgresLogStore(pool, retention_days=30, ahead_days=7)
        await store.partitions.load()
        oldest, whole = sorted(store.partitions.days)[:2]
        partial = await pool.fetchval(f"SELECT count(*) FROM log_entries_p{oldest:%Y%m%d}")
        store = PostgresLogStore(pool, retention_days=(now.date() - whole).days, ahead_days=7)
        started = time.perf_counter()
        expired = await store.upkeep(now)
        prepared = (f"before it, the partial oldest day {oldest:%m-%d} ({partial:,} entries, "
                    f"{expired:,} ids) went the same way in {time.perf_counter() - started:.1f} s")
        entries = await pool.fetchval(f"SELECT count(*) FROM log_entries_p{whole:%Y%m%d}")
        return whole, entries, prepared
    finally:
        await pool.close()


def partition_drop(gateway: str, database_url: str, clients: list[Caller],
                   baseline_s: float = 5.0) -> DropResult:
    now = datetime.now(UTC)
    day, entries, prepared = asyncio.run(_prepare_drop(database_url, now))
    hammer = Hammer(gateway, clients)
    hammer.start()
    time.sleep(baseline_s)
    baseline_end = time.perf_counter()
    drop_start, drop_end, ids_start, ids_end, deleted = asyncio.run(
        _drop_day(database_url, day, now))
    time.sleep(1.0)
    hammer.stop()
    latencies = {caller.label: (hammer.before(caller.label, baseline_end),
                                hammer.within(caller.label, drop_start, drop_end),
                                hammer.within(caller.label, ids_start, ids_end))
                 for caller in clients}
    return DropResult(day, entries, (drop_end - drop_start) * 1000,
                      (ids_end - ids_start) * 1000, deleted, latencies, hammer.errors,
                      prepared)


def print_drop(result: DropResult) -> None:
    def summary(timings: list[float]) -> str:
        if not timings:
            return f"{'no request':>32}"
        return (f"{len(timings):4} req p50 {statistics.median(timings):6.1f} p95 "
                f"{nearest_rank(timings, 0.95):6.1f} max {timings[-1]:6.1f}")

    say(f"  dropping day {result.day:%Y-%m-%d} ({result.entries:,} entries): DROP TABLE "
        f"{result.drop_ms:.0f} ms, then its {result.ids_deleted:,} ids deleted from log_ids in "
        f"{result.ids_ms / 1000:.1f} s ({result.prepared})")
    say(f"  first pages, one client per caller, ms:  {'before (5 s)':33} "
        f"{'overlapping the DROP TABLE':33} during the id deletion")
    for label, (before, drop, ids) in result.latencies.items():
        say(f"    {label:37} {summary(before)}  {summary(drop)}  {summary(ids)}")
    if result.errors:
        say(f"    {result.errors} requests failed")


# --- the MongoDB side --------------------------------------------------------------------------


def rpc_handled(metrics_url: str) -> int:
    """RPC operations the logging service finished (any outcome)."""
    text = urllib.request.urlopen(metrics_url, timeout=5).read().decode()
    return int(sum(float(value) for value in re.findall(
        r'^rpc_server_seconds_count\{[^}]*operation="log\.[^"]*"[^}]*\} ([0-9.e+]+)$', text,
        re.M)))


def wait_idle(metrics_url: str, handled: int, within_s: float = 300) -> float:
    """Until the logging service finished `handled` RPC operations in all (a request the
    client gave up on is still running there: the next row should not share the server with
    it); returns the seconds waited."""
    started = time.perf_counter()
    while time.perf_counter() - started < within_s and rpc_handled(metrics_url) < handled:
        time.sleep(0.5)
    return time.perf_counter() - started
