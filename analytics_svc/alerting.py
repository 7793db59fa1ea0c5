"""What an alert rule means (docs/api.md section 9.1), as pure functions: the value of a metric over
a window's rollup totals, the comparison, the severity and the message."""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping

from analytics_svc.store import Totals
from contracts.histogram import quantiles

# The original code's names mean what the README's do.
ALIASES = {"p95_latency": "latency_p95"}

OPERATORS: dict[str, Callable[[float, float], bool]] = {
    "gt": operator.gt, "gte": operator.ge, "lt": operator.lt, "lte": operator.le,
    "eq": operator.eq,
}

# Metrics whose severity compares value/threshold with 2 (the rest: value with 1.5 x).
ERROR_METRICS = frozenset({"error_rate", "error_count", "5xx_count"})
PERCENTILES = {"latency_p50": 0.5, "latency_p95": 0.95, "latency_p99": 0.99}


def needs_histogram(metric: str) -> bool:
    return ALIASES.get(metric, metric) in PERCENTILES


def measure(metric: str, totals: Totals, bins: Mapping[int, int], window_s: int) -> float:
    """The metric's value over a window (an empty window: 0, and 100 for uptime)."""
    name = ALIASES.get(metric, metric)
    requests = totals.requests
    if name == "request_count":
        return requests
    if name == "error_rate":
        return totals.percent(totals.errors)
    if name == "uptime":
        return totals.percent(requests - totals.server_errors) if requests else 100
    if name == "request_rate":
        return round(requests / window_s, 2)
    if name == "error_count":
        return totals.errors
    if name == "5xx_count":
        return totals.server_errors
    if name == "avg_latency":
        return totals.average_latency
    if name in PERCENTILES:
        (value,) = quantiles(bins, (PERCENTILES[name],), low=totals.latency_min,
                             high=totals.latency_max)
        return round(value, 2)
    raise ValueError(f"unknown metric {metric!r}")


def breached(value: float, operator_name: str, threshold: float) -> bool:
    return OPERATORS[operator_name](value, threshold)


def severity_of(metric: str, value: float, threshold: float, fixed: str | None) -> str:
    if fixed is not None:
        return fixed
    if ALIASES.get(metric, metric) in ERROR_METRICS:
        ratio = value / threshold if threshold > 0 else 1
        return "critical" if ratio >= 2 else "warning"
    return "critical" if value > 1.5 * threshold else "warning"


def message_of(severity: str, rule_name: str, metric: str, value: float,
               threshold: float) -> str:
    return (f"[{severity.upper()}] {rule_name}: {metric} = {js_number(value)} "
            f"(threshold: {js_number(threshold)})")


def js_number(value: float) -> str:
    """As JavaScript prints a number (the original's messages): 10, not 10.0."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)
