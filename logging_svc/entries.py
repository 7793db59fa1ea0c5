"""What a log store keeps and answers (docs/api.md section 7.1), whichever store it is: the typed
record, the query filter, a position in the newest-first order, and the `LogStore` protocol
that logging_svc.pg_store and logging_svc.mongo_store implement.

An entry's identity is derived from its source and request id (lower-cased), so the same
request stored twice (a redelivered event: the publisher is at-least-once) is one entry, and
gateway and external entries live in separate id spaces: a public `POST /logs` that reuses a
gateway request id can neither hide nor replace what the gateway recorded. Both stores derive
the wire `_id` from the same digest, so an entry keeps its `_id` when copied across.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from typing import Any, Protocol

from contracts.identity import Caller
from contracts.messages import RequestCompleted
from contracts.schemas.logs import LogIngest
from contracts.timeutil import parse_iso, to_iso

GATEWAY, EXTERNAL = "gateway", "external"


def identity_digest(source: str, request_id: str) -> bytes:
    """SHA-256 of the entry's natural key (the Mongo store's `_id` is its first 12 bytes,
    contracts.mongo.derived_id)."""
    return hashlib.sha256(f"{source}\x1f{request_id.lower()}".encode()).digest()


@dataclass(frozen=True)
class LogRecord:
    """One log entry as stored."""

    request_id: str
    timestamp: datetime
    source: str
    method: str
    path: str
    route: str | None
    status_code: int
    latency: float
    ip: str
    user_id: str | None
    api_key_id: str | None
    project_id: str | None
    owner_id: str | None
    user_agent: str
    content_length: int
    error: dict[str, Any] | None
    # the W3C trace id the gateway served the request in; None for external entries (and
    # for gateway entries stored before the field existed, hence the default)
    trace_id: str | None = None

    @classmethod
    def of_event(cls, event: RequestCompleted) -> LogRecord:
        return cls(
            request_id=event.request_id, timestamp=parse_iso(event.timestamp),
            source=GATEWAY, method=event.method, path=event.path, route=event.route,
            status_code=event.status_code, latency=event.latency, ip=event.ip,
            user_id=event.user_id, api_key_id=event.api_key_id, project_id=event.project_id,
            owner_id=event.owner_id, user_agent=event.user_agent,
            content_length=event.content_length,
            error=event.error.to_wire() if event.error is not None else None,
            trace_id=event.trace_id)

    @classmethod
    def of_ingest(cls, entry: LogIngest, now: datetime) -> LogRecord:
        """From an external entry (`POST /logs`); one without a timestamp is stamped `now`."""
        error = entry.error
        return cls(
            request_id=str(entry.request_id), timestamp=entry.timestamp or now,
            source=EXTERNAL, method=entry.method, path=entry.path, route=None,
            status_code=entry.status_code, latency=entry.latency, ip=entry.ip,
            user_id=entry.user_id, api_key_id=entry.api_key_id, project_id=None,
            owner_id=None, user_agent=entry.user_agent, content_length=entry.content_length,
            error=None if error is None else {"code": error.code, "message": error.message,
                                              "stack": error.stack},
            trace_id=None)

    @cached_property
    def digest(self) -> bytes:
        return identity_digest(self.source, self.request_id)

    @property
    def external(self) -> bool:
        return self.source == EXTERNAL

    def to_wire(self) -> dict[str, Any]:
        """docs/api.md's LogEntry."""
        return {
            "_id": self.digest[:12].hex(), "requestId": self.request_id,
            "timestamp": to_iso(self.timestamp), "method": self.method, "path": self.path,
            "route": self.route, "statusCode": self.status_code, "latency": self.latency,
            "ip": self.ip, "userId": self.user_id, "apiKeyId": self.api_key_id,
            "projectId": self.project_id, "ownerId": self.owner_id,
            "userAgent": self.user_agent, "contentLength": self.content_length,
            "error": self.error, "traceId": self.trace_id, "source": self.source,
        }


@dataclass(frozen=True)
class LogFilter:
    """The query filters of `GET /logs` and `/logs/errors` (already validated)."""

    user_id: str | None = None
    status_code: int | None = None
    method: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    source: str | None = None
    project_id: str | None = None
    errors_only: bool = False

    def fingerprint(self) -> bytes:
        """Every filter, for binding a cursor to the query it continues."""
        return repr((self.user_id, self.status_code,
                     self.method.upper() if self.method else None,
                     self.since.isoformat() if self.since else None,
                     self.until.isoformat() if self.until else None, self.source,
                     self.project_id, self.errors_only)).encode()


@dataclass(frozen=True, order=True)
class Position:
    """Where an entry stands in the newest-first order: its time, then its store's id bytes
    (a tie-breaker that is unique and stable)."""

    timestamp: datetime
    key: bytes


@dataclass(frozen=True)
class Found:
    position: Position
    entry: dict[str, Any]  # the wire LogEntry


class DuplicateRequestId(Exception):
    def __init__(self, request_id: str) -> None:
        super().__init__(request_id)
        self.request_id = request_id


class LogStore(Protocol):
    """What the logging service needs of a store. Visibility (docs/api.md section 1.3) is the
    store's: an admin sees everything; anyone else external entries, their own requests
    (`userId`) and requests to their projects (`ownerId`)."""

    async def store_once(self, records: list[LogRecord]) -> int:
        """Store each record that is not stored yet (gateway events, entries copied from
        another store); returns how many were new. One already past the retention is not
        stored. Raises on anything but duplicates (the consumer's message is then retried,
        never acked)."""
        ...

    async def store_external(self, records: list[LogRecord]) -> None:
        """All or nothing; raises DuplicateRequestId when any id repeats or exists."""
        ...

    async def newest(self, caller: Caller, where: LogFilter, *, after: Position | None,
                     skip: int, limit: int) -> list[Found]:
        """Up to `limit` visible entries, newest first, after `after` (exclusive) or after
        skipping `skip`."""
        ...

    async def count(self, caller: Caller, where: LogFilter, *, up_to: int) -> int:
        """How many visible entries match, counting no further than `up_to`."""
        ...

    async def by_request_id(self, caller: Caller, request_id: str) -> dict[str, Any] | None:
        """The gateway's entry for this request if visible, else a visible external one."""
        ...

    async def scan(self, resume: str | None, limit: int) -> tuple[list[LogRecord], str | None]:
        """Every stored entry once, `limit` at a time in the store's own order (for copying
        a store): the records after `resume` and the token to resume after them (None at the
        end). Tokens stay valid across restarts."""
        ...

    async def upkeep(self, now: datetime) -> int:
        """Retention (LOG_RETENTION_DAYS) and whatever the store keeps ready ahead; returns
        the number of entries that expired."""
        ...

    async def close(self) -> None:
        ...

    async def ping(self) -> None:
        """Raise unless the store answers (the service's /readyz)."""
        ...
