"""Alert events in MongoDB (ALERT_EVENT_STORE=mongodb): the `alertevents` collection, one
document per event (analytics_svc.alert_store.event_document).

For a real MongoDB. The local FerretDB answers only an `_id` filter from its index (it sorts
and counts everything else itself), so there the list reads the whole collection:
acknowledging stays a lookup (by `_id` alone, the owner checked on the document found), the
list does not, hence PostgreSQL by default (analytics_svc.alert_events_pg).
"""

from __future__ import annotations

from datetime import UTC, datetime

from bson import ObjectId
from pymongo import ReturnDocument
from pymongo.errors import DuplicateKeyError

from analytics_svc.alert_store import (
    AlertRule,
    EventFilter,
    event_document,
    event_view,
    is_visible,
    triggered_of,
)
from contracts.identity import Caller
from contracts.messages import AlertTriggered
from contracts.mongo import Collection
from contracts.schemas.alerts import AlertEvent, AlertEventPage


class MongoAlertEventStore:
    def __init__(self, events: Collection) -> None:
        self._events = events

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
        try:
            await self._events.insert_one(document)
        except DuplicateKeyError:
            return None
        return triggered_of(rule, document)

    async def events(self, caller: Caller, where: EventFilter, *, limit: int,
                     offset: int) -> AlertEventPage:
        query = where.to_mongo(caller)
        cursor = self._events.find(query).sort([("timestamp", -1), ("_id", -1)]) \
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
        found = await self._events.find_one(by_id, {"userId": 1})
        if found is None or not is_visible(caller, found):
            return None
        document = await self._events.find_one_and_update(
            by_id, {"$set": {"acknowledged": True, "acknowledgedBy": by,
                             "acknowledgedAt": datetime.now(UTC)}},
            return_document=ReturnDocument.AFTER)
        return event_view(document) if document is not None else None
