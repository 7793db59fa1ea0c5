"""Log entries in PostgreSQL (LOG_STORE=postgresql, the default): one table partitioned by
UTC day (migrations/001_log_entries.sql).

Guarantees:
- exactly once: an entry's id (logging_svc.entries) goes into `log_ids` (its primary key) in
  the same statement as the entry, `ON CONFLICT DO NOTHING`, so a redelivered event is
  recognised and stored nothing; rows are sorted by id, so racing batches lock in one order;
- a batch is one statement built from arrays (`unnest`): no temporary table and no session
  state, so it works behind a transaction-pooling PgBouncer too; an external batch is one
  transaction, all or nothing, and a duplicate request id refuses all of it;
- queries are index range scans newest first, (ts, id) descending: an admin's one scan, a
  developer's three disjoint branches (external entries, their requests, requests to their
  projects) merged; a deep page costs its depth (GET /logs caps it), a cursor costs page 1;
- retention drops whole day partitions (O(1), no dead rows to vacuum) and then deletes their
  ids in bounded chunks; partitions are created ahead (LOG_PARTITIONS_AHEAD_DAYS) and on
  demand for a day an entry needs (an external entry's own timestamp, entries copied from
  another store). No default partition: PostgreSQL 15 cannot split one.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import orjson

from contracts.identity import Caller
from contracts.logging import get_logger
from contracts.migrations import open_migrated_pool, read_migrations
from contracts.settings import PoolMode
from contracts.timeutil import to_iso
from logging_svc.entries import (
    EXTERNAL,
    GATEWAY,
    DuplicateRequestId,
    Found,
    LogFilter,
    LogRecord,
    Position,
    identity_digest,
)

log = get_logger(__name__)

MIGRATIONS = read_migrations(Path(__file__).parent / "migrations")
PARTITION_LOCK = 7_340_021  # serialises partition DDL across replicas
ID_DELETE_CHUNK = 5000
_PARTITION = re.compile(r"^log_entries_p(\d{8})$")
_COLUMNS = "ts, id, external, status_code, method, user_id, owner_id, project_id, rest, trace_id"

_STORE_NEW = f"""
WITH batch AS (
    SELECT * FROM unnest($1::timestamptz[], $2::uuid[], $3::boolean[], $4::smallint[],
                         $5::text[], $6::text[], $7::text[], $8::text[], $9::bytea[],
                         $10::text[])
        AS b({_COLUMNS})
), fresh AS (
    INSERT INTO log_ids (id, ts) SELECT id, ts FROM batch ON CONFLICT DO NOTHING RETURNING id
)
INSERT INTO log_entries ({_COLUMNS}) SELECT batch.* FROM batch JOIN fresh USING (id)
"""
_CLAIM_IDS = """
INSERT INTO log_ids (id, ts) SELECT * FROM unnest($1::uuid[], $2::timestamptz[])
ON CONFLICT DO NOTHING RETURNING id
"""
_INSERT = f"""
INSERT INTO log_entries ({_COLUMNS})
SELECT * FROM unnest($1::timestamptz[], $2::uuid[], $3::boolean[], $4::smallint[],
                     $5::text[], $6::text[], $7::text[], $8::text[], $9::bytea[], $10::text[])
