"""Alert rules, alert events and the external alert bridge (docs/api.md section 9)."""

from __future__ import annotations

from typing import Any

from marshmallow import fields, validate

from contracts.schemas.common import limit_field
from contracts.validation import (
    JsonNumber,
    RequestSchema,
    StrictBoolean,
    TrimmedString,
    UtcDateTime,
    WholeNumber,
    between,
    length,
    message,
    pattern,
)

# Every name a client may send; the README's, and the original code's (docs/api.md section 9.1).
METRICS = ("request_count", "error_rate", "latency_p50", "latency_p95", "latency_p99",
           "uptime", "p95_latency", "request_rate", "error_count", "5xx_count", "avg_latency")
OPERATORS = ("gt", "gte", "lt", "lte", "eq")
SEVERITIES = ("info", "warning", "critical")


def _one_of(name: str, choices: tuple[str, ...], **kwargs: Any) -> fields.String:
    return fields.String(validate=validate.OneOf(choices, error=message(
        "invalid_enum_value", f"{name} must be one of {', '.join(choices)}")), **kwargs)


class _RuleFields(RequestSchema):
    """The fields of a rule without requirements or defaults (what PUT accepts)."""

    name = TrimmedString(validate=length("name", min=1, max=100))
    description = fields.String(validate=length("description", max=500))
    service = TrimmedString(validate=length("service", min=1, max=50))
    metric = _one_of("metric", METRICS)
    windowSeconds = WholeNumber(validate=between("windowSeconds", 10, 86_400))
    threshold = JsonNumber(allow_nan=False)
    operator = _one_of("operator", OPERATORS)
    enabled = StrictBoolean()
    coolDownSeconds = WholeNumber(validate=between("coolDownSeconds", 0, 86_400))
    severity = _one_of("severity", SEVERITIES, allow_none=True)
    projectId = fields.UUID(allow_none=True)


class AlertRulePatch(_RuleFields):
    pass


class AlertRuleBody(_RuleFields):
    name = TrimmedString(required=True, validate=length("name", min=1, max=100))
    description = fields.String(load_default="", validate=length("description", max=500))
    service = TrimmedString(required=True, validate=length("service", min=1, max=50))
    metric = _one_of("metric", METRICS, required=True)
    windowSeconds = WholeNumber(required=True, validate=between("windowSeconds", 10, 86_400))
    threshold = JsonNumber(required=True, allow_nan=False)
    operator = _one_of("operator", OPERATORS, required=True)
    enabled = StrictBoolean(load_default=True)
    coolDownSeconds = WholeNumber(load_default=300,
                                  validate=between("coolDownSeconds", 0, 86_400))
    severity = _one_of("severity", SEVERITIES, allow_none=True, load_default=None)
    projectId = fields.UUID(allow_none=True, load_default=None)


class MongoIdParams(RequestSchema):
    id = fields.String(required=True, validate=pattern(
        r"^[0-9a-f]{24}$", "id must be 24 lowercase hex characters"))


class AlertEventQuery(RequestSchema):
    acknowledged = fields.Boolean(truthy={"true"}, falsy={"false"})
    severity = _one_of("severity", SEVERITIES)
    service = TrimmedString(validate=length("service", min=1, max=100))
    # 'from' is a keyword: the attribute is from_, the wire name from
    from_ = UtcDateTime(data_key="from", attribute="from")
    to = UtcDateTime()
    limit = limit_field(20)
    offset = WholeNumber(load_default=0, validate=between("offset", 0, 1_000_000))


class AcknowledgeBody(RequestSchema):
    acknowledgedBy = TrimmedString(validate=length("acknowledgedBy", min=1, max=100))


class LowerCaseChoice(fields.String):
    """One of `choices`, compared and returned lower-cased (`WARNING` is `warning`)."""

    def __init__(self, name: str, choices: tuple[str, ...], **kwargs: Any) -> None:
        super().__init__(validate=validate.OneOf(choices, error=message(
            "invalid_enum_value", f"{name} must be one of {', '.join(choices)}")), **kwargs)

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        return super()._deserialize(value, attr, data, **kwargs).lower()


class AlertEmitBody(RequestSchema):
    type = fields.String(validate=length("type", max=100))
    severity = LowerCaseChoice("severity", SEVERITIES, required=True)
    message = fields.String(required=True, validate=length("message", min=1, max=1000))
    value = JsonNumber(allow_nan=False)
    threshold = JsonNumber(allow_nan=False)
    service = fields.String(validate=length("service", max=100))
