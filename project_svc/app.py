"""Wires the project service: PostgreSQL (migrated at start), config events, key usage."""

from __future__ import annotations

from pathlib import Path

import asyncpg

from contracts.messages import DomainEvent, WebhookDeliveryDue
from contracts.migrations import open_migrated_pool, read_migrations
from contracts.names import WEBHOOK_DELIVERIES, WEBHOOK_EVENTS, Service
from contracts.outbox import OUTBOX_MIGRATIONS, OutboxRelay
from contracts.service import Assembly, Consumer, ServiceDeclaration, closing, started
from contracts.settings import Settings
from contracts.upstream import OwnAddresses, UpstreamPolicy
from project_svc.handlers import KeyUsage, ProjectHandlers
from project_svc.store import ProjectStore
from project_svc.webhook_dispatch import WebhookDisabledNotice, WebhookDispatcher, WebhookIntake
from project_svc.webhook_handlers import WebhookHandlers
from project_svc.webhook_retries import RetrySchedule
from project_svc.webhook_sender import WebhookSender
from project_svc.webhook_signing import secret_box
from project_svc.webhook_store import WebhookStore

MIGRATIONS = read_migrations(Path(__file__).parent / "migrations") + OUTBOX_MIGRATIONS


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
    # the gateway's own addresses as the settings state them (it may run elsewhere)
    targets = UpstreamPolicy(settings.upstream_allow_private,
                             await OwnAddresses.of(settings.app_url, settings.gateway_port))
    relay = await service.open(started(OutboxRelay(pool, service.publish_confirmed)))
    service.serve(ProjectHandlers(
        store, service.publisher, usage, targets, relay,
        max_projects_per_user=settings.max_projects_per_user,
        max_keys_per_project=settings.max_keys_per_project))
    await assemble_webhooks(service, pool, store, relay, targets)


async def assemble_webhooks(service: Assembly, pool: asyncpg.Pool, projects: ProjectStore,
                            relay: OutboxRelay, targets: UpstreamPolicy) -> None:
    """Webhook CRUD, the intake of domain events and the dispatchers (webhook_dispatch)."""
    settings = service.settings
    webhooks = WebhookStore(pool)
    box = secret_box(settings)
    sender = await service.open(started(WebhookSender(targets,
                                                      timeout_s=settings.webhook_timeout_s)))
    intake = WebhookIntake(webhooks, relay)
    dispatcher = WebhookDispatcher(
        webhooks, sender, box, service.publish_confirmed,
        schedule=RetrySchedule(settings.webhook_retry_schedule),
        disable_after_s=settings.webhook_disable_after_s,
        on_disabled=WebhookDisabledNotice(service.publisher).tell)
    service.serve(WebhookHandlers(projects, webhooks, intake, box, targets,
                                  max_per_project=settings.max_webhooks_per_project))
    service.consume(Consumer(WEBHOOK_EVENTS, DomainEvent, intake.take))
    # attempts wait on endpoints (up to WEBHOOK_TIMEOUT_S each): many at once per replica
    service.consume(Consumer(WEBHOOK_DELIVERIES, WebhookDeliveryDue, dispatcher.handle,
                             prefetch=64))


PROJECT = ServiceDeclaration(Service.PROJECT, assemble)
