"""Wires the auth service: PostgreSQL (migrated at start), Redis for the login throttle,
argon2 in worker threads, SMTP mail in the background."""

from __future__ import annotations

from pathlib import Path

import asyncpg
from redis.asyncio import Redis

from auth_svc.handlers import AuthHandlers
from auth_svc.mail import Mailer
from auth_svc.passwords import Passwords
from auth_svc.store import AuthStore
from auth_svc.throttle import LoginThrottle
from contracts.logging import get_logger
from contracts.migrations import open_migrated_pool, read_migrations
from contracts.rpc import operations_of
from contracts.service import ServiceProcess
from contracts.settings import Settings

log = get_logger(__name__)

MIGRATIONS = read_migrations(Path(__file__).parent / "migrations")


async def open_database(settings: Settings) -> asyncpg.Pool:
    return await open_migrated_pool(settings.auth_database_url, MIGRATIONS)


class AuthComponent:
    """Owns the service's resources; its operations exist from the start, its resources from
    `start()` on (the RPC server starts consuming only after every start hook ran)."""

    def __init__(self) -> None:
        self._handlers: AuthHandlers | None = None
        self._pool: asyncpg.Pool | None = None
        self._redis: Redis | None = None
        self._mailer: Mailer | None = None

    async def start(self, process: ServiceProcess) -> None:
        settings = process.settings
        self._pool = await open_database(settings)
        self._redis = Redis.from_url(settings.redis_url, socket_connect_timeout=1,
                                     socket_timeout=1)
        passwords = Passwords(settings.argon2_time_cost, settings.argon2_memory_kib,
                              settings.argon2_parallelism)
        await passwords.start()
        self._mailer = Mailer(settings.smtp_url, settings.mail_from)
        await self._mailer.start()
        throttle = LoginThrottle(
            self._redis, max_per_account=settings.login_max_failures_per_account,
            max_per_ip=settings.login_max_failures_per_ip,
            window_s=settings.login_failure_window_s)
        self._handlers = AuthHandlers(settings, AuthStore(self._pool), passwords, throttle,
                                      self._mailer)
        process.add_handlers(operations_of(self._handlers))
        if not self._mailer.configured:
            log.info("no SMTP_URL: mail is not sent")

    async def stop(self, process: ServiceProcess) -> None:
        grace = process.settings.shutdown_grace_s
        if self._handlers is not None:
            await self._handlers.drain(grace)
        if self._mailer is not None:
            await self._mailer.close(grace)
        if self._redis is not None:
            await self._redis.aclose()
        if self._pool is not None:
            await self._pool.close()


def configure(process: ServiceProcess) -> None:
    component = AuthComponent()
    process.on_start(component.start)
    process.on_stop(component.stop)
