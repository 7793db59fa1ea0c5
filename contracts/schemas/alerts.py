"""Alert rules, alert events and the external alert bridge: requests and answers (docs/api.md
section 9)."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from pydantic import MISSING, AfterValidator, Field

from contracts.schemas.common import Answer, Id, Limit, Moment
from contracts.validation import (
    JsonNumber,
    QueryBoolean,
    RequestModel,
    StrictBoolean,
    Trimmed,
    UtcDateTime,
    WholeNumber,
    between,
    checks,
    length,
    one_of,
    pattern,
)

# Every name a client may send; the README's, and the original code's (docs/api.md section 9.1).
METRICS = ("request_count", "error_rate", "latency_p50", "latency_p95", "latency_p99",
           "uptime", "p95_latency", "request_rate", "error_count", "5xx_count", "avg_latency")
OPERATORS = ("gt", "gte", "lt", "lte", "eq")
SEVERITIES = ("info", "warning", "critical")

RuleName = Annotated[str, Trimmed, checks(length("name", min=1, max=100))]
RuleDescription = Annotated[str, checks(length("description", max=500))]
RuleService = Annotated[str, Trimmed, checks(length("service", min=1, max=50))]
Metric = Annotated[str, checks(one_of("metric", METRICS))]
WindowSeconds = Annotated[WholeNumber, checks(between("windowSeconds", 10, 86_400))]
Operator = Annotated[str, checks(one_of("operator", OPERATORS))]
CoolDownSeconds = Annotated[WholeNumber, checks(between("coolDownSeconds", 0, 86_400))]
Severity = Annotated[str, checks(one_of("severity", SEVERITIES))]


class AlertRuleBody(RequestModel):
    name: RuleName
    description: RuleDescription = ""
    service: RuleService
    metric: Metric
    window_seconds: WindowSeconds
    threshold: JsonNumber
    operator: Operator
    enabled: StrictBoolean = True
    cool_down_seconds: CoolDownSeconds = 300
    severity: Severity | None = None
    project_id: UUID | None = None


class AlertRulePatch(RequestModel):
    """The fields of a rule without requirements or defaults (what PUT accepts)."""

    name: RuleName | MISSING = MISSING
    description: RuleDescription | MISSING = MISSING
    service: RuleService | MISSING = MISSING
    metric: Metric | MISSING = MISSING
    window_seconds: WindowSeconds | MISSING = MISSING
    threshold: JsonNumber | MISSING = MISSING
    operator: Operator | MISSING = MISSING
    enabled: StrictBoolean | MISSING = MISSING
    cool_down_seconds: CoolDownSeconds | MISSING = MISSING
    severity: Severity | MISSING | None = MISSING
    project_id: UUID | MISSING | None = MISSING


class MongoIdParams(RequestModel):
    id: Annotated[str, checks(pattern(
        r"^[0-9a-f]{24}$", "id must be 24 lowercase hex characters"))]


class AlertEventQuery(RequestModel):
    acknowledged: QueryBoolean | MISSING = MISSING
    severity: Severity | MISSING = MISSING
    service: Annotated[str, Trimmed, checks(
        length("service", min=1, max=100))] | MISSING = MISSING
    since: UtcDateTime | MISSING = Field(MISSING, alias="from")
    to: UtcDateTime | MISSING = MISSING
    limit: Limit = 20
    offset: Annotated[WholeNumber, checks(between("offset", 0, 1_000_000))] = 0


class AcknowledgeBody(RequestModel):
    acknowledged_by: Annotated[str, Trimmed, checks(
        length("acknowledgedBy", min=1, max=100))] | MISSING = MISSING


class AlertEmitBody(RequestModel):
    type: Annotated[str, checks(length("type", max=100))] | MISSING = MISSING
    # compared and kept lower-cased: `WARNING` is `warning`
    severity: Annotated[str, AfterValidator(str.lower), checks(one_of("severity", SEVERITIES))]
    message: Annotated[str, checks(length("message", min=1, max=1000))]
    value: JsonNumber | MISSING = MISSING
    threshold: JsonNumber | MISSING = MISSING
    service: Annotated[str, checks(length("service", max=100))] | MISSING = MISSING


# --- answers ---------------------------------------------------------------------------------


class AlertRule(Answer):
    """`id` and `_id` carry the same value."""

    id: str
    mongo_id: str = Field(alias="_id")
    name: str
    description: str
    service: str
    metric: str
    window_seconds: int
    # as the client sent it: an integer stays an integer (`5`, not `5.0`)
    threshold: JsonNumber
    operator: str
    enabled: bool
    cool_down_seconds: int
    severity: str | None
    project_id: Id | None
    user_id: str
    created_at: Moment
    updated_at: Moment


class AlertEvent(Answer):
    """`id` and `_id` carry the same value."""

    id: str
    mongo_id: str = Field(alias="_id")
    rule_id: str
    rule_name: str
    service: str
    metric: str
    # numbers as the store keeps them (MongoDB keeps an integer, PostgreSQL a float)
    value: JsonNumber
    threshold: JsonNumber
    operator: str
    message: str
    severity: str
    timestamp: Moment
    acknowledged: bool
    acknowledged_by: str | None
    acknowledged_at: Moment | None
    user_id: str
    project_id: Id | None


class AlertEventPage(Answer):
    events: list[AlertEvent]
    total: int
    limit: int
    offset: int


class Received(Answer):
    received: bool
