"""Plain SQL migrations: `NNN_name.sql` files applied in order, once each, recorded in
`schema_migrations`. An advisory lock makes concurrent starts of one service wait for each
other instead of applying a file twice."""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncpg

from contracts.logging import get_logger
from contracts.postgres import Connection

log = get_logger(__name__)

_LOCK_KEY = 7_340_012  # any constant shared by every migrator of a database


def read_migrations(directory: Path) -> list[tuple[str, str]]:
    """(version, SQL) of every `*.sql` file, in order. Read once, at import or start-up."""
    return [(path.stem, path.read_text()) for path in sorted(directory.glob("*.sql"))]


async def migrate(connection: Connection, migrations: list[tuple[str, str]]) -> list[str]:
    """Apply the migrations not applied yet; return their versions."""
    applied_now: list[str] = []
    await connection.execute("SELECT pg_advisory_lock($1)", _LOCK_KEY)
    try:
        await connection.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        done = {row["version"] for row in await connection.fetch(
            "SELECT version FROM schema_migrations")}
        for version, sql in migrations:
            if version in done:
                continue
            async with connection.transaction():
                await connection.execute(sql)
                await connection.execute(
                    "INSERT INTO schema_migrations (version) VALUES ($1)", version)
            applied_now.append(version)
            log.info("migration applied", version=version)
    finally:
        await connection.execute("SELECT pg_advisory_unlock($1)", _LOCK_KEY)
    return applied_now


async def open_migrated_pool(url: str, migrations: list[tuple[str, str]]) -> asyncpg.Pool:
    """A connection pool on `url` after applying `migrations`, retrying until PostgreSQL
    answers (a service may start before its database)."""
    delay = 0.2
    while True:
        try:
            pool = await asyncpg.create_pool(url, min_size=1, max_size=10)
            break
        except (OSError, asyncpg.CannotConnectNowError) as exc:
            log.warning("database not reachable yet, retrying", error=repr(exc))
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)
    async with pool.acquire() as connection:
        await migrate(connection, migrations)
    return pool
