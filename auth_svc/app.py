"""Wires the auth service: PostgreSQL (migrated at start), Redis for the login throttle,
argon2 in worker threads, SMTP mail in the background; sign-in with the providers of
OAUTH_PROVIDERS (pending sign-ins in Redis, the providers over HTTP)."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import asyncpg

from auth_svc.github import GitHubProvider
from auth_svc.handlers import AuthHandlers
from auth_svc.mail import Mailer
from auth_svc.oauth_handlers import OAuthHandlers
from auth_svc.oauth_providers import SignInProvider
from auth_svc.oauth_state import SignInStates
from auth_svc.oidc import OidcProvider
from auth_svc.passwords import Passwords
from auth_svc.sessions import Sessions, registration_announcer
from auth_svc.store import AuthStore
from auth_svc.throttle import LoginThrottle
from contracts.logging import get_logger
from contracts.migrations import open_migrated_pool, read_migrations
from contracts.names import Service
from contracts.oauth_settings import OAuthProviderSettings
from contracts.outbox import OUTBOX_MIGRATIONS, OutboxRelay
from contracts.redis_clients import RedisClient, client_for
from contracts.service import Assembly, ServiceDeclaration, closing, started
from contracts.settings import Settings

log = get_logger(__name__)

MIGRATIONS = read_migrations(Path(__file__).parent / "migrations") + OUTBOX_MIGRATIONS


async def open_database(settings: Settings) -> asyncpg.Pool:
    return await open_migrated_pool(
        settings.auth_database_url, MIGRATIONS, pool_mode=settings.database_pool_mode,
        migration_url=settings.auth_migration_url)


async def assemble(service: Assembly) -> None:
    settings = service.settings
    grace = settings.shutdown_grace_s
    pool = await service.open(closing(await open_database(settings), asyncpg.Pool.close))
    service.ready_when("postgresql", lambda: pool.fetchval("SELECT 1"))
    redis = await service.open(closing(
        client_for(settings, "state", socket_connect_timeout=1, socket_timeout=1),
        lambda client: client.aclose()))
    passwords = await service.open(closing(
        Passwords(settings.argon2_time_cost, settings.argon2_memory_kib,
                  settings.argon2_parallelism, settings.password_hash_threads),
        lambda opened: opened.close()))
    await passwords.start()
    mailer = Mailer(settings.smtp_url, settings.mail_from)
    await mailer.start()
    await service.open(closing(mailer, lambda opened: opened.close(grace)))
    if not mailer.configured:
        log.info("no SMTP_URL: mail is not sent")
    throttle = LoginThrottle(
        redis, max_per_account=settings.login_max_failures_per_account,
        max_per_ip=settings.login_max_failures_per_ip,
        window_s=settings.login_failure_window_s)
    # mail lookups started after a reply finish before the mailer closes
    # user.registered leaves through the outbox (contracts/outbox.py)
    relay = await service.open(started(OutboxRelay(pool, service.publish_confirmed)))
    store = AuthStore(pool)
    handlers = await service.open(closing(
        AuthHandlers(settings, store, passwords, throttle, mailer, relay),
        lambda opened: opened.drain(grace)))
    service.serve(handlers)
    await assemble_oauth(service, redis, store, relay)


async def assemble_oauth(service: Assembly, redis: RedisClient, store: AuthStore,
                         relay: OutboxRelay) -> None:
    """Sign-in with the providers of OAUTH_PROVIDERS (none: the list is empty)."""
    settings = service.settings
    http = await service.open(closing(aiohttp.ClientSession(), aiohttp.ClientSession.close))
    service.serve(OAuthHandlers(
        {provider.name: provider_of(provider, http) for provider in settings.oauth_providers},
        SignInStates(redis), store, Sessions(settings.access_token_secret, store),
        app_url=settings.app_url, success_url=settings.oauth_success_url,
        announce_registration=registration_announcer(relay)))


def provider_of(settings: OAuthProviderSettings, http: aiohttp.ClientSession
                ) -> SignInProvider:
    if settings.kind == "github":
        return GitHubProvider(settings, http)
    return OidcProvider(settings, http)


AUTH = ServiceDeclaration(Service.AUTH, assemble)
