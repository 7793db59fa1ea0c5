"""Webhooks and their deliveries: requests and answers (docs/api.md, webhooks)."""

from __future__ import annotations

from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import MISSING

from contracts.names import DOMAIN_EVENT_TYPES
from contracts.schemas.common import Answer, Id, Limit, Moment, Page
from contracts.validation import (
    RequestModel,
    StrictBoolean,
    Trimmed,
    checks,
    failure,
    length,
    one_of,
    pattern,
)

# What a webhook may subscribe to; `webhook.test` is sent by the test endpoint whatever the
# subscription, and `user.registered` (no project's) is for admins' webhooks only.
WEBHOOK_EVENTS = DOMAIN_EVENT_TYPES
ADMIN_ONLY_EVENTS = frozenset({"user.registered"})
TEST_EVENT = "webhook.test"
DELIVERY_STATUSES = ("pending", "delivered", "failed")

WebhookName = Annotated[str, Trimmed, checks(length("Name", min=1, max=100))]
WebhookUrl = Annotated[str, checks(
    length("url", min=1, max=2048),
    pattern(r"^\S+$", "url must not contain whitespace"))]
EventType = Annotated[str, checks(one_of(
    "events", WEBHOOK_EVENTS, "events must be of " + ", ".join(WEBHOOK_EVENTS)))]
Events = Annotated[list[EventType], checks(length("events", min=1, max=len(WEBHOOK_EVENTS)))]


def _unique(events: list[str]) -> None:
    if len(set(events)) != len(events):
        raise failure("custom", "events must not repeat a value", "events")


class WebhookBody(RequestModel):
    name: WebhookName
    url: WebhookUrl
    events: Events
    active: StrictBoolean | MISSING = MISSING

    def model_post_init(self, _context: object) -> None:
        _unique(self.events)


class WebhookPatch(RequestModel):
    name: WebhookName | MISSING = MISSING
    url: WebhookUrl | MISSING = MISSING
    events: Events | MISSING = MISSING
    active: StrictBoolean | MISSING = MISSING

    def model_post_init(self, _context: object) -> None:
        if self.given(self.events):
            _unique(self.events)


class WebhookListQuery(RequestModel):
    page: Page = 1
    limit: Limit = 20


class DeliveryListQuery(RequestModel):
    page: Page = 1
    limit: Limit = 20
    status: Annotated[str, checks(one_of(
        "status", DELIVERY_STATUSES, "status must be one of pending, delivered, failed"))
                      ] | MISSING = MISSING


class DeliveryParams(RequestModel):
    id: UUID
    delivery_id: Annotated[str, checks(length("deliveryId", min=1, max=64))]


# --- answers ---------------------------------------------------------------------------------


class Webhook(Answer):
    """A webhook as listed: never its secret."""

    id: Id
    project_id: Id
    name: str
    url: str
    events: list[str]
    active: bool
    disabled_reason: str | None
    previous_secret_until: Moment | None
    created_at: Moment
    updated_at: Moment


class WebhookWithSecret(Webhook):
    """The answer of create and rotate-secret: the secret, shown this once."""

    secret: str


class WebhookPage(Answer):
    webhooks: list[Webhook]
    total: int
    page: int
    limit: int
    total_pages: int


class Delivery(Answer):
    id: str
    event_type: str
    event_id: str
    status: Literal["pending", "delivered", "failed"]
    attempts: int
    last_status_code: int | None
    last_error: str | None
    last_attempt_at: Moment | None
    next_attempt_at: Moment | None
    duration_ms: float | None
    created_at: Moment


class DeliveryAttempt(Answer):
    number: int
    at: Moment
    status_code: int | None
    error: str | None
    duration_ms: float
    answer: str


class DeliveryDetail(Delivery):
    payload: dict[str, Any]
    attempt_list: list[DeliveryAttempt]


class DeliveryPage(Answer):
    deliveries: list[Delivery]
    total: int
    page: int
    limit: int
    total_pages: int


class DeliveryAccepted(Answer):
    delivery_id: str
