"""Analytics: the query all seven endpoints share, and their answers (docs/api.md section 8)."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from pydantic import MISSING, Field

from contracts.schemas.common import Answer, Moment
from contracts.validation import (
    JsonNumber,
    RequestModel,
    UtcDateTime,
    WholeNumber,
    between,
    checks,
    failure,
    one_of,
)

INTERVALS = ("hour", "day")


class AnalyticsQuery(RequestModel):
    since: UtcDateTime | MISSING = Field(MISSING, alias="from")
    to: UtcDateTime | MISSING = MISSING
    interval: Annotated[str, checks(one_of(
        "interval", INTERVALS, "interval must be hour or day"))] = "day"
    limit: Annotated[WholeNumber, checks(between("limit", 1, 100))] = 10
    project_id: UUID | MISSING = MISSING

    def model_post_init(self, _context: object) -> None:
        if self.since is not MISSING and self.to is not MISSING and self.to < self.since:
            raise failure("custom", "to must not be before from", "to")


# Averages and rates are the integer 0 where there is no traffic and a float (rounded to two
# decimals) otherwise; the answer keeps the number's kind, as the JSON bytes always had it.
Rounded = JsonNumber


class Summary(Answer):
    total_requests: int
    avg_latency: Rounded
    min_latency: float
    max_latency: float
    p95_latency: float
    error_rate: Rounded
    error_count: int
    total_errors: int
    # requests per status class present, e.g. {"2xx": 10, "4xx": 1}
    status_breakdown: dict[str, int]
    unique_users: int
    unique_endpoints: int


class RequestCount(Answer):
    date: Moment  # the UTC start of the hour or day
    count: int


class ErrorRate(Answer):
    total: int
    errors4xx: int = Field(alias="errors4xx")
    errors5xx: int = Field(alias="errors5xx")
    total_errors: int
    error_rate: Rounded


class Latency(Answer):
    p50: float
    p95: float
    p99: float
    avg: Rounded
    min: float
    max: float


class EndpointUse(Answer):
    method: str
    path: str
    count: int
    avg_latency: float


class UserUse(Answer):
    user_id: str
    count: int
    last_active: Moment | None


class KeyUse(Answer):
    api_key_id: str
    count: int
    last_used: Moment | None
