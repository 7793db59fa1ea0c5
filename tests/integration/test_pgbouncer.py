"""The services' databases behind PgBouncer in transaction pooling (the local one on :6432,
started by `make infra`): `DATABASE_POOL_MODE=transaction` keeps every query working and
migrations applied once, however many replicas start together."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from contracts.migrations import open_migrated_pool, read_migrations
from contracts.settings import Settings
from tests.support import drop_database, recreate_database

PROJECT_MIGRATIONS = read_migrations(Path(__file__).parents[2] / "project_svc" / "migrations")
PGBOUNCER_PORT = 6432


@pytest.fixture
async def through_pgbouncer(settings: Settings, unique: str) -> AsyncIterator[tuple[str, str]]:
    """A fresh database, as (direct URL, URL through PgBouncer)."""
    direct = f"{settings.project_database_url}_{unique}"
    await recreate_database(direct)
    host, _, rest = direct.rpartition(":")
    pooled = f"{host}:{PGBOUNCER_PORT}/{rest.split('/', 1)[1]}"
    yield direct, pooled
    await drop_database(direct)


async def _queries(pool: asyncpg.Pool, count: int) -> list[BaseException | None]:
    async def one(index: int) -> BaseException | None:
        try:
            # parameters make asyncpg prepare each statement (what a cache would keep)
            await pool.fetchval("SELECT count(*) FROM projects WHERE user_id = $1", f"u{index}")
            await pool.fetchrow("SELECT $1::int + $2::int AS sum", index, 1)
        except Exception as exc:
            return exc
        return None

    return await asyncio.gather(*(one(i) for i in range(count)))


async def test_transaction_mode_keeps_every_query_working(through_pgbouncer):
    _direct, pooled = through_pgbouncer
    pool = await open_migrated_pool(pooled, PROJECT_MIGRATIONS, pool_mode="transaction")
    try:
        failures = [f for f in await _queries(pool, 200) if f is not None]
    finally:
        await pool.close()
    assert failures == []


async def test_replicas_starting_together_apply_each_migration_once(through_pgbouncer):
    _direct, pooled = through_pgbouncer
    pools = await asyncio.gather(*(open_migrated_pool(
        pooled, PROJECT_MIGRATIONS, pool_mode="transaction") for _ in range(4)))
    try:
        applied = await pools[0].fetch(
            "SELECT version, count(*) AS times FROM schema_migrations GROUP BY version")
    finally:
        await asyncio.gather(*(pool.close() for pool in pools))
    assert sorted(row["version"] for row in applied) == [v for v, _ in PROJECT_MIGRATIONS]
    assert {row["times"] for row in applied} == {1}


async def test_migrations_may_go_over_a_direct_url(through_pgbouncer):
    direct, pooled = through_pgbouncer
    pool = await open_migrated_pool(pooled, PROJECT_MIGRATIONS, pool_mode="transaction",
                                    migration_url=direct)
    try:
        versions = await pool.fetch("SELECT version FROM schema_migrations ORDER BY version")
        assert [row["version"] for row in versions] == [v for v, _ in PROJECT_MIGRATIONS]
        assert [f for f in await _queries(pool, 50) if f is not None] == []
    finally:
        await pool.close()
