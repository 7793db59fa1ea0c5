"""Log entries in MongoDB (collection `logentries`, API.md sections 7.1 and 12.2).

Guarantees:
- an entry's `_id` is derived from its source and `requestId`, so the same request stored
  twice (a redelivered or re-batched event: the publisher is at-least-once) is one document,
  and a lookup by request id is an `_id` lookup (the one filter FerretDB on SQLite pushes
  down). Gateway and external entries live in separate id spaces: a public `POST /logs` that
  reuses a gateway request id can neither hide nor replace what the gateway recorded;
- gateway entries: a duplicate key on insert counts as stored; every other error raises, so
  the consumer retries the message and acks only after the write was acknowledged;
- external batches are all or nothing, also when two batches race: a batch that meets an id
  already stored removes the documents it inserted before it answers 409.
"""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from bson import ObjectId
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import BulkWriteError, DuplicateKeyError

from contracts.identity import Caller
from contracts.logging import get_logger
from contracts.messages import RequestCompleted
from contracts.mongo import DUPLICATE_KEY, Index, derived_id, inclusive_range
from contracts.timeutil import parse_iso, to_iso

log = get_logger(__name__)

COLLECTION = "logentries"
GATEWAY, EXTERNAL = "gateway", "external"
# Entries deleted per statement (FerretDB on SQLite fails past 32,766 bound variables).
DELETE_CHUNK = 5000

def indexes(retention: timedelta) -> tuple[Index, ...]:
    """API.md section 12.2; newest first everywhere, and the retention TTL where the server
    has TTL indexes."""
    return (
        Index((("timestamp", -1),), "timestamp_desc",
              options={"expireAfterSeconds": int(retention.total_seconds())}),
        Index((("statusCode", 1), ("timestamp", -1)), "status_timestamp"),
        Index((("userId", 1), ("timestamp", -1)), "user_timestamp"),
        Index((("ownerId", 1), ("timestamp", -1)), "owner_timestamp"),
        Index((("source", 1), ("timestamp", -1)), "source_timestamp"),
        Index((("requestId", 1),), "request_id"),
    )


def entry_id(source: str, request_id: str) -> ObjectId:
    return derived_id(source, request_id.lower())


def gateway_document(event: RequestCompleted) -> dict[str, Any]:
    return {
        "_id": entry_id(GATEWAY, event.request_id), "requestId": event.request_id,
        "timestamp": parse_iso(event.timestamp), "method": event.method,
        "path": event.path, "route": event.route, "statusCode": event.status_code,
        "latency": event.latency, "ip": event.ip, "userId": event.user_id,
        "apiKeyId": event.api_key_id, "projectId": event.project_id,
        "ownerId": event.owner_id, "userAgent": event.user_agent,
        "contentLength": event.content_length,
        "error": event.error.to_wire() if event.error is not None else None,
        "source": GATEWAY,
    }


def external_document(entry: dict[str, Any], now: datetime) -> dict[str, Any]:
    """From an ingest object as validated by the gateway (contracts.schemas.logs.LogIngest;
    on the RPC wire its UUID and datetime are strings)."""
    request_id = str(entry["requestId"]).lower()
    timestamp = entry.get("timestamp")
    return {
        "_id": entry_id(EXTERNAL, request_id), "requestId": request_id,
        "timestamp": parse_iso(timestamp) if timestamp else now, "method": entry["method"],
        "path": entry["path"], "route": None, "statusCode": entry["statusCode"],
        "latency": entry["latency"], "ip": entry["ip"], "userId": entry.get("userId"),
        "apiKeyId": entry.get("apiKeyId"), "projectId": None, "ownerId": None,
        "userAgent": entry.get("userAgent", ""), "contentLength": entry.get("contentLength", 0),
        "error": entry.get("error"), "source": EXTERNAL,
    }


def entry_out(document: dict[str, Any]) -> dict[str, Any]:
    """A stored document as API.md's LogEntry."""
    error = document.get("error")
    return {
        "_id": str(document["_id"]), "requestId": document["requestId"],
        "timestamp": to_iso(document["timestamp"]), "method": document["method"],
        "path": document["path"], "route": document.get("route"),
        "statusCode": document["statusCode"], "latency": document["latency"],
        "ip": document["ip"], "userId": document.get("userId"),
        "apiKeyId": document.get("apiKeyId"), "projectId": document.get("projectId"),
        "ownerId": document.get("ownerId"), "userAgent": document.get("userAgent", ""),
        "contentLength": document.get("contentLength", 0),
        "error": None if error is None else {
            "code": error.get("code"), "message": error.get("message"),
            "stack": error.get("stack")},
        "source": document["source"],
    }


def visible_to(caller: Caller) -> dict[str, Any]:
    """API.md section 1.3: own requests, requests to own projects, and external entries."""
    if caller.is_admin:
        return {}
    return {"$or": [{"source": EXTERNAL}, {"userId": caller.user_id},
                    {"ownerId": caller.user_id}]}


