"""Alert rules in MongoDB (`alertrules`, docs/api.md section 12.2), and alert events behind the
`AlertEventStore` protocol (ALERT_EVENT_STORE): PostgreSQL (analytics_svc.alert_events_pg,
the default) or MongoDB (`alertevents`, analytics_svc.alert_events_mongo). `AlertStore` is
what the handlers and the engine use: rules here, events through the configured store.

Every write is a single-document insert or update, which the local server performs safely.
An event's `_id` is derived from its rule and evaluation slot, so two engines evaluating the
same rule in the same slot (a lease handed over while its old holder was still running) store
one event: the second insert is a duplicate key, in either store. Tenancy is one rule,
`visible_to`, used by every read and write of a caller (as a filter, or on a document found
by `_id`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar

from bson import ObjectId
from pymongo import ReturnDocument

from contracts.identity import Caller
from contracts.messages import AlertTriggered
from contracts.mongo import Collection, Index, derived_id, inclusive_range
from contracts.outbox import OUTBOX_INDEX
from contracts.schemas import alerts
from contracts.schemas.common import Answer
from contracts.timeutil import to_iso

RULES = "alertrules"
EVENTS = "alertevents"

# Only unique indexes are used on the local server (contracts.mongo); on MongoDB these serve
# the engine's and the lists' filters.
RULE_INDEXES = (Index((("userId", 1),), "userId_1"),
                Index((("service", 1), ("enabled", 1)), "service_1_enabled_1"),
                Index((("metric", 1),), "metric_1"))
EVENT_INDEXES = (Index((("ruleId", 1), ("timestamp", -1)), "ruleId_1_timestamp_-1"),
                 Index((("timestamp", -1),), "timestamp_-1"),
                 Index((("acknowledged", 1),), "acknowledged_1"),
                 Index((("service", 1), ("timestamp", -1)), "service_1_timestamp_-1"),
                 OUTBOX_INDEX)


def visible_to(caller: Caller) -> dict[str, Any]:
    """docs/api.md section 1.3: a rule or event is its owner's; an admin sees all."""
    return {} if caller.is_admin else {"userId": caller.user_id}


def is_visible(caller: Caller, document: dict[str, Any]) -> bool:
    """`visible_to`, for one document."""
    return caller.is_admin or document.get("userId") == caller.user_id


@dataclass(frozen=True)
class AlertRule:
    """A rule as the engine evaluates it."""

    id: str
    name: str
    service: str
    metric: str
    window_s: int
    threshold: float
    operator: str
    cool_down_s: int
    severity: str | None
    project_id: str | None
    user_id: str
    owner_is_admin: bool

    @classmethod
    def of(cls, document: dict[str, Any]) -> AlertRule:
        return cls(str(document["_id"]), document["name"], document["service"],
                   document["metric"], document["windowSeconds"], document["threshold"],
                   document["operator"], document["coolDownSeconds"], document.get("severity"),
                   document.get("projectId"), document["userId"],
                   bool(document.get("ownerIsAdmin")))


A = TypeVar("A", bound=Answer)


def stored_view(answer: type[A], document: Mapping[str, Any], defaults: Mapping[str, Any],
                **values: Any) -> A:
    """`answer`'s fields of a MongoDB document, which keeps them under their wire names (the
    answer's aliases); `defaults` fill fields older documents lack, `values` come first."""
    fields = {**defaults, **{name: document[field.alias]
                             for name, field in answer.model_fields.items()
                             if field.alias is not None and field.alias in document}}
    return answer.view(fields, **values)


# what a rule or event written by an earlier version may lack, and how it reads
_RULE_DEFAULTS = {"description": "", "severity": None, "project_id": None}
_EVENT_DEFAULTS = {"acknowledged": False, "acknowledged_by": None, "acknowledged_at": None,
                   "project_id": None}


def rule_view(document: Mapping[str, Any]) -> alerts.AlertRule:
    rule_id = str(document["_id"])
    return stored_view(alerts.AlertRule, document, _RULE_DEFAULTS, id=rule_id, mongo_id=rule_id)


def event_view(document: Mapping[str, Any]) -> alerts.AlertEvent:
    event_id = str(document["_id"])
    return stored_view(alerts.AlertEvent, document, _EVENT_DEFAULTS, id=event_id,
                       mongo_id=event_id, rule_id=str(document["ruleId"]))


def event_document(rule: AlertRule, slot: int, *, value: float, severity: str, message: str,
                   at: datetime) -> dict[str, Any]:
    """An event as stored: its `_id` is its rule's and evaluation slot's."""
    return {
        "_id": derived_id("alert", rule.id, str(slot)), "ruleId": ObjectId(rule.id),
        "ruleName": rule.name, "service": rule.service, "metric": rule.metric, "value": value,
        "threshold": rule.threshold, "operator": rule.operator, "message": message,
        "severity": severity, "timestamp": at, "acknowledged": False, "acknowledgedBy": None,
        "acknowledgedAt": None, "userId": rule.user_id, "projectId": rule.project_id,
    }


