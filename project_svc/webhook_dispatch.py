"""Webhook deliveries through the broker: domain events become deliveries (the intake), and
deliveries are attempted by competing dispatchers (any number of project_svc replicas).

Intake (`webhook.events`, bound to every domain event): for each event, one delivery per
active webhook subscribed to it, recorded in one transaction with the jobs that will attempt
them (`webhook.delivery.due` rows in the outbox, contracts/outbox.py); the event's message is
acked only after that commit. Idempotent by (webhook, event id), so an event delivered twice
by the broker or published twice by an outbox relay makes one delivery.

Which webhooks an event reaches: those of its project; for an alert of a rule without a
project, those of every project of the rule's owner; for `user.registered` (no project),
every webhook subscribed to it (only admins may subscribe to it).

Dispatch (`webhook.deliveries`): a job names a delivery and the attempt it is for. An attempt
signs the stored body (Standard Webhooks, with the previous secret too during a rotation's
overlap), POSTs it (project_svc/webhook_sender.py), records the attempt and the delivery's new
state, and, if it failed and attempts remain, publishes the next job to its delay queue
(project_svc/webhook_retries.py) before the current job is acked. A job whose attempt was
already recorded (a crash after recording, before acking) only republishes the next job; a
job for a delivery no longer pending (delivered, failed, deleted) is dropped. Duplicates are
possible (at least once) and carry the same `webhook-id`; ordering is not promised.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Protocol

import asyncpg
import orjson

from contracts.broker import Publisher
from contracts.logging import get_logger
from contracts.messages import DomainEvent, WebhookDeliveryDue, WebhookDisabled, encode_events
from contracts.names import RoutingKey
from contracts.outbox import OutboxRelay, add_to_outbox
from contracts.schemas.webhooks import TEST_EVENT
from contracts.timeutil import iso_now
from project_svc.webhook_retries import RetrySchedule
from project_svc.webhook_sender import WebhookSender
from project_svc.webhook_signing import SecretBox, SecretUnreadable, signed_headers
from project_svc.webhook_store import AttemptRecord, NewDelivery, WebhookStore, new_delivery_id

log = get_logger(__name__)

# told when an attempt disabled a webhook: (webhook row, owner id)
Disabled = Callable[[asyncpg.Record, str], Awaitable[None]]


class Publish(Protocol):
    """`Broker.publish_confirmed`."""

    async def __call__(self, routing_key: str, body: bytes, *, delay_s: float | None = None,
                       wait_s: float | None = None) -> None: ...


def body_of(event_type: str, timestamp: str, data: object) -> bytes:
    """What is signed and sent: `{"type", "timestamp", "data"}`."""
    return orjson.dumps({"type": event_type, "timestamp": timestamp, "data": data})


class WebhookIntake:
    """Domain events -> deliveries and their first jobs (see the module docstring)."""

    def __init__(self, store: WebhookStore, relay: OutboxRelay) -> None:
        self._store = store
        self._relay = relay

    async def take(self, events: list[DomainEvent]) -> None:
        recorded = 0
        async with self._store.pool.acquire() as connection, connection.transaction():
            for event in events:
                if event.project_id is not None:
                    projects: list[uuid.UUID] | None = [uuid.UUID(event.project_id)]
                elif event.type.startswith("alert.") and event.owner_id is not None:
                    projects = await self._store.projects_of(connection, event.owner_id)
                elif event.type == "user.registered":
                    projects = None
                else:
                    continue
                hooks = await self._store.subscribers(connection, event.type, projects)
                body = body_of(event.type, event.timestamp, event.data)
                ids = await self._store.add_deliveries(connection, [
                    NewDelivery(new_delivery_id(), hook["id"], event.event_id, event.type, body)
                    for hook in hooks])
                await add_to_outbox(connection, *(WebhookDeliveryDue(delivery_id, 1)
                                                  for delivery_id in ids))
                recorded += len(ids)
        if recorded:
            self._relay.nudge()

    async def test_delivery(self, webhook_id: uuid.UUID, now_iso: str, data: object) -> str:
        """A `webhook.test` delivery and its job, now; its id."""
        delivery_id = new_delivery_id()
        async with self._store.pool.acquire() as connection, connection.transaction():
            await self._store.add_deliveries(connection, [NewDelivery(
                delivery_id, webhook_id, f"test-{uuid.uuid4()}", TEST_EVENT,
                body_of(TEST_EVENT, now_iso, data))])
            await add_to_outbox(connection, WebhookDeliveryDue(delivery_id, 1))
        self._relay.nudge()
        return delivery_id

    async def redeliver(self, webhook_id: uuid.UUID, delivery_id: str) -> bool:
        """The delivery pending again with a job for its next attempt; False if not found."""
        async with self._store.pool.acquire() as connection, connection.transaction():
            attempts = await self._store.pending_again(connection, webhook_id, delivery_id)
            if attempts is None:
                return False
            await add_to_outbox(connection, WebhookDeliveryDue(delivery_id, attempts + 1))
        self._relay.nudge()
        return True


class WebhookDisabledNotice:
    """Tells a disabled webhook's owner on the monitor (`alert:new`, type webhook.disabled)."""

    def __init__(self, publisher: Publisher) -> None:
        self._publisher = publisher

    async def tell(self, webhook: asyncpg.Record, owner_id: str) -> None:
        self._publisher.publish(WebhookDisabled(
            webhook_id=str(webhook["id"]), project_id=str(webhook["project_id"]),
            user_id=owner_id, message=f"Webhook {webhook['name']!r} was disabled: "
            f"{webhook['disabled_reason']}", timestamp=iso_now()))


