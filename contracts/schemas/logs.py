"""Log ingestion and log queries: requests and answers (docs/api.md section 7.2)."""

from __future__ import annotations

from typing import Annotated, Literal
from uuid import UUID

from pydantic import MISSING, Field

from contracts.schemas.common import Answer, Limit
from contracts.validation import (
    JsonNumber,
    RequestModel,
    StrictWholeNumber,
    Trimmed,
    UtcDateTime,
    WholeNumber,
    at_least,
    between,
    checks,
    length,
    one_of,
)

MAX_BATCH = 1000
SOURCES = ("gateway", "external")


def _text(field: str, *, min: int | None = None, max: int) -> object:
    return checks(length(field, min=min, max=max))


class IngestError(RequestModel):
    code: Annotated[str, _text("code", max=200)]
    message: Annotated[str, _text("message", max=2000)]
    stack: Annotated[str, _text("stack", max=20_000)] | None = None


class LogIngest(RequestModel):
    """One external log entry; `source`, `projectId`, `ownerId`, `route` and `traceId` are
    never taken from clients (unknown fields are dropped)."""

    request_id: UUID
    timestamp: UtcDateTime | None = None
    method: Annotated[str, _text("method", min=1, max=10)]
    path: Annotated[str, _text("path", min=1, max=2000)]
    status_code: Annotated[StrictWholeNumber, checks(between("statusCode", 100, 599))]
    latency: Annotated[JsonNumber, checks(at_least("latency", 0))]
    ip: Annotated[str, _text("ip", max=45)]
    user_id: Annotated[str, _text("userId", max=100)] | None = None
    api_key_id: Annotated[str, _text("apiKeyId", max=100)] | None = None
    user_agent: Annotated[str, _text("userAgent", max=500)] = ""
    content_length: Annotated[StrictWholeNumber, checks(
        between("contentLength", 0, 2**53))] = 0
    error: IngestError | None = None


class LogListQuery(RequestModel):
    """Paging (docs/api.md section 7.2): `page` (page * limit ≤ 10,000) or `cursor` (a previous
    answer's `nextCursor`), not both; without either, the first page."""

    page: Annotated[WholeNumber, checks(between("page", 1, 10_000))] | MISSING = MISSING
    cursor: Annotated[str, _text("cursor", min=1, max=200)] | MISSING = MISSING
    limit: Limit = 20
    user_id: Annotated[str, Trimmed, _text("userId", min=1, max=100)] | MISSING = MISSING
    status_code: Annotated[WholeNumber, checks(
        between("statusCode", 100, 599))] | MISSING = MISSING
    method: Annotated[str, Trimmed, _text("method", min=1, max=10)] | MISSING = MISSING
    since: UtcDateTime | MISSING = Field(MISSING, alias="from")
    to: UtcDateTime | MISSING = MISSING
    source: Annotated[str, checks(one_of(
        "source", SOURCES, "source must be gateway or external"))] | MISSING = MISSING
    project_id: UUID | MISSING = MISSING


class RequestIdParams(RequestModel):
    request_id: UUID


# --- answers ---------------------------------------------------------------------------------


class LogError(Answer):
    code: str
    message: str
    stack: str | None


class LogEntry(Answer):
    mongo_id: str = Field(alias="_id")
    request_id: str
    timestamp: str
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
    error: LogError | None
    # the W3C trace id the gateway served the request in; null for external entries
    trace_id: str | None
    source: Literal["gateway", "external"]


class LogPage(Answer):
    """`total` is exact up to 10,000 (`totalExact`), then 10,000; `nextCursor` continues
    newest first from this page's last entry (null on the last page); a cursor's answer has
    `page: null`."""

    entries: list[LogEntry]
    total: int
    total_exact: bool
    page: int | None
    limit: int
    total_pages: int
    next_cursor: str | None
