"""Alert events in MongoDB (ALERT_EVENT_STORE=mongodb): the `alertevents` collection, one
document per event (analytics_svc.alert_store.event_document).

For a real MongoDB. The local FerretDB answers only an `_id` filter from its index (it sorts
and counts everything else itself), so there the list reads the whole collection:
acknowledging stays a lookup (by `_id` alone, the owner checked on the document found), the
list does not, hence PostgreSQL by default (analytics_svc.alert_events_pg).

A stored event and an acknowledgement carry their domain event (`alert.triggered`,
`alert.acknowledged`, for webhooks) in the document's `outbox` field, written by the same
insert or update (contracts.outbox.DocumentOutboxRelay publishes and removes it): no
transaction over two documents is needed, and a crash after the write loses nothing.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from bson import ObjectId
from pymongo import ReturnDocument
from pymongo.errors import DuplicateKeyError

from analytics_svc.alert_events_pg import milliseconds
from analytics_svc.alert_store import (
    AlertRule,
    EventFilter,
    event_document,
    event_view,
    is_visible,
    triggered_of,
)
from contracts.identity import Caller
from contracts.messages import AlertTriggered, DomainEvent, DomainEventType
from contracts.mongo import Collection
from contracts.outbox import OUTBOX_FIELD, DocumentOutboxRelay, domain_event, outbox_entry
from contracts.schemas.alerts import AlertEvent, AlertEventPage

# what a read returns of an event: not its waiting announcements
_VIEWED = {OUTBOX_FIELD: 0}


def _announced(event_type: DomainEventType, document: dict[str, Any]) -> DomainEvent:
    """The domain event of an event document (as analytics_svc.alert_events_pg's)."""
    return domain_event(event_type, event_view(document), project_id=document.get("projectId"),
                        owner_id=document["userId"])


class MongoAlertEventStore:
    def __init__(self, events: Collection, relay: DocumentOutboxRelay | None = None) -> None:
        self._events = events
        self._relay = relay

    def _nudge(self) -> None:
        if self._relay is not None:
            self._relay.nudge()

    async def last_event_at(self, rule_id: str) -> datetime | None:
        cursor = self._events.find({"ruleId": ObjectId(rule_id)}, {"timestamp": 1}) \
            .sort([("timestamp", -1)]).limit(1)
        async for document in cursor:
            moment: datetime = document["timestamp"]
            return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
        return None

    async def store_event(self, rule: AlertRule, slot: int, *, value: float, severity: str,
                          message: str, at: datetime) -> AlertTriggered | None:
        document = event_document(rule, slot, value=value, severity=severity, message=message,
                                  at=at)
        announced = [outbox_entry(_announced("alert.triggered", document))]
        try:
            await self._events.insert_one({**document, OUTBOX_FIELD: announced})
        except DuplicateKeyError:
            return None
        self._nudge()
        return triggered_of(rule, document)

    async def events(self, caller: Caller, where: EventFilter, *, limit: int,
                     offset: int) -> AlertEventPage:
        query = where.to_mongo(caller)
        cursor = self._events.find(query, _VIEWED).sort([("timestamp", -1), ("_id", -1)]) \
            .skip(offset).limit(limit)
        documents = await cursor.to_list(length=limit)
        if offset == 0 and len(documents) < limit:
            total = len(documents)
        else:
            total = await self._events.count_documents(query)
        return AlertEventPage(events=[event_view(d) for d in documents], total=total,
                              limit=limit, offset=offset)

    async def acknowledge(self, caller: Caller, event_id: str,
                          by: str) -> AlertEvent | None:
        # By `_id` alone: the local server looks a document up through its index only for
        # that filter (with any other field it reads the whole collection), so the owner is
        # checked on the document found; an event's owner never changes.
        by_id = {"_id": ObjectId(event_id)}
        found = await self._events.find_one(by_id, _VIEWED)
        if found is None or not is_visible(caller, found):
            return None
        # the announcement is made from the document as the update leaves it, so it travels
        # in that same update
        acknowledged = {"acknowledged": True, "acknowledgedBy": by,
                        "acknowledgedAt": milliseconds(datetime.now(UTC))}
        announced = outbox_entry(_announced("alert.acknowledged", {**found, **acknowledged}))
        document = await self._events.find_one_and_update(
            by_id, {"$set": acknowledged, "$push": {OUTBOX_FIELD: announced}},
            return_document=ReturnDocument.AFTER)  # (FerretDB: no projection here)
        if document is None:
            return None
        self._nudge()
        return event_view(document)
