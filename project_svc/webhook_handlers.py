"""The webhook operations (docs/api.md, webhooks): each a method bound to its declaration in
`contracts.operations`. Tenancy is the project's: owner and admins; another tenant's ids are
404 (the store finds only what the caller may see); viewers are refused writes by the
gateway's role gate before a call gets here.
"""

from __future__ import annotations

import math
import uuid

import asyncpg
import orjson

from contracts import operations as op
from contracts.errors import Conflict, NotFound, ValidationError
from contracts.identity import Caller
from contracts.operations import Call
from contracts.rpc import handles
from contracts.schemas.common import IdParams, ProjectIdParams
from contracts.schemas.webhooks import (
    ADMIN_ONLY_EVENTS,
    Delivery,
    DeliveryAccepted,
    DeliveryAttempt,
    DeliveryDetail,
    DeliveryListQuery,
    DeliveryPage,
    DeliveryParams,
    Webhook,
    WebhookBody,
    WebhookListQuery,
    WebhookPage,
    WebhookPatch,
    WebhookWithSecret,
)
from contracts.timeutil import iso_now
from contracts.upstream import TargetRefused, UpstreamPolicy
from contracts.validation import or_none
from project_svc.store import LimitReached, ProjectStore
from project_svc.webhook_dispatch import WebhookIntake
from project_svc.webhook_signing import SecretBox, new_secret
from project_svc.webhook_store import WebhookStore

ROTATION_OVERLAP_S = 24 * 3600


