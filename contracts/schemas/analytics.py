"""Analytics queries (docs/api.md section 8): one schema for all seven endpoints."""

from __future__ import annotations

from typing import Any

from marshmallow import ValidationError, fields, validate, validates_schema

from contracts.schemas.common import limit_field
from contracts.validation import RequestSchema, UtcDateTime, message

INTERVALS = ("hour", "day")
_BACKWARDS = message("custom", "to must not be before from")


class AnalyticsQuery(RequestSchema):
    # 'from' is a keyword: the attribute is from_, the wire name from
    from_ = UtcDateTime(data_key="from", attribute="from")
    to = UtcDateTime()
    interval = fields.String(load_default="day", validate=validate.OneOf(
        INTERVALS, error=message("invalid_enum_value", "interval must be hour or day")))
    limit = limit_field(10)
    projectId = fields.UUID()

    @validates_schema
    def _ordered(self, data: dict[str, Any], **_kwargs: Any) -> None:
        since, until = data.get("from"), data.get("to")
        if since is not None and until is not None and until < since:
            raise ValidationError(_BACKWARDS, field_name="to")
