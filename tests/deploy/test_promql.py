"""The PromQL reader (tests/deploy/promql.py) and the label checks built on it
(tests/deploy/prometheus_support.py): what they find in expressions whose answer is known, so
that the checks of the rules and the dashboard can fail."""

from __future__ import annotations

import pytest

from tests.deploy.prometheus_support import label_problems, output_labels, series_labels
from tests.deploy.promql import Aggregation, Binary, PromQLError, Selector, parse, walk

# a small world of series, as series_labels() would describe them
KNOWN = {
    "requests_total": frozenset({"job", "instance", "route", "status"}),
    "seconds_bucket": frozenset({"job", "instance", "route", "le"}),
    "breaker_open": frozenset({"job", "instance", "route_config"}),
    "route:requests:rate5m": frozenset({"route"}),
    "info": frozenset({"job", "instance", "version"}),
}


def test_precedence_and_clauses_after_the_arguments() -> None:
    tree = parse('a > 1 or b unless on (x) c * 2 ^ 3 and sum(d) by (y)')
    assert isinstance(tree, Binary) and tree.operator == "or"
    assert isinstance(tree.right, Binary) and tree.right.operator == "and"
    unless = tree.right.left
    assert isinstance(unless, Binary) and unless.operator == "unless"
    assert unless.matching.on is True and unless.matching.labels == ("x",)
    [aggregation] = [node for node in walk(tree) if isinstance(node, Aggregation)]
    assert (aggregation.grouping, aggregation.labels) == ("by", ("y",))


def test_ranges_subqueries_offsets_and_strings_are_read() -> None:
    tree = parse('max_over_time(rate(x{a=~"b}c", d!="e,f"}[5m] offset 1h)[30m:1m]) @ end()'
                 ' / ignoring (g) group_left (h) y - -1e3 + Inf')
    selectors = {node.name: node for node in walk(tree) if isinstance(node, Selector)}
    assert set(selectors) == {"x", "y"}
    assert [(m.label, m.operator, m.value) for m in selectors["x"].matchers] == [
        ("a", "=~", "b}c"), ("d", "!=", "e,f")]


@pytest.mark.parametrize("broken", ["sum by (a (x)", "x{a=1}", "rate(x[5m]", "x y", "by"])
def test_what_is_not_promql_is_refused(broken: str) -> None:
    with pytest.raises(PromQLError):
        parse(broken)


@pytest.mark.parametrize(("expression", "labels"), [
    ("sum by (route) (rate(requests_total[5m]))", {"route"}),
    ("sum without (instance) (requests_total)", {"job", "route", "status"}),
    ("sum(requests_total)", set()),
    ("topk by (route) (3, requests_total)", {"job", "instance", "route", "status"}),
    ('count_values("value", breaker_open)', {"value"}),
    ("histogram_quantile(0.9, sum by (route, le) (rate(seconds_bucket[5m])))", {"route"}),
    ('label_replace(breaker_open, "route", "$1", "route_config", "(.*)")',
     {"job", "instance", "route_config", "route"}),
    # one-to-one: the left side's labels; `on` keeps only its own
    ("requests_total / on (job, instance) group_left (version) info",
     {"job", "instance", "route", "status", "version"}),
    ("sum by (job, route) (requests_total) / on (job) group_left sum by (job) (breaker_open)",
     {"job", "route"}),
    ("requests_total * on (route) route:requests:rate5m", {"route"}),
    ("requests_total - ignoring (status) requests_total", {"job", "instance", "route"}),
    ("breaker_open > 0 and on (instance) requests_total", {"job", "instance", "route_config"}),
    ("breaker_open or route:requests:rate5m", {"job", "instance", "route_config", "route"}),
    ("vector(0)", set()),
    ("time() - 1", set()),
])
def test_an_answer_keeps_the_labels_prometheus_keeps(expression: str,
                                                     labels: set[str]) -> None:
    assert label_problems(expression, KNOWN) == []
    assert output_labels(expression, KNOWN) == labels


@pytest.mark.parametrize(("expression", "missing"), [
    ('rate(requests_total{stauts="500"}[5m])', "stauts"),  # a misspelt matcher
    ("sum by (rout) (rate(requests_total[5m]))", "rout"),
    ("sum(rate(requests_total[5m])) by (rout)", "rout"),
    ("sum without (route_config) (requests_total)", "route_config"),
    # a recorded series has only what its rule kept
    ('route:requests:rate5m{status="500"}', "status"),
    ("sum by (status) (route:requests:rate5m)", "status"),
    # both sides of `on` need the label
    ("breaker_open and on (route) requests_total", "route"),
    ("requests_total / ignoring (region) requests_total", "region"),
    # group_left takes its labels from the other side
    ("requests_total / on (job) group_left (route_config) info", "route_config"),
    # an aggregation dropped it
    ("sum by (job) (requests_total) and on (route) requests_total", "route"),
    ("histogram_quantile(0.9, sum by (route) (rate(seconds_bucket[5m])))", "le"),
    ('label_replace(requests_total, "x", "$1", "route_config", "(.*)")', "route_config"),
])
def test_a_label_the_series_lack_is_found(expression: str, missing: str) -> None:
    problems = label_problems(expression, KNOWN)
    assert problems and all(f"'{missing}'" in problem for problem in problems), problems


def test_the_code_s_metrics_come_with_their_label_names() -> None:
    """Read from the definitions (gateway/steps/access_log.py, gateway/forwarders/http.py,
    contracts/metrics.py), with the labels scraping and histograms add."""
    known = series_labels()
    assert known["gateway_request_seconds_bucket"] == {"route", "status", "le", "job", "instance"}
    assert known["gateway_request_seconds_count"] == {"route", "status", "job", "instance"}
    assert known["gateway_upstream_breaker_open"] == {"route_config", "job", "instance"}
    assert known["events_shed_total"] == {"routing_key", "job", "instance"}
    assert known["event_buffer_depth"] == {"job", "instance"}
    assert known["rabbitmq_detailed_queue_consumers"] == {"vhost", "queue", "job", "instance"}
    assert known["route:gateway_requests:rate5m"] == {"route"}
