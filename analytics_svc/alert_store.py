"""Alert rules and alert events in MongoDB (`alertrules`, `alertevents`, API.md section 12.2).

Every write is a single-document insert or update, which the local server performs safely.
An event's `_id` is derived from its rule and evaluation slot, so two engines evaluating the
same rule in the same slot (a lease handed over while its old holder was still running) store
one event: the second insert is a duplicate key. Tenancy is one filter, `visible_to`, used by
every read and write of a caller.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from bson import ObjectId
from pymongo import ReturnDocument
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError

from contracts.identity import Caller
from contracts.messages import AlertTriggered
from contracts.mongo import Index, derived_id, inclusive_range
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
                 Index((("service", 1), ("timestamp", -1)), "service_1_timestamp_-1"))


def visible_to(caller: Caller) -> dict[str, Any]:
    """API.md section 1.3: a rule or event is its owner's; an admin sees all."""
    return {} if caller.is_admin else {"userId": caller.user_id}


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


def rule_out(document: dict[str, Any]) -> dict[str, Any]:
    rule_id = str(document["_id"])
    return {
        "id": rule_id, "_id": rule_id, "name": document["name"],
        "description": document.get("description", ""), "service": document["service"],
        "metric": document["metric"], "windowSeconds": document["windowSeconds"],
        "threshold": document["threshold"], "operator": document["operator"],
        "enabled": document["enabled"], "coolDownSeconds": document["coolDownSeconds"],
        "severity": document.get("severity"), "projectId": document.get("projectId"),
        "userId": document["userId"], "createdAt": to_iso(document["createdAt"]),
        "updatedAt": to_iso(document["updatedAt"]),
    }


def event_out(document: dict[str, Any]) -> dict[str, Any]:
    event_id = str(document["_id"])
    acknowledged_at = document.get("acknowledgedAt")
    return {
        "id": event_id, "_id": event_id, "ruleId": str(document["ruleId"]),
        "ruleName": document["ruleName"], "service": document["service"],
        "metric": document["metric"], "value": document["value"],
        "threshold": document["threshold"], "operator": document["operator"],
        "message": document["message"], "severity": document["severity"],
        "timestamp": to_iso(document["timestamp"]),
        "acknowledged": document.get("acknowledged", False),
        "acknowledgedBy": document.get("acknowledgedBy"),
        "acknowledgedAt": to_iso(acknowledged_at) if acknowledged_at else None,
        "userId": document["userId"], "projectId": document.get("projectId"),
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


class AlertStore:
    def __init__(self, rules: AsyncCollection, events: AsyncCollection) -> None:
        self._rules = rules
        self._events = events

    # --- rules -----------------------------------------------------------------------------

    async def create_rule(self, caller: Caller, fields: dict[str, Any]) -> dict[str, Any]:
        now = datetime.now(UTC)
        document = {"_id": ObjectId(), **fields, "userId": caller.user_id,
                    # an admin's rule watches all traffic (API.md 9.1); kept from creation
                    "ownerIsAdmin": caller.is_admin, "createdAt": now, "updatedAt": now}
        await self._rules.insert_one(document)
        return rule_out(document)

    async def rules(self, caller: Caller) -> list[dict[str, Any]]:
        cursor = self._rules.find(visible_to(caller)).sort([("createdAt", -1), ("_id", -1)])
        return [rule_out(document) async for document in cursor]

    async def rule(self, caller: Caller, rule_id: str) -> dict[str, Any] | None:
        document = await self._rules.find_one({"_id": ObjectId(rule_id), **visible_to(caller)})
        return rule_out(document) if document is not None else None

    async def update_rule(self, caller: Caller, rule_id: str,
                          changes: dict[str, Any]) -> dict[str, Any] | None:
        document = await self._rules.find_one_and_update(
            {"_id": ObjectId(rule_id), **visible_to(caller)},
            {"$set": {**changes, "updatedAt": datetime.now(UTC)}},
            return_document=ReturnDocument.AFTER)
        return rule_out(document) if document is not None else None

    async def delete_rule(self, caller: Caller, rule_id: str) -> bool:
        result = await self._rules.delete_one({"_id": ObjectId(rule_id), **visible_to(caller)})
        return result.deleted_count == 1

    async def enabled_rules(self) -> list[AlertRule]:
        return [AlertRule.of(document) async for document in self._rules.find({"enabled": True})]

    # --- events ----------------------------------------------------------------------------

    async def last_event_at(self, rule_id: str) -> datetime | None:
        cursor = self._events.find({"ruleId": ObjectId(rule_id)}, {"timestamp": 1}) \
            .sort([("timestamp", -1)]).limit(1)
        async for document in cursor:
            moment: datetime = document["timestamp"]
            return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
        return None

    async def store_event(self, rule: AlertRule, slot: int, *, value: float, severity: str,
                          message: str, at: datetime) -> AlertTriggered | None:
        """Store the event of `rule`'s breach in evaluation `slot`; None when an event of that
        slot exists already (another engine stored it)."""
        event_id = derived_id("alert", rule.id, str(slot))
        document = {
            "_id": event_id, "ruleId": ObjectId(rule.id), "ruleName": rule.name,
            "service": rule.service, "metric": rule.metric, "value": value,
            "threshold": rule.threshold, "operator": rule.operator, "message": message,
            "severity": severity, "timestamp": at, "acknowledged": False,
            "acknowledgedBy": None, "acknowledgedAt": None, "userId": rule.user_id,
            "projectId": rule.project_id,
        }
        try:
            await self._events.insert_one(document)
        except DuplicateKeyError:
            return None
        out = event_out(document)
        return AlertTriggered(
            id=out["id"], rule_id=out["ruleId"], rule_name=rule.name, service=rule.service,
            metric=rule.metric, value=value, threshold=rule.threshold, operator=rule.operator,
            message=message, severity=severity, timestamp=out["timestamp"],
            user_id=rule.user_id, project_id=rule.project_id)

    async def events(self, caller: Caller, where: EventFilter, *, limit: int,
                     offset: int) -> dict[str, Any]:
        query = where.to_mongo(caller)
        cursor = self._events.find(query).sort([("timestamp", -1), ("_id", -1)]) \
            .skip(offset).limit(limit)
        documents = await cursor.to_list(length=limit)
        if offset == 0 and len(documents) < limit:
            total = len(documents)
        else:
            total = await self._events.count_documents(query)
        return {"events": [event_out(d) for d in documents], "total": total, "limit": limit,
                "offset": offset}

    async def acknowledge(self, caller: Caller, event_id: str,
                          by: str) -> dict[str, Any] | None:
        document = await self._events.find_one_and_update(
            {"_id": ObjectId(event_id), **visible_to(caller)},
            {"$set": {"acknowledged": True, "acknowledgedBy": by,
                      "acknowledgedAt": datetime.now(UTC)}},
            return_document=ReturnDocument.AFTER)
        return event_out(document) if document is not None else None