"""


def entry_uuid(source: str, request_id: str) -> uuid.UUID:
    return uuid.UUID(bytes=identity_digest(source, request_id)[:16])


def _columns(records: list[LogRecord]) -> list[list[Any]]:
    """The records as the ten arrays of the insert statements, sorted by id."""
    rows = sorted(((record.timestamp, uuid.UUID(bytes=record.digest[:16]), record.external,
                    record.status_code, record.method, record.user_id, record.owner_id,
                    record.project_id, _rest_of(record), record.trace_id)
                   for record in records),
                  key=lambda row: row[1])
    return [list(column) for column in zip(*rows, strict=True)]


def _rest_of(record: LogRecord) -> bytes:
    return orjson.dumps({
        "requestId": record.request_id, "path": record.path, "route": record.route,
        "latency": record.latency, "ip": record.ip, "apiKeyId": record.api_key_id,
        "userAgent": record.user_agent, "contentLength": record.content_length,
        "error": record.error})


def _record(row: asyncpg.Record) -> LogRecord:
    rest = orjson.loads(row["rest"])
    return LogRecord(
        request_id=rest["requestId"], timestamp=row["ts"],
        source=EXTERNAL if row["external"] else GATEWAY, method=row["method"],
        path=rest["path"], route=rest["route"], status_code=row["status_code"],
        latency=rest["latency"], ip=rest["ip"], user_id=row["user_id"],
        api_key_id=rest["apiKeyId"], project_id=row["project_id"], owner_id=row["owner_id"],
        user_agent=rest["userAgent"], content_length=rest["contentLength"],
        error=rest["error"], trace_id=row["trace_id"])


def _found(row: asyncpg.Record) -> Found:
    rest = orjson.loads(row["rest"])
    entry_id: uuid.UUID = row["id"]
    return Found(Position(row["ts"], entry_id.bytes), {
        "_id": entry_id.bytes[:12].hex(), "requestId": rest["requestId"],
        "timestamp": to_iso(row["ts"]), "method": row["method"], "path": rest["path"],
        "route": rest["route"], "statusCode": row["status_code"], "latency": rest["latency"],
        "ip": rest["ip"], "userId": row["user_id"], "apiKeyId": rest["apiKeyId"],
        "projectId": row["project_id"], "ownerId": row["owner_id"],
        "userAgent": rest["userAgent"], "contentLength": rest["contentLength"],
        "error": rest["error"], "traceId": row["trace_id"],
        "source": EXTERNAL if row["external"] else GATEWAY})


class _Query:
    """SQL text with numbered arguments, collected as the text is written."""

    def __init__(self) -> None:
        self.args: list[Any] = []

    def arg(self, value: Any) -> str:
        self.args.append(value)
        return f"${len(self.args)}"


def _branches(query: _Query, caller: Caller, where: LogFilter,
              after: Position | None) -> list[str]:
    """The WHERE clauses whose union is what `caller` may see of `where`, disjoint, each
    matching one index's order."""
    common: list[str] = []
    for column, value in (("user_id", where.user_id), ("status_code", where.status_code),
                          ("project_id", where.project_id)):
        if value is not None:
            common.append(f"{column} = {query.arg(value)}")
    if where.method is not None:
        common.append(f"method = {query.arg(where.method.upper())}")
    if where.errors_only:
        common.append("status_code >= 400")
    if where.since is not None:
        common.append(f"ts >= {query.arg(where.since)}")
    if where.until is not None:
        common.append(f"ts <= {query.arg(where.until)}")
    if after is not None:
        moment = query.arg(after.timestamp)
        # `ts <=` as well: partition pruning does not look into the row comparison
        common.append(f"ts <= {moment} AND (ts, id) < ({moment}, "
                      f"{query.arg(uuid.UUID(bytes=after.key))})")
    sides: list[list[str]]
    if caller.is_admin:
        sides = [["external"]] if where.source == EXTERNAL else \
            [["NOT external"]] if where.source == GATEWAY else [[]]
    else:
        sides = []
        if where.source != GATEWAY and where.project_id is None:  # external: no project
            sides.append(["external"])
        if where.source != EXTERNAL:
            me = query.arg(caller.user_id)
            sides.append(["NOT external", f"user_id = {me}"])
            sides.append(["NOT external", f"owner_id = {me}", f"user_id IS DISTINCT FROM {me}"])
    return [" AND ".join([*side, *common]) or "TRUE" for side in sides]