class WebhookHandlers:
    def __init__(self, projects: ProjectStore, store: WebhookStore, intake: WebhookIntake,
                 box: SecretBox, targets: UpstreamPolicy, *, max_per_project: int) -> None:
        self._projects = projects
        self._store = store
        self._intake = intake
        self._box = box
        self._targets = targets
        self._max = max_per_project

    @handles(op.WEBHOOK_CREATE)
    async def create(self, call: Call[WebhookBody, None, ProjectIdParams]
                     ) -> WebhookWithSecret:
        project = await self._project(call.authenticated, call.params.project_id)
        body = call.body
        _check_events(call.authenticated, body.events)
        await self._check_url(body.url)
        webhook_id, secret = uuid.uuid4(), new_secret()
        try:
            row = await self._store.create(
                project["id"], webhook_id, name=body.name, url=body.url, events=body.events,
                active=body.active if body.given(body.active) else True,
                secret_sealed=self._box.seal(secret, str(webhook_id)), limit=self._max)
        except LimitReached as exc:
            raise Conflict(f"Webhook limit reached ({exc.limit})") from None
        return WebhookWithSecret.view(row, secret=secret)

    @handles(op.WEBHOOK_LIST)
    async def list(self, call: Call[None, WebhookListQuery, ProjectIdParams]) -> WebhookPage:
        project = await self._project(call.authenticated, call.params.project_id)
        query = call.query
        rows, total = await self._store.of_project(project["id"], page=query.page,
                                                   limit=query.limit)
        return WebhookPage(webhooks=[Webhook.view(r) for r in rows], total=total,
                           page=query.page, limit=query.limit,
                           total_pages=math.ceil(total / query.limit))

    @handles(op.WEBHOOK_GET)
    async def get(self, call: Call[None, None, IdParams]) -> Webhook:
        return Webhook.view(await self._webhook(call.authenticated, call.params.id))

    @handles(op.WEBHOOK_UPDATE)
    async def update(self, call: Call[WebhookPatch, None, IdParams]) -> Webhook:
        webhook = await self._webhook(call.authenticated, call.params.id)
        body = call.body
        if body.given(body.events):
            _check_events(call.authenticated, body.events)
        if body.given(body.url):
            await self._check_url(body.url)
        return Webhook.view(await self._store.update(webhook["id"], body))

    @handles(op.WEBHOOK_DELETE)
    async def delete(self, call: Call[None, None, IdParams]) -> None:
        webhook = await self._webhook(call.authenticated, call.params.id)
        await self._store.delete(webhook["id"])

    @handles(op.WEBHOOK_ROTATE_SECRET)
    async def rotate_secret(self, call: Call[None, None, IdParams]) -> WebhookWithSecret:
        """A new secret; the current one keeps signing beside it for ROTATION_OVERLAP_S."""
        webhook = await self._webhook(call.authenticated, call.params.id)
        webhook_id = str(webhook["id"])
        current = self._box.open(webhook["secret_sealed"], webhook_id)
        secret = new_secret()
        row = await self._store.rotate(webhook["id"], self._box.seal(secret, webhook_id),
                                       self._box.seal(current, webhook_id), ROTATION_OVERLAP_S)
        return WebhookWithSecret.view(row, secret=secret)

    @handles(op.WEBHOOK_TEST)
    async def test(self, call: Call[None, None, IdParams]) -> DeliveryAccepted:
        webhook = await self._webhook(call.authenticated, call.params.id)
        delivery_id = await self._intake.test_delivery(webhook["id"], iso_now(), {
            "webhookId": str(webhook["id"]), "projectId": str(webhook["project_id"]),
            "message": "A test event sent from the API"})
        return DeliveryAccepted(delivery_id=delivery_id)

    @handles(op.WEBHOOK_DELIVERIES)
    async def deliveries(self, call: Call[None, DeliveryListQuery, IdParams]) -> DeliveryPage:
        webhook = await self._webhook(call.authenticated, call.params.id)
        query = call.query
        rows, total = await self._store.deliveries(
            webhook["id"], status=or_none(query.status) if query.given(query.status) else None,
            page=query.page, limit=query.limit)
        return DeliveryPage(deliveries=[Delivery.view(r) for r in rows], total=total,
                            page=query.page, limit=query.limit,
                            total_pages=math.ceil(total / query.limit))

    @handles(op.WEBHOOK_DELIVERY_GET)
    async def delivery(self, call: Call[None, None, DeliveryParams]) -> DeliveryDetail:
        webhook = await self._webhook(call.authenticated, call.params.id)
        row = await self._store.delivery(webhook["id"], call.params.delivery_id)
        if row is None:
            raise NotFound("Delivery not found")
        attempts = await self._store.attempts(row["id"])
        return DeliveryDetail.view(
            row, status=row["status"], payload=orjson.loads(row["payload"]),
            attempt_list=[DeliveryAttempt.view(a) for a in attempts])

    @handles(op.WEBHOOK_REDELIVER)
    async def redeliver(self, call: Call[None, None, DeliveryParams]) -> DeliveryAccepted:
        webhook = await self._webhook(call.authenticated, call.params.id)
        if not await self._intake.redeliver(webhook["id"], call.params.delivery_id):
            raise NotFound("Delivery not found")
        return DeliveryAccepted(delivery_id=call.params.delivery_id)

    # --- helpers -----------------------------------------------------------------------------

    async def _project(self, caller: Caller, project_id: uuid.UUID) -> asyncpg.Record:
        row = await self._projects.visible_project(caller, project_id)
        if row is None:
            raise NotFound("Project not found")
        return row

    async def _webhook(self, caller: Caller, webhook_id: uuid.UUID) -> asyncpg.Record:
        row = await self._store.visible(caller, webhook_id)
        if row is None:
            raise NotFound("Webhook not found")
        return row

    async def _check_url(self, url: str) -> None:
        try:
            await self._targets.check(url)
        except TargetRefused as exc:
            raise _invalid("url", str(exc)) from None


def _check_events(caller: Caller, events: list[str]) -> None:
    admin_only = sorted(set(events) & ADMIN_ONLY_EVENTS)
    if admin_only and not caller.is_admin:
        raise _invalid("events", f"Only admins may subscribe to {', '.join(admin_only)}")


def _invalid(field: str, message: str) -> ValidationError:
    return ValidationError(details=[{"field": field, "location": "body", "code": "custom",
                                     "message": message}])
