"""Log entries in MongoDB (LOG_STORE=mongodb; collection `logentries`, docs/api.md section 12.2),
for deployments that run a real MongoDB. The local FerretDB serves it too, for its contract
tests, but cannot index its queries (it sorts, skips and counts in memory): slow past tens of
thousands of entries.

Guarantees:
- an entry's `_id` is the first 12 bytes of its identity digest (logging_svc.entries), so a
  redelivered event is a duplicate key (already stored) and a lookup by request id is an
  `_id` lookup;
- gateway entries: a duplicate key on insert counts as stored; every other error raises, so
  the consumer retries the message and acks only after the write was acknowledged;
- external batches are all or nothing, also when two batches race: a batch that meets an id
  already stored removes the documents it inserted before it answers 409;
- retention: a TTL index where the server has them, and `upkeep` deletes expired entries in
  bounded chunks by `_id` (FerretDB has no TTL).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from bson import ObjectId
from pymongo.errors import BulkWriteError, DuplicateKeyError

from contracts.identity import Caller
from contracts.logging import get_logger
from contracts.mongo import DUPLICATE_KEY, Collection, Index, inclusive_range
from contracts.timeutil import to_iso
from logging_svc.entries import (
    EXTERNAL,
    GATEWAY,
    DuplicateRequestId,
    Found,
    LogFilter,
    LogRecord,
    Position,
    identity_digest,
)

log = get_logger(__name__)

COLLECTION = "logentries"
# Entries deleted per statement (FerretDB on SQLite fails past 32,766 bound variables).
DELETE_CHUNK = 5000


def indexes(retention: timedelta) -> tuple[Index, ...]:
    """docs/api.md section 12.2; newest first everywhere, and the retention TTL where the server
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
    return ObjectId(identity_digest(source, request_id)[:12])


def document_of(record: LogRecord) -> dict[str, Any]:
    return {
        "_id": ObjectId(record.digest[:12]), "requestId": record.request_id,
        "timestamp": record.timestamp, "method": record.method, "path": record.path,
        "route": record.route, "statusCode": record.status_code, "latency": record.latency,
        "ip": record.ip, "userId": record.user_id, "apiKeyId": record.api_key_id,
        "projectId": record.project_id, "ownerId": record.owner_id,
        "userAgent": record.user_agent, "contentLength": record.content_length,
        "error": record.error, "traceId": record.trace_id, "source": record.source,
    }


def entry_out(document: dict[str, Any]) -> dict[str, Any]:
    """A stored document as docs/api.md's LogEntry."""
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
        # absent from entries stored before the field existed
        "traceId": document.get("traceId"),
        "source": document["source"],
    }


def record_of(document: dict[str, Any]) -> LogRecord:
    return LogRecord(
        request_id=document["requestId"], timestamp=document["timestamp"],
        source=document["source"], method=document["method"], path=document["path"],
        route=document.get("route"), status_code=document["statusCode"],
        latency=document["latency"], ip=document["ip"], user_id=document.get("userId"),
        api_key_id=document.get("apiKeyId"), project_id=document.get("projectId"),
        owner_id=document.get("ownerId"), user_agent=document.get("userAgent", ""),
        content_length=document.get("contentLength", 0), error=entry_out(document)["error"],
        trace_id=document.get("traceId"))


def visible_to(caller: Caller) -> dict[str, Any]:
    """docs/api.md section 1.3: own requests, requests to own projects, and external entries."""
    if caller.is_admin:
        return {}
    return {"$or": [{"source": EXTERNAL}, {"userId": caller.user_id},
                    {"ownerId": caller.user_id}]}


