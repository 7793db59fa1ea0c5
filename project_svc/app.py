"""Wires the project service: PostgreSQL (migrated at start), config events, key usage."""

from __future__ import annotations

from pathlib import Path

import asyncpg

from contracts.migrations import open_migrated_pool, read_migrations
from contracts.rpc import operations_of
from contracts.service import ServiceProcess
from contracts.settings import Settings
from contracts.upstream import OwnAddresses, UpstreamPolicy
from project_svc.handlers import KeyUsage, ProjectHandlers
from project_svc.store import ProjectStore

MIGRATIONS = read_migrations(Path(__file__).parent / "migrations")


async def open_database(settings: Settings) -> asyncpg.Pool:
    return await open_migrated_pool(settings.project_database_url, MIGRATIONS)


class ProjectComponent:
    def __init__(self) -> None:
        self._handlers: ProjectHandlers | None = None
        self._pool: asyncpg.Pool | None = None
        self._usage: KeyUsage | None = None

    async def start(self, process: ServiceProcess) -> None:
        assert process.publisher is not None
        self._pool = await open_database(process.settings)
        store = ProjectStore(self._pool)
        self._usage = KeyUsage(store)
        await self._usage.start()
        settings = process.settings
        self._handlers = ProjectHandlers(
            store, process.publisher, self._usage,
            # the gateway's own addresses as the settings state them (it may run elsewhere)
            UpstreamPolicy(settings.upstream_allow_private,
                           await OwnAddresses.of(settings.app_url, settings.gateway_port)),
            max_projects_per_user=settings.max_projects_per_user,
            max_keys_per_project=settings.max_keys_per_project)
        process.add_handlers(operations_of(self._handlers))

    async def stop(self, _process: ServiceProcess) -> None:
        if self._usage is not None:
            await self._usage.close()
        if self._pool is not None:
            await self._pool.close()


def configure(process: ServiceProcess) -> None:
    component = ProjectComponent()
    process.on_start(component.start)
    process.on_stop(component.stop)