class Partitions:
    """The day partitions of `log_entries`: which exist (remembered; loaded again when an
    insert finds one missing), creating and dropping them under one advisory lock."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool
        self.days: set[date] = set()

    async def load(self) -> None:
        rows = await self._pool.fetch(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = 'log_entries'::regclass")
        self.days = {datetime.strptime(m.group(1), "%Y%m%d").date()
                     for row in rows if (m := _PARTITION.match(row["relname"]))}

    async def ensure(self, days: Iterable[date]) -> None:
        missing = sorted(set(days) - self.days)
        if not missing:
            return
        async with self._pool.acquire() as connection, connection.transaction():
            await connection.execute("SELECT pg_advisory_xact_lock($1)", PARTITION_LOCK)
            for day in missing:
                start = datetime.combine(day, time(), UTC)
                await connection.execute(
                    f"CREATE TABLE IF NOT EXISTS log_entries_p{day:%Y%m%d} PARTITION OF "
                    f"log_entries FOR VALUES FROM ('{start.isoformat()}') "
                    f"TO ('{(start + timedelta(days=1)).isoformat()}')")
        self.days.update(missing)
        log.info("log partitions created", days=[str(day) for day in missing])

    async def drop_before(self, oldest_kept: date) -> list[date]:
        await self.load()
        doomed = sorted(day for day in self.days if day < oldest_kept)
        for day in doomed:
            async with self._pool.acquire() as connection, connection.transaction():
                await connection.execute("SELECT pg_advisory_xact_lock($1)", PARTITION_LOCK)
                await connection.execute(f"DROP TABLE IF EXISTS log_entries_p{day:%Y%m%d}")
            self.days.discard(day)
            log.info("log partition dropped", day=str(day))
        return doomed


class PostgresLogStore:
    def __init__(self, pool: asyncpg.Pool, *, retention_days: int, ahead_days: int) -> None:
        self._pool = pool
        self._retention = timedelta(days=retention_days)
        self._ahead_days = ahead_days
        self.partitions = Partitions(pool)

    @classmethod
    async def open(cls, url: str, *, retention_days: int, ahead_days: int,
                   pool_mode: PoolMode = "session", migration_url: str = ""
                   ) -> PostgresLogStore:
        pool = await open_migrated_pool(url, MIGRATIONS, pool_mode=pool_mode,
                                        migration_url=migration_url)
        store = cls(pool, retention_days=retention_days, ahead_days=ahead_days)
        await store.partitions.load()
        await store.upkeep(datetime.now(UTC))
        return store

    async def close(self) -> None:
        await self._pool.close()

    async def ping(self) -> None:
        await self._pool.fetchval("SELECT 1")

    # --- writes --------------------------------------------------------------------------

    async def store_once(self, records: list[LogRecord]) -> int:
        cutoff = self._oldest_kept(datetime.now(UTC))
        # already past the retention (a backlog replayed days later): dropped as expired
        kept = list({record.digest: record for record in records
                     if record.timestamp.date() >= cutoff}.values())
        if not kept:
            return 0
        await self.partitions.ensure(record.timestamp.date() for record in kept)
        try:
            status = await self._pool.execute(_STORE_NEW, *_columns(kept))
        except asyncpg.CheckViolationError:  # a partition another replica dropped or lacks
            await self.partitions.load()
            await self.partitions.ensure(record.timestamp.date() for record in kept)
            status = await self._pool.execute(_STORE_NEW, *_columns(kept))
        return int(status.rsplit(" ", 1)[1])

    async def store_external(self, records: list[LogRecord]) -> None:
        seen: set[bytes] = set()
        for record in records:  # refused before any write
            if record.digest in seen:
                raise DuplicateRequestId(record.request_id)
            seen.add(record.digest)
        await self.partitions.ensure(record.timestamp.date() for record in records)
        columns = _columns(records)
        async with self._pool.acquire() as connection, connection.transaction():
            claimed = {row["id"] for row in await connection.fetch(
                _CLAIM_IDS, columns[1], columns[0])}
            if len(claimed) < len(records):
                taken = next(r for r in records
                             if uuid.UUID(bytes=r.digest[:16]) not in claimed)
                raise DuplicateRequestId(taken.request_id)  # rolls the claims back
            await connection.execute(_INSERT, *columns)

    # --- reads ---------------------------------------------------------------------------

    async def newest(self, caller: Caller, where: LogFilter, *, after: Position | None,
                     skip: int, limit: int) -> list[Found]:
        query = _Query()
        branches = _branches(query, caller, where, after)
        order = "ORDER BY ts DESC, id DESC"
        if len(branches) == 1:
            sql = (f"SELECT {_COLUMNS} FROM log_entries WHERE {branches[0]} {order} "
                   f"LIMIT {query.arg(limit)} OFFSET {query.arg(skip)}")
        else:
            each = query.arg(skip + limit)
            union = " UNION ALL ".join(
                f"(SELECT {_COLUMNS} FROM log_entries WHERE {branch} {order} LIMIT {each})"
                for branch in branches)
            sql = (f"SELECT * FROM ({union}) AS visible {order} "
                   f"LIMIT {query.arg(limit)} OFFSET {query.arg(skip)}")
        return [_found(row) for row in await self._pool.fetch(sql, *query.args)]

    async def count(self, caller: Caller, where: LogFilter, *, up_to: int) -> int:
        query = _Query()
        branches = _branches(query, caller, where, None)
        union = " UNION ALL ".join(
            f"(SELECT 1 FROM log_entries WHERE {branch})" for branch in branches)
        # the cap on the union, not on each branch: the branches run in turn and the count
        # stops at `up_to` rows in all
        visible: int = await self._pool.fetchval(
            f"SELECT count(*) FROM (SELECT 1 FROM ({union}) AS visible "
            f"LIMIT {query.arg(up_to)}) AS capped", *query.args)
        return visible

    async def by_request_id(self, caller: Caller, request_id: str) -> dict[str, Any] | None:
        query = _Query()
        ids = query.arg([entry_uuid(GATEWAY, request_id), entry_uuid(EXTERNAL, request_id)])
        visible = "" if caller.is_admin else (
            f" AND (e.external OR e.user_id = {query.arg(caller.user_id)}"
            f" OR e.owner_id = {query.arg(caller.user_id)})")
        row = await self._pool.fetchrow(
            f"SELECT e.* FROM log_ids i JOIN log_entries e ON e.ts = i.ts AND e.id = i.id "
            f"WHERE i.id = ANY({ids}){visible} ORDER BY e.external LIMIT 1", *query.args)
        return None if row is None else _found(row).entry

    async def scan(self, resume: str | None, limit: int) -> tuple[list[LogRecord], str | None]:
        """Oldest first by (ts, id); the token is the last entry's `<µs since 1970>.<id>`."""
        if resume is None:
            rows = await self._pool.fetch(
                f"SELECT {_COLUMNS} FROM log_entries ORDER BY ts, id LIMIT $1", limit)
        else:
            micros, _, key = resume.partition(".")
            moment = datetime.fromtimestamp(0, UTC) + timedelta(microseconds=int(micros))
            rows = await self._pool.fetch(
                f"SELECT {_COLUMNS} FROM log_entries WHERE ts >= $1 AND (ts, id) > ($1, $2) "
                "ORDER BY ts, id LIMIT $3", moment, uuid.UUID(key), limit)
        if not rows:
            return [], None
        last = rows[-1]
        since_epoch = (last["ts"] - datetime.fromtimestamp(0, UTC)) // timedelta(microseconds=1)
        return [_record(row) for row in rows], f"{since_epoch}.{last['id']}"

    # --- retention -----------------------------------------------------------------------

    def _oldest_kept(self, now: datetime) -> date:
        return (now - self._retention).date()

    async def upkeep(self, now: datetime) -> int:
        """Partitions from today to LOG_PARTITIONS_AHEAD_DAYS ahead exist; days wholly past
        the retention are dropped, then their ids deleted in chunks. Returns the number of
        entries that expired (their ids)."""
        today = now.date()
        await self.partitions.ensure(today + timedelta(days=n)
                                     for n in range(self._ahead_days + 1))
        oldest_kept = self._oldest_kept(now)
        await self.partitions.drop_before(oldest_kept)
        boundary = datetime.combine(oldest_kept, time(), UTC)
        expired = 0
        while True:
            status = await self._pool.execute(
                "DELETE FROM log_ids WHERE id IN (SELECT id FROM log_ids WHERE ts < $1 "
                "LIMIT $2)", boundary, ID_DELETE_CHUNK)
            deleted = int(status.rsplit(" ", 1)[1])
            expired += deleted
            if deleted < ID_DELETE_CHUNK:
                return expired