def to_mongo(caller: Caller, where: LogFilter, after: Position | None = None
             ) -> dict[str, Any]:
    clauses: list[dict[str, Any]] = []
    visibility = visible_to(caller)
    if visibility:
        clauses.append(visibility)
    for name, value in (("userId", where.user_id), ("statusCode", where.status_code),
                        ("source", where.source), ("projectId", where.project_id)):
        if value is not None:
            clauses.append({name: value})
    if where.method is not None:
        clauses.append({"method": where.method.upper()})
    if where.errors_only:
        clauses.append({"statusCode": {"$gte": 400}})
    moment = inclusive_range(where.since, where.until)
    if moment:
        clauses.append({"timestamp": moment})
    if after is not None:
        key = ObjectId(after.key)
        clauses.append({"$or": [{"timestamp": {"$lt": after.timestamp}},
                                {"timestamp": after.timestamp, "_id": {"$lt": key}}]})
    if not clauses:
        return {}
    return clauses[0] if len(clauses) == 1 else {"$and": clauses}


class MongoLogStore:
    def __init__(self, collection: Collection, *, retention_days: int) -> None:
        self._entries = collection
        self._retention = timedelta(days=retention_days)

    async def close(self) -> None:
        """The client is the service's (contracts.mongo.Mongo), closed by it."""

    async def ping(self) -> None:
        await self._entries.database.command("ping")

    async def store_once(self, records: list[LogRecord]) -> int:
        # already past the retention (a backlog replayed days later): dropped as expired
        cutoff = datetime.now(UTC) - self._retention
        documents = [document_of(record) for record in records if record.timestamp >= cutoff]
        if not documents:
            return 0
        try:
            result = await self._entries.insert_many(documents, ordered=False)
        except BulkWriteError as exc:
            errors = exc.details.get("writeErrors", [])
            others = [e for e in errors if e.get("code") != DUPLICATE_KEY]
            if others or exc.details.get("writeConcernErrors"):
                raise
            return len(documents) - len(errors)
        return len(result.inserted_ids)

    async def store_external(self, records: list[LogRecord]) -> None:
        """Each document carries its batch's token, so undoing a batch removes only what this
        batch wrote, never an entry of a racing batch with the same id."""
        token = uuid.uuid4().hex
        documents = [{**document_of(record), "ingestBatch": token} for record in records]
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

    async def newest(self, caller: Caller, where: LogFilter, *, after: Position | None,
                     skip: int, limit: int) -> list[Found]:
        cursor = self._entries.find(to_mongo(caller, where, after)) \
            .sort([("timestamp", -1), ("_id", -1)]).skip(skip).limit(limit)
        return [Found(Position(d["timestamp"], d["_id"].binary), entry_out(d))
                for d in await cursor.to_list(length=limit)]

    async def count(self, caller: Caller, where: LogFilter, *, up_to: int) -> int:
        return await self._entries.count_documents(to_mongo(caller, where), limit=up_to)

    async def by_request_id(self, caller: Caller, request_id: str) -> dict[str, Any] | None:
        for source in (GATEWAY, EXTERNAL):
            document = await self._entries.find_one(
                {"_id": entry_id(source, request_id), **visible_to(caller)})
            if document is not None:
                return entry_out(document)
        return None

    async def scan(self, resume: str | None, limit: int) -> tuple[list[LogRecord], str | None]:
        """In `_id` order (an index scan on MongoDB); the token is the last `_id`."""
        query = {} if resume is None else {"_id": {"$gt": ObjectId(resume)}}
        documents = await self._entries.find(query).sort("_id", 1).limit(limit) \
            .to_list(length=limit)
        if not documents:
            return [], None
        return [record_of(d) for d in documents], str(documents[-1]["_id"])

    async def upkeep(self, now: datetime) -> int:
        """Delete every entry older than the retention, in chunks of DELETE_CHUNK ids: read
        in one pass (FerretDB scans the collection for any filter) before any delete, so no
        cursor is open while deleting."""
        cursor = self._entries.find({"timestamp": {"$lt": now - self._retention}}, {"_id": 1})
        ids = [document["_id"] async for document in cursor]
        deleted = 0
        for start in range(0, len(ids), DELETE_CHUNK):
            result = await self._entries.delete_many(
                {"_id": {"$in": ids[start:start + DELETE_CHUNK]}})
            deleted += result.deleted_count
        return deleted

