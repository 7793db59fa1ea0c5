"""Plain SQL migrations: `NNN_name.sql` files applied in order, once each, recorded in
`schema_migrations`. An advisory lock makes concurrent starts of one service wait for each
other instead of applying a file twice."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import asyncpg

from contracts.logging import get_logger
from contracts.postgres import Connection
from contracts.settings import PoolMode

log = get_logger(__name__)

_LOCK_KEY = 7_340_012  # any constant shared by every migrator of a database


def read_migrations(directory: Path) -> list[tuple[str, str]]:
    """(version, SQL) of every `*.sql` file, in order. Read once, at import or start-up."""
    return [(path.stem, path.read_text()) for path in sorted(directory.glob("*.sql"))]


async def migrate(connection: Connection, migrations: list[tuple[str, str]], *,
                  pool_mode: PoolMode = "session") -> list[str]:
    """Apply the migrations not applied yet; return their versions.

    Session mode holds a session advisory lock and applies each file in a transaction of its
    own. Transaction mode (behind PgBouncer's transaction pooling, where a session lock could
    be taken on one server connection and released on another) applies them all in one
    transaction under a transaction-scoped lock, released at its commit or rollback."""
    if pool_mode == "transaction":
        async with connection.transaction():
            await connection.execute("SELECT pg_advisory_xact_lock($1)", _LOCK_KEY)
            return await _apply(connection, migrations, each_in_transaction=False)
    await connection.execute("SELECT pg_advisory_lock($1)", _LOCK_KEY)
    try:
        return await _apply(connection, migrations, each_in_transaction=True)
    finally:
        await connection.execute("SELECT pg_advisory_unlock($1)", _LOCK_KEY)


async def _apply(connection: Connection, migrations: list[tuple[str, str]], *,
                 each_in_transaction: bool) -> list[str]:
    applied_now: list[str] = []
    await connection.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations ("
        " version text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
    )
    done = {row["version"] for row in await connection.fetch(
        "SELECT version FROM schema_migrations")}
    for version, sql in migrations:
        if version in done:
            continue
        async with (connection.transaction() if each_in_transaction
                    else contextlib.nullcontext()):
            await connection.execute(sql)
            await connection.execute(
                "INSERT INTO schema_migrations (version) VALUES ($1)", version)
        applied_now.append(version)
        log.info("migration applied", version=version)
    return applied_now


async def create_pool(url: str, *, pool_mode: PoolMode = "session", min_size: int = 1,
                      max_size: int = 10) -> asyncpg.Pool:
    """A pool on `url`, retrying until PostgreSQL answers (a service may start before its
    database). Transaction mode turns asyncpg's prepared statement cache off: behind
    PgBouncer's transaction pooling a statement prepared on one server connection is unknown
    on the next."""
    delay = 0.2
    cache = 0 if pool_mode == "transaction" else 100
    while True:
        try:
            return await asyncpg.create_pool(url, min_size=min_size, max_size=max_size,
                                             statement_cache_size=cache)
        except (OSError, asyncpg.CannotConnectNowError) as exc:
            log.warning("database not reachable yet, retrying", error=repr(exc))
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)


async def open_migrated_pool(url: str, migrations: list[tuple[str, str]], *,
                             pool_mode: PoolMode = "session",
                             migration_url: str = "") -> asyncpg.Pool:
    """A connection pool on `url` after applying `migrations`: over `migration_url` when
    given (a direct connection, not through a pooler: session mode there), else over the
    pool in `pool_mode`."""
    if migration_url:
        direct = await create_pool(migration_url, min_size=1, max_size=1)
        try:
            async with direct.acquire() as connection:
                await migrate(connection, migrations)
        finally:
            await direct.close()
    pool = await create_pool(url, pool_mode=pool_mode)
    if not migration_url:
        async with pool.acquire() as connection:
            await migrate(connection, migrations, pool_mode=pool_mode)
    return pool
