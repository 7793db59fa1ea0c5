"""Wires the project service: PostgreSQL (migrated at start), config events, key usage."""

from __future__ import annotations

from pathlib import Path

import asyncpg

from contracts.migrations import open_migrated_pool, read_migrations
from contracts.names import Service
from contracts.service import Assembly, ServiceDeclaration, closing
from contracts.settings import Settings
from contracts.upstream import OwnAddresses, UpstreamPolicy
from project_svc.handlers import KeyUsage, ProjectHandlers
from project_svc.store import ProjectStore

MIGRATIONS = read_migrations(Path(__file__).parent / "migrations")


async def open_database(settings: Settings) -> asyncpg.Pool:
    return await open_migrated_pool(
        settings.project_database_url, MIGRATIONS, pool_mode=settings.database_pool_mode,
        migration_url=settings.project_migration_url)


async def assemble(service: Assembly) -> None:
    settings = service.settings
    pool = await service.open(closing(await open_database(settings), asyncpg.Pool.close))
    service.ready_when("postgresql", lambda: pool.fetchval("SELECT 1"))
    store = ProjectStore(pool)
    usage = KeyUsage(store)
    service.every(usage.periodic())
    service.serve(ProjectHandlers(
        store, service.publisher, usage,
        # the gateway's own addresses as the settings state them (it may run elsewhere)
        UpstreamPolicy(settings.upstream_allow_private,
                       await OwnAddresses.of(settings.app_url, settings.gateway_port)),
        max_projects_per_user=settings.max_projects_per_user,
        max_keys_per_project=settings.max_keys_per_project))


PROJECT = ServiceDeclaration(Service.PROJECT, assemble)
