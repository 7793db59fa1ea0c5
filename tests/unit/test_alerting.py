"""What an alert rule means (docs/api.md section 9.1): metric values, comparisons, severity and the
message, as pure functions."""

from __future__ import annotations

import pytest

from analytics_svc.alerting import breached, js_number, measure, message_of, severity_of
from analytics_svc.store import Totals
from contracts.histogram import histogram

LATENCIES = [10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0, 80.0, 90.0, 1000.0]
# 10 requests: 6 x 2xx, 3 x 4xx, 1 x 5xx
TOTALS = Totals(10, (0, 6, 0, 3, 1), sum(LATENCIES), 10.0, 1000.0)
EMPTY = Totals(0, (0, 0, 0, 0, 0), 0.0, 0.0, 0.0)


@pytest.mark.parametrize(("metric", "expected"), [
    ("request_count", 10), ("error_rate", 40.0), ("uptime", 90.0), ("request_rate", 0.17),
    ("error_count", 4), ("5xx_count", 1), ("avg_latency", 145.0),
])
def test_exact_metrics(metric, expected):
    assert measure(metric, TOTALS, {}, 60) == expected


@pytest.mark.parametrize(("metric", "exact"), [
    ("latency_p50", 50.0), ("latency_p95", 90.0), ("p95_latency", 90.0),
    ("latency_p99", 90.0)])
def test_percentile_metrics_come_from_the_histogram_within_one_percent(metric, exact):
    value = measure(metric, TOTALS, histogram(LATENCIES), 60)
    assert abs(value - exact) <= 0.01 * exact + 0.005


@pytest.mark.parametrize(("metric", "expected"), [
    ("request_count", 0), ("error_rate", 0), ("uptime", 100), ("request_rate", 0),
    ("error_count", 0), ("5xx_count", 0), ("avg_latency", 0), ("latency_p95", 0)])
def test_a_window_without_traffic(metric, expected):
    assert measure(metric, EMPTY, {}, 60) == expected


@pytest.mark.parametrize(("operator", "value", "threshold", "expected"), [
    ("gt", 5, 5, False), ("gt", 5.01, 5, True), ("gte", 5, 5, True), ("gte", 4.99, 5, False),
    ("lt", 4, 5, True), ("lt", 5, 5, False), ("lte", 5, 5, True), ("lte", 6, 5, False),
    ("eq", 5, 5.0, True), ("eq", 5.5, 5, False)])
def test_operators(operator, value, threshold, expected):
    assert breached(value, operator, threshold) is expected


@pytest.mark.parametrize(("metric", "value", "threshold", "expected"), [
    ("error_rate", 10, 5, "critical"), ("error_rate", 9.99, 5, "warning"),
    ("error_count", 3, 0, "warning"), ("5xx_count", 3, -1, "warning"),  # threshold <= 0
    ("5xx_count", 4, 2, "critical"),
    ("request_count", 16, 10, "critical"), ("request_count", 15, 10, "warning"),
    ("latency_p95", 151, 100, "critical"), ("uptime", 99, 99.5, "warning"),
])
def test_computed_severity(metric, value, threshold, expected):
    assert severity_of(metric, value, threshold, None) == expected


def test_a_rules_own_severity_wins():
    assert severity_of("error_rate", 100, 1, "info") == "info"


def test_message_reads_like_the_originals():
    assert message_of("critical", "Errors", "error_rate", 12.5, 5) == \
        "[CRITICAL] Errors: error_rate = 12.5 (threshold: 5)"
    assert message_of("warning", "Busy", "request_count", 10, 5.0) == \
        "[WARNING] Busy: request_count = 10 (threshold: 5)"
    assert js_number(0.1) == "0.1" and js_number(3.0) == "3" and js_number(-2) == "-2"
