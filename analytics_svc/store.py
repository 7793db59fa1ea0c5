"""The rollup tables in PostgreSQL: folding a message's events in once, and the reads every
analytics answer is made of.

Exactly once per request id: one transaction per consumed message inserts the message's
request ids into `folded_requests` (ON CONFLICT DO NOTHING RETURNING) and folds only the ids
it got back. A redelivered message, or an event resent inside another message after a lost
publisher confirm, finds its ids there and adds nothing; a consumer killed after the commit
but before the ack leaves the same state. Two transactions touching the same rows lock them
in one order (ids sorted, tables in a fixed order, rows sorted), so they queue instead of
deadlocking; a deadlock or serialization failure is retried anyway.

Reads take a `Scope` (whose view, which project, which bucket pieces) and touch only rows
of those slices through their primary key: O(buckets in range), never raw entries.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg
import orjson

from analytics_svc.buckets import RESOLUTIONS, TRAFFIC_RESOLUTIONS, Resolution, TimeRange
from analytics_svc.rollup import CountCell, Rollup, Slice
from contracts.logging import get_logger
from contracts.messages import RequestCompleted
from contracts.postgres import Connection, returned

log = get_logger(__name__)

_RETRIED = (asyncpg.DeadlockDetectedError, asyncpg.SerializationError)
_ATTEMPTS = 5


@dataclass(frozen=True)
class Folded:
    new: int  # events folded now
    duplicates: int  # events whose request id was folded before (or twice in this message)


@dataclass(frozen=True)
class Scope:
    """Which rows a query reads: one view, one project key, the buckets of an aligned range
    (cut into the pieces of each table's own resolutions)."""

    viewer: str
    project: str
    span: TimeRange

    def arguments(self, resolutions: tuple[Resolution, ...] = RESOLUTIONS) -> tuple[Any, ...]:
        pieces = self.span.pieces(resolutions)
        return (self.viewer, self.project, [p.resolution for p in pieces],
                [p.start for p in pieces], [p.end for p in pieces])


@dataclass(frozen=True)
class Totals:
    requests: int
    by_class: tuple[int, int, int, int, int]  # 1xx..5xx
    latency_sum: float
    latency_min: float
    latency_max: float

    @property
    def client_errors(self) -> int:
        return self.by_class[3]

    @property
    def server_errors(self) -> int:
        return self.by_class[4]

    @property
    def errors(self) -> int:
        """Requests with status >= 400."""
        return self.by_class[3] + self.by_class[4]

    @property
    def average_latency(self) -> float:
        """ms, rounded to 2 decimals (docs/api.md section 8); 0 without requests."""
        return round(self.latency_sum / self.requests, 2) if self.requests else 0

    def percent(self, part: int) -> float:
        """`part` as a percentage of the requests, rounded to 2 decimals; 0 without any."""
        return round(100 * part / self.requests, 2) if self.requests else 0


@dataclass(frozen=True)
class Ranked:
    """One row of a top-N list: an endpoint (`name` = (method, route)), a user or a key."""

    name: tuple[str, ...]
    requests: int
    latency_sum: float
    last_seen: datetime | None


# $1 viewer, $2 project, $3..$5 the pieces. Each piece is one range scan of the primary key
# (viewer, project, resolution, bucket): the lateral subquery with OFFSET 0 keeps the planner
# from flattening it into one hash join over every row of the view.
def _in_scope(table: str) -> str:
    return (f"FROM unnest($3::int[], $4::timestamptz[], $5::timestamptz[])"
            f" AS p(resolution, start_at, end_at)"
            f" CROSS JOIN LATERAL (SELECT * FROM {table} r WHERE r.viewer = $1"
            f" AND r.project = $2 AND r.resolution = p.resolution AND r.bucket >= p.start_at"
            f" AND r.bucket < p.end_at OFFSET 0) t")


_UPSERT_TRAFFIC = """
INSERT INTO traffic AS t (viewer, project, resolution, bucket, requests, status_1xx,
    status_2xx, status_3xx, status_4xx, status_5xx, latency_sum, latency_min, latency_max,
    latency_bins)
SELECT * FROM unnest($1::text[], $2::text[], $3::int[], $4::timestamptz[], $5::bigint[],
    $6::bigint[], $7::bigint[], $8::bigint[], $9::bigint[], $10::bigint[],
    $11::float8[], $12::float8[], $13::float8[], $14::jsonb[])
ON CONFLICT (viewer, project, resolution, bucket) DO UPDATE SET
    requests = t.requests + excluded.requests,
    status_1xx = t.status_1xx + excluded.status_1xx,
    status_2xx = t.status_2xx + excluded.status_2xx,
    status_3xx = t.status_3xx + excluded.status_3xx,
    status_4xx = t.status_4xx + excluded.status_4xx,
    status_5xx = t.status_5xx + excluded.status_5xx,
    latency_sum = t.latency_sum + excluded.latency_sum,
    latency_min = least(t.latency_min, excluded.latency_min),
    latency_max = greatest(t.latency_max, excluded.latency_max),
    latency_bins = latency_bins_add(t.latency_bins, excluded.latency_bins)
"""

_UPSERT_ENDPOINTS = """
INSERT INTO endpoint_traffic AS t (viewer, project, resolution, bucket, method, route,
    requests, latency_sum)
SELECT * FROM unnest($1::text[], $2::text[], $3::int[], $4::timestamptz[], $5::text[],
    $6::text[], $7::bigint[], $8::float8[])
ON CONFLICT (viewer, project, resolution, bucket, method, route) DO UPDATE SET
    requests = t.requests + excluded.requests,
    latency_sum = t.latency_sum + excluded.latency_sum
"""


def _upsert_seen(table: str, column: str) -> str:
    return f"""
INSERT INTO {table} AS t (viewer, project, resolution, bucket, {column}, requests, last_seen)
SELECT * FROM unnest($1::text[], $2::text[], $3::int[], $4::timestamptz[], $5::text[],
    $6::bigint[], $7::timestamptz[])
ON CONFLICT (viewer, project, resolution, bucket, {column}) DO UPDATE SET
    requests = t.requests + excluded.requests,
    last_seen = greatest(t.last_seen, excluded.last_seen)
"""


_UPSERT_USERS = _upsert_seen("user_traffic", "user_id")
_UPSERT_KEYS = _upsert_seen("key_traffic", "api_key_id")

_CLAIM_IDS = """
INSERT INTO folded_requests (request_id) SELECT unnest($1::text[])
ON CONFLICT DO NOTHING RETURNING request_id
"""


class RollupStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    # --- writing ---------------------------------------------------------------------------

    async def fold(self, events: Sequence[RequestCompleted],
                   now: datetime | None = None) -> Folded:
        """Fold the events whose request id was never folded; one transaction."""
        ids = sorted({event.request_id for event in events})
        for attempt in range(1, _ATTEMPTS + 1):
            try:
                async with self._pool.acquire() as connection, connection.transaction():
                    claimed = {row[0] for row in await connection.fetch(_CLAIM_IDS, ids)}
                    fresh: dict[str, RequestCompleted] = {}
                    for event in events:
                        if event.request_id in claimed:
                            fresh.setdefault(event.request_id, event)
                    rollup = Rollup.of(fresh.values(), now or datetime.now(UTC))
                    if not rollup.empty:
                        await _write(connection, rollup)
                return Folded(len(fresh), len(events) - len(fresh))
            except _RETRIED as exc:
                if attempt == _ATTEMPTS:
                    raise
                log.warning("rollup transaction retried", error=repr(exc), attempt=attempt)
                await asyncio.sleep(0.05 * attempt)
        raise AssertionError("unreachable")

    # --- reading ---------------------------------------------------------------------------

    async def totals(self, scope: Scope) -> Totals:
        # an aggregate without GROUP BY: always one row
        row = returned(await self._pool.fetchrow(
            "SELECT coalesce(sum(requests), 0), coalesce(sum(status_1xx), 0),"
            " coalesce(sum(status_2xx), 0), coalesce(sum(status_3xx), 0),"
            " coalesce(sum(status_4xx), 0), coalesce(sum(status_5xx), 0),"
            " coalesce(sum(latency_sum), 0), coalesce(min(latency_min), 0),"
            " coalesce(max(latency_max), 0) " + _in_scope("traffic"),
            *scope.arguments(TRAFFIC_RESOLUTIONS)))
        return Totals(int(row[0]), (int(row[1]), int(row[2]), int(row[3]), int(row[4]),
                                    int(row[5])), row[6], row[7], row[8])

    async def latency_bins(self, scope: Scope) -> dict[int, int]:
        rows = await self._pool.fetch(
            "SELECT b.key::int, sum(b.value::bigint) " + _in_scope("traffic")
            + " CROSS JOIN LATERAL jsonb_each_text(t.latency_bins) AS b GROUP BY 1",
            *scope.arguments(TRAFFIC_RESOLUTIONS))
        return {row[0]: int(row[1]) for row in rows}

    async def over_time(self, scope: Scope, unit: str) -> list[tuple[datetime, int]]:
        """Requests per hour or day; day rows only serve whole days."""
        resolutions = TRAFFIC_RESOLUTIONS if unit == "day" else RESOLUTIONS
        rows = await self._pool.fetch(
            "SELECT date_trunc($6, t.bucket, 'UTC') AS start, sum(requests) "
            + _in_scope("traffic") + " GROUP BY start ORDER BY start",
            *scope.arguments(resolutions), unit)
        return [(row[0], int(row[1])) for row in rows]

    async def distinct_users(self, scope: Scope) -> int:
        count: int = await self._pool.fetchval(
            "SELECT count(DISTINCT user_id) " + _in_scope("user_traffic"), *scope.arguments())
        return count

    async def distinct_endpoints(self, scope: Scope) -> int:
        count: int = await self._pool.fetchval(
            "SELECT count(*) FROM (SELECT DISTINCT method, route " + _in_scope(
                "endpoint_traffic") + ") AS endpoints", *scope.arguments())
        return count

    async def top_endpoints(self, scope: Scope, limit: int) -> list[Ranked]:
        rows = await self._pool.fetch(
            "SELECT method, route, sum(requests) AS n, sum(latency_sum) "
            + _in_scope("endpoint_traffic")
            + " GROUP BY method, route ORDER BY n DESC, method, route LIMIT $6",
            *scope.arguments(), limit)
        return [Ranked((row[0], row[1]), int(row[2]), row[3], None) for row in rows]

    async def top_users(self, scope: Scope, limit: int) -> list[Ranked]:
        return await self._top_seen("user_traffic", "user_id", scope, limit)

    async def top_keys(self, scope: Scope, limit: int) -> list[Ranked]:
        return await self._top_seen("key_traffic", "api_key_id", scope, limit)

    async def _top_seen(self, table: str, column: str, scope: Scope,
                        limit: int) -> list[Ranked]:
        rows = await self._pool.fetch(
            f"SELECT {column}, sum(requests) AS n, max(last_seen) " + _in_scope(table)
            + f" GROUP BY {column} ORDER BY n DESC, {column} LIMIT $6",
            *scope.arguments(), limit)
        return [Ranked((row[0],), int(row[1]), 0.0, row[2]) for row in rows]


async def _write(connection: Connection, rollup: Rollup) -> None:
    traffic = sorted(rollup.traffic.items())
    slices = [where for where, _ in traffic]
    cells = [cell for _, cell in traffic]
    await connection.execute(
        _UPSERT_TRAFFIC, *_slice_columns(slices), [c.requests for c in cells],
        *([c.by_class[i] for c in cells] for i in range(5)),
        [c.latency_sum for c in cells], [c.latency_min for c in cells],
        [c.latency_max for c in cells],
        [orjson.dumps(c.bins, option=orjson.OPT_NON_STR_KEYS).decode() for c in cells])
    endpoints = sorted(rollup.endpoints.items())
    if endpoints:
        await connection.execute(
            _UPSERT_ENDPOINTS, *_slice_columns([key[0] for key, _ in endpoints]),
            [key[1] for key, _ in endpoints], [key[2] for key, _ in endpoints],
            [cell.requests for _, cell in endpoints],
            [cell.latency_sum for _, cell in endpoints])
    for statement, table in ((_UPSERT_USERS, rollup.users), (_UPSERT_KEYS, rollup.keys)):
        if table:
            await connection.execute(statement, *_seen_columns(sorted(table.items())))


def _slice_columns(slices: Sequence[Slice]
                   ) -> tuple[list[str], list[str], list[int], list[datetime]]:
    viewers, projects, resolutions, buckets = zip(*slices, strict=True)
    return (list(viewers), list(projects), list(resolutions),
            [datetime.fromtimestamp(bucket, UTC) for bucket in buckets])


def _seen_columns(rows: Sequence[tuple[tuple[Slice, str], CountCell]]) -> tuple[
        list[str], list[str], list[int], list[datetime], list[str], list[int], list[datetime]]:
    return (*_slice_columns([key[0] for key, _ in rows]), [key[1] for key, _ in rows],
            [cell.requests for _, cell in rows],
            [datetime.fromtimestamp(cell.last_seen, UTC) for _, cell in rows])