@dataclass(frozen=True)
class EventFilter:
    acknowledged: bool | None = None
    severity: str | None = None
    service: str | None = None
    since: datetime | None = None
    until: datetime | None = None

    def to_mongo(self, caller: Caller) -> dict[str, Any]:
        query: dict[str, Any] = dict(visible_to(caller))
        for name, value in (("acknowledged", self.acknowledged), ("severity", self.severity),
                            ("service", self.service)):
            if value is not None:
                query[name] = value
        moment = inclusive_range(self.since, self.until)
        if moment:
            query["timestamp"] = moment
        return query


def triggered_of(rule: AlertRule, document: Mapping[str, Any]) -> AlertTriggered:
    """The `alert.triggered` message of a stored event (`document` as `event_document` made
    it)."""
    return AlertTriggered(
        id=str(document["_id"]), rule_id=rule.id, rule_name=rule.name, service=rule.service,
        metric=rule.metric, value=document["value"], threshold=rule.threshold,
        operator=rule.operator, message=document["message"], severity=document["severity"],
        timestamp=to_iso(document["timestamp"]), user_id=rule.user_id,
        project_id=rule.project_id)


class AlertEventStore(Protocol):
    """What the analytics service needs of an alert event store. Events are answered as
    docs/api.md's AlertEvent (`contracts.schemas.alerts`); visibility (docs/api.md section
    1.3) is the store's: an owner sees their own events, an admin every event."""

    async def store_event(self, rule: AlertRule, slot: int, *, value: float, severity: str,
                          message: str, at: datetime) -> AlertTriggered | None:
        """Store the event of `rule`'s breach in evaluation `slot` (its `_id` is
        `event_document`'s); None when an event of that slot exists already."""
        ...

    async def last_event_at(self, rule_id: str) -> datetime | None:
        """When `rule_id`'s latest event happened (an index lookup), None if it has none."""
        ...

    async def events(self, caller: Caller, where: EventFilter, *, limit: int,
                     offset: int) -> alerts.AlertEventPage:
        """Visible events matching `where`, newest first (timestamp, then `_id`,
        descending); `total` is exact."""
        ...

    async def acknowledge(self, caller: Caller, event_id: str,
                          by: str) -> alerts.AlertEvent | None:
        """Mark a visible event acknowledged by `by`, now (again: overwritten); None when
        there is no such event or the caller may not see it."""
        ...


class AlertStore:
    """Rules in MongoDB; events in `events`, whichever store it is."""

    def __init__(self, rules: Collection, events: AlertEventStore) -> None:
        self._rules = rules
        self._events = events

    # --- rules -----------------------------------------------------------------------------

    async def create_rule(self, caller: Caller, fields: dict[str, Any]) -> alerts.AlertRule:
        now = datetime.now(UTC)
        document = {"_id": ObjectId(), **fields, "userId": caller.user_id,
                    # an admin's rule watches all traffic (docs/api.md 9.1); kept from creation
                    "ownerIsAdmin": caller.is_admin, "createdAt": now, "updatedAt": now}
        await self._rules.insert_one(document)
        return rule_view(document)

    async def rules(self, caller: Caller) -> list[alerts.AlertRule]:
        cursor = self._rules.find(visible_to(caller)).sort([("createdAt", -1), ("_id", -1)])
        return [rule_view(document) async for document in cursor]

    async def rule(self, caller: Caller, rule_id: str) -> alerts.AlertRule | None:
        document = await self._rules.find_one({"_id": ObjectId(rule_id), **visible_to(caller)})
        return rule_view(document) if document is not None else None

    async def update_rule(self, caller: Caller, rule_id: str,
                          changes: dict[str, Any]) -> alerts.AlertRule | None:
        document = await self._rules.find_one_and_update(
            {"_id": ObjectId(rule_id), **visible_to(caller)},
            {"$set": {**changes, "updatedAt": datetime.now(UTC)}},
            return_document=ReturnDocument.AFTER)
        return rule_view(document) if document is not None else None

    async def delete_rule(self, caller: Caller, rule_id: str) -> bool:
        result = await self._rules.delete_one({"_id": ObjectId(rule_id), **visible_to(caller)})
        return result.deleted_count == 1

    async def enabled_rules(self) -> list[AlertRule]:
        return [AlertRule.of(document) async for document in self._rules.find({"enabled": True})]

    # --- events ----------------------------------------------------------------------------

    async def last_event_at(self, rule_id: str) -> datetime | None:
        return await self._events.last_event_at(rule_id)

    async def store_event(self, rule: AlertRule, slot: int, *, value: float, severity: str,
                          message: str, at: datetime) -> AlertTriggered | None:
        """Store the event of `rule`'s breach in evaluation `slot`; None when an event of that
        slot exists already (another engine stored it)."""
        return await self._events.store_event(rule, slot, value=value, severity=severity,
                                              message=message, at=at)

    async def events(self, caller: Caller, where: EventFilter, *, limit: int,
                     offset: int) -> alerts.AlertEventPage:
        return await self._events.events(caller, where, limit=limit, offset=offset)

    async def acknowledge(self, caller: Caller, event_id: str,
                          by: str) -> alerts.AlertEvent | None:
        return await self._events.acknowledge(caller, event_id, by)