class WebhookDispatcher:
    """Attempts deliveries (see the module docstring); `handle` is the queue's consumer."""

    def __init__(self, store: WebhookStore, sender: WebhookSender, box: SecretBox,
                 publish: Publish, *, schedule: RetrySchedule, disable_after_s: float,
                 on_disabled: Disabled) -> None:
        self._store = store
        self._sender = sender
        self._box = box
        self._publish = publish
        self._schedule = schedule
        self._disable_after_s = disable_after_s
        self._on_disabled = on_disabled

    async def handle(self, jobs: list[WebhookDeliveryDue]) -> None:
        for job in jobs:
            await self._attempt(job)

    async def _attempt(self, job: WebhookDeliveryDue) -> None:
        row = await self._store.delivery_for_attempt(job.delivery_id)
        if row is None or row["status"] != "pending":
            return  # deleted with its webhook, or finished: a duplicate or stale job
        if job.attempt <= row["attempts"]:  # recorded, but the next job may not be out
            if row["next_attempt_at"] is not None:
                wait = (row["next_attempt_at"] - datetime.now(UTC)).total_seconds()
                await self._schedule_next(job.delivery_id, row["attempts"] + 1,
                                          self._schedule.delay_after(row["attempts"]), wait)
            return
        now = datetime.now(UTC)
        if not row["active"]:
            await self._record(row, job, AttemptRecord(
                job.attempt, now, None, "Webhook is disabled", 0.0, ""), delivered=False,
                final=True)
            return
        webhook_id = str(row["webhook_id"])
        try:
            secrets = [self._box.open(row["secret_sealed"], webhook_id)]
            if row["previous_secret_sealed"] and row["previous_secret_valid"]:
                secrets.append(self._box.open(row["previous_secret_sealed"], webhook_id))
        except SecretUnreadable as exc:
            log.error("webhook secret unreadable", webhook_id=webhook_id, error=str(exc))
            raise  # retried, then dead-lettered: an operator must restore the key
        body = bytes(row["payload"])
        result = await self._sender.send(
            row["url"], body, signed_headers(row["id"], int(time.time()), body, secrets))
        await self._record(row, job, AttemptRecord(
            job.attempt, now, result.status_code, result.error, result.duration_ms,
            result.answer), delivered=result.delivered, final=False)

    async def _record(self, row: asyncpg.Record, job: WebhookDeliveryDue,
                      attempt: AttemptRecord, *, delivered: bool, final: bool) -> None:
        nominal = None if delivered or final else self._schedule.delay_after(job.attempt)
        wait = RetrySchedule.jittered(nominal) if nominal is not None else None
        next_at = attempt.at + timedelta(seconds=wait) if wait is not None else None
        disabled = await self._store.record_attempt(
            row["id"], attempt, delivered=delivered, next_attempt_at=next_at,
            disable_after_s=self._disable_after_s)
        if wait is not None:
            await self._schedule_next(row["id"], job.attempt + 1, nominal, wait)
        if disabled is not None:
            log.warning("webhook disabled: every attempt failed", webhook_id=str(disabled["id"]))
            await self._on_disabled(disabled, row["owner_id"])

    async def _schedule_next(self, delivery_id: str, attempt: int, nominal: float | None,
                             wait_s: float) -> None:
        """The job for `attempt` into the delay queue of its nominal delay, going on after
        `wait_s` (confirmed before the current job is acked)."""
        if nominal is None:
            return
        await self._publish(RoutingKey.WEBHOOK_DELIVERY_DUE,
                            encode_events([WebhookDeliveryDue(delivery_id, attempt)]),
                            delay_s=nominal, wait_s=max(wait_s, 0.0))
