"""Log ingestion and log queries (docs/api.md section 7.2)."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from contracts.schemas.common import limit_field
from contracts.validation import (
    JsonNumber,
    RequestSchema,
    TrimmedString,
    UtcDateTime,
    WholeNumber,
    between,
    length,
    message,
)

MAX_BATCH = 1000
SOURCES = ("gateway", "external")


class IngestError(RequestSchema):
    code = fields.String(required=True, validate=length("code", max=200))
    message = fields.String(required=True, validate=length("message", max=2000))
    stack = fields.String(allow_none=True, load_default=None,
                          validate=length("stack", max=20_000))


class LogIngest(RequestSchema):
    """One external log entry; `source`, `projectId`, `ownerId` and `route` are never taken
    from clients (unknown fields are dropped)."""

    requestId = fields.UUID(required=True)
    timestamp = UtcDateTime(load_default=None)
    method = fields.String(required=True, validate=length("method", min=1, max=10))
    path = fields.String(required=True, validate=length("path", min=1, max=2000))
    statusCode = WholeNumber(required=True, strict=True,
                             validate=between("statusCode", 100, 599))
    latency = JsonNumber(required=True, allow_nan=False, validate=validate.Range(
        min=0, error=message("too_small", "latency must be at least 0")))
    ip = fields.String(required=True, validate=length("ip", max=45))
    userId = fields.String(allow_none=True, load_default=None, validate=length("userId", max=100))
    apiKeyId = fields.String(allow_none=True, load_default=None,
                             validate=length("apiKeyId", max=100))
    userAgent = fields.String(load_default="", validate=length("userAgent", max=500))
    contentLength = WholeNumber(load_default=0, strict=True, validate=between(
        "contentLength", 0, 2**53))
    error = fields.Nested(IngestError, allow_none=True, load_default=None)


class LogListQuery(RequestSchema):
    """Paging (docs/api.md section 7.2): `page` (page * limit ≤ 10,000) or `cursor` (a previous
    answer's `nextCursor`), not both; without either, the first page."""

    page = WholeNumber(validate=between("page", 1, 10_000))
    cursor = fields.String(validate=length("cursor", min=1, max=200))
    limit = limit_field(20)
    userId = TrimmedString(validate=length("userId", min=1, max=100))
    statusCode = WholeNumber(validate=between("statusCode", 100, 599))
    method = TrimmedString(validate=length("method", min=1, max=10))
    # 'from' is a keyword: the attribute is from_, the wire name from
    from_ = UtcDateTime(data_key="from", attribute="from")
    to = UtcDateTime()
    source = fields.String(validate=validate.OneOf(SOURCES, error=message(
        "invalid_enum_value", "source must be gateway or external")))
    projectId = fields.UUID()


class RequestIdParams(RequestSchema):
    requestId = fields.UUID(required=True)


class LogErrorOut(Schema):
    code = fields.String()
    message = fields.String()
    stack = fields.String(allow_none=True)


class LogEntryOut(Schema):
    _id = fields.String(data_key="_id")
    requestId = fields.String()
    timestamp = fields.String()
    method = fields.String()
    path = fields.String()
    route = fields.String(allow_none=True)
    statusCode = fields.Integer()
    latency = fields.Float()
    ip = fields.String()
    userId = fields.String(allow_none=True)
    apiKeyId = fields.String(allow_none=True)
    projectId = fields.String(allow_none=True)
    ownerId = fields.String(allow_none=True)
    userAgent = fields.String()
    contentLength = fields.Integer()
    error = fields.Nested(LogErrorOut, allow_none=True)
    source = fields.String()


class LogPage(Schema):
    """`total` is exact up to 10,000 (`totalExact`), then 10,000; `nextCursor` continues
    newest first from this page's last entry (null on the last page); a cursor's answer has
    `page: null`."""

    entries = fields.List(fields.Nested(LogEntryOut))
    total = fields.Integer()
    totalExact = fields.Boolean()
    page = fields.Integer(allow_none=True)
    limit = fields.Integer()
    totalPages = fields.Integer()
    nextCursor = fields.String(allow_none=True)