@dataclass(frozen=True)
class LogFilter:
    """The query filters of `GET /logs` (already validated)."""

    user_id: str | None = None
    status_code: int | None = None
    method: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    source: str | None = None
    project_id: str | None = None
    errors_only: bool = False

    def to_mongo(self, caller: Caller) -> dict[str, Any]:
        clauses: list[dict[str, Any]] = []
        visibility = visible_to(caller)
        if visibility:
            clauses.append(visibility)
        for name, value in (("userId", self.user_id), ("statusCode", self.status_code),
                            ("source", self.source), ("projectId", self.project_id)):
            if value is not None:
                clauses.append({name: value})
        if self.method is not None:
            clauses.append({"method": self.method.upper()})
        if self.errors_only:
            clauses.append({"statusCode": {"$gte": 400}})
        moment = inclusive_range(self.since, self.until)
        if moment:
            clauses.append({"timestamp": moment})
        if not clauses:
            return {}
        return clauses[0] if len(clauses) == 1 else {"$and": clauses}


@dataclass(frozen=True)
class Page:
    entries: list[dict[str, Any]]
    total: int
    page: int
    limit: int

    def to_wire(self) -> dict[str, Any]:
        return {"entries": self.entries, "total": self.total, "page": self.page,
                "limit": self.limit, "totalPages": math.ceil(self.total / self.limit)}


class DuplicateRequestId(Exception):
    def __init__(self, request_id: str) -> None:
        super().__init__(request_id)
        self.request_id = request_id


class LogStore:
    def __init__(self, collection: AsyncCollection) -> None:
        self._entries = collection

    async def store_gateway_events(self, events: list[RequestCompleted]) -> int:
        """Store every event once; returns how many were new. Raises on anything but
        duplicates (the caller's message is then retried, never acked)."""
        documents = [gateway_document(event) for event in events]
        try:
            result = await self._entries.insert_many(documents, ordered=False)
        except BulkWriteError as exc:
            errors = exc.details.get("writeErrors", [])
            others = [e for e in errors if e.get("code") != DUPLICATE_KEY]
            if others or exc.details.get("writeConcernErrors"):
                raise
            return len(documents) - len(errors)
        return len(result.inserted_ids)

    async def store_external(self, entries: list[dict[str, Any]]) -> None:
        """All or nothing; raise DuplicateRequestId when any id repeats or exists.

        Each document carries its batch's token, so undoing a batch removes only what this
        batch wrote, never an entry of a racing batch with the same id."""
        now = datetime.now(UTC)
        token = uuid.uuid4().hex
        documents = [{**external_document(entry, now), "ingestBatch": token}
                     for entry in entries]
        seen: set[ObjectId] = set()
        for document in documents:
            if document["_id"] in seen:
                raise DuplicateRequestId(document["requestId"])
            seen.add(document["_id"])
        if len(documents) == 1:
            try:
                await self._entries.insert_one(documents[0])
            except DuplicateKeyError:
                raise DuplicateRequestId(documents[0]["requestId"]) from None
            return
        try:
            await self._entries.insert_many(documents, ordered=False)
        except BulkWriteError as exc:
            failed = {e["index"] for e in exc.details.get("writeErrors", [])}
            written = [d["_id"] for i, d in enumerate(documents) if i not in failed]
            await self._remove(written, token)
            duplicates = [e for e in exc.details.get("writeErrors", [])
                          if e.get("code") == DUPLICATE_KEY]
            if duplicates and len(duplicates) == len(failed):
                raise DuplicateRequestId(documents[duplicates[0]["index"]]["requestId"]) \
                    from None
            raise
        except BaseException:
            # Unknown outcome (connection lost, cancelled): leave nothing of the batch behind.
            await self._remove([d["_id"] for d in documents], token)
            raise

    async def _remove(self, ids: list[ObjectId], token: str) -> None:
        if not ids:
            return
        try:
            await self._entries.delete_many({"_id": {"$in": ids}, "ingestBatch": token})
        except Exception:
            log.exception("could not remove a refused batch's entries", count=len(ids))
            raise

    async def page(self, caller: Caller, where: LogFilter, *, page: int, limit: int) -> Page:
        query = where.to_mongo(caller)
        cursor = self._entries.find(query).sort([("timestamp", -1), ("_id", -1)]) \
            .skip((page - 1) * limit).limit(limit)
        documents = await cursor.to_list(length=limit)
        if page == 1 and len(documents) < limit:
            total = len(documents)  # the whole answer is on this page: no second scan
        else:
            total = await self._entries.count_documents(query)
        return Page([entry_out(d) for d in documents], total, page, limit)

    async def by_request_id(self, caller: Caller, request_id: str) -> dict[str, Any] | None:
        """The gateway's entry for this request if visible, else an external one."""
        for source in (GATEWAY, EXTERNAL):
            document = await self._entries.find_one(
                {"_id": entry_id(source, request_id), **visible_to(caller)})
            if document is not None:
                return entry_out(document)
        return None

    async def expired_ids(self, cutoff: datetime) -> list[list[ObjectId]]:
        """The ids of entries older than `cutoff`, in chunks of DELETE_CHUNK: read in one
        pass (FerretDB scans the collection for any filter) and read before any delete, so no
        cursor is open while deleting."""
        cursor = self._entries.find({"timestamp": {"$lt": cutoff}}, {"_id": 1})
        ids = [document["_id"] async for document in cursor]
        return [ids[i:i + DELETE_CHUNK] for i in range(0, len(ids), DELETE_CHUNK)]

    async def delete(self, ids: list[ObjectId]) -> int:
        result = await self._entries.delete_many({"_id": {"$in": ids}})
        return result.deleted_count
