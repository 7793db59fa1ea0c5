"""What the Prometheus rules and the Grafana dashboard tests share: where the files are,
promtool, and which series exist with which labels.

A series exists when the code defines it (every `Counter(...)`, `Gauge(...)`,
`Histogram(...)`... of prometheus_client in our packages, with its label names, read from the
source so that no module has to be imported), when RabbitMQ's rabbitmq_prometheus plugin
serves it on the endpoints deploy/prometheus/prometheus.yml scrapes, when Prometheus itself
makes it (`up`, `ALERTS`), or when a recording rule of deploy/prometheus/rules/ records it
(its labels: what the rule's expression keeps). Expressions are read by tests/deploy/promql.py.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml

from tests.deploy.promql import (
    SET_OPERATORS,
    Aggregation,
    Binary,
    Call,
    Expression,
    Modified,
    Number,
    Selector,
    String,
    Unary,
    parse,
    walk,
)
from tests.deploy.tools import ROOT, promtool, run

PROMETHEUS_DIR = ROOT / "deploy" / "prometheus"
RULES_DIR = PROMETHEUS_DIR / "rules"
RULE_TESTS_DIR = PROMETHEUS_DIR / "tests"
GRAFANA_DIR = ROOT / "deploy" / "grafana"
PACKAGES = ("contracts", "gateway", "auth_svc", "project_svc", "analytics_svc", "logging_svc")

Labels = frozenset[str]

# Every scrape adds these to every series it takes in (compose's static targets and the
# Kubernetes scrape configurations alike); rules and dashboard may rely on no other target
# label, so that they work under both.
TARGET_LABELS: Labels = frozenset({"job", "instance"})

# The series of a metric family as exposed, with the labels each adds (prometheus_client adds
# `_total` to a counter's name when it lacks it, and `_created` to counters, histograms and
# summaries).
SERIES_SUFFIXES: dict[str, dict[str, Labels]] = {
    "Counter": {"_total": frozenset(), "_created": frozenset()},
    "Gauge": {"": frozenset()},
    "Histogram": {"_bucket": frozenset({"le"}), "_count": frozenset(), "_sum": frozenset(),
                  "_created": frozenset()},
    "Summary": {"": frozenset({"quantile"}), "_count": frozenset(), "_sum": frozenset(),
                "_created": frozenset()},
    "Info": {"_info": frozenset()},
    "Enum": {"": frozenset()},
}

# rabbitmq_prometheus 3.10 on the scraped endpoints, with their labels (`curl
# 127.0.0.1:15692/metrics/detailed?family=queue_coarse_metrics&family=queue_consumer_count`,
# and /metrics for the node's own).
_QUEUE: Labels = frozenset({"vhost", "queue"})
RABBITMQ_SERIES: dict[str, Labels] = {
    "rabbitmq_detailed_queue_messages_ready": _QUEUE,
    "rabbitmq_detailed_queue_messages_unacked": _QUEUE,
    "rabbitmq_detailed_queue_messages": _QUEUE,
    "rabbitmq_detailed_queue_process_reductions_total": _QUEUE,
    "rabbitmq_detailed_queue_consumers": _QUEUE,
    "rabbitmq_build_info": frozenset({"rabbitmq_version", "prometheus_plugin_version",
                                      "prometheus_client_version", "erlang_version"}),
    "rabbitmq_identity_info": frozenset({"rabbitmq_node", "rabbitmq_cluster",
                                         "rabbitmq_cluster_permanent_id"}),
    "rabbitmq_queues": frozenset(), "rabbitmq_consumers": frozenset(),
    "rabbitmq_connections": frozenset(), "rabbitmq_channels": frozenset(),
    "rabbitmq_queue_messages_ready": frozenset(), "rabbitmq_queue_messages_unacked": frozenset(),
    "rabbitmq_global_messages_received_total": frozenset({"protocol"}),
    "rabbitmq_global_messages_delivered_total": frozenset({"protocol", "queue_type"}),
    "rabbitmq_global_messages_dead_lettered_rejected_total": frozenset(
        {"queue_type", "dead_letter_strategy"}),
    "rabbitmq_alarms_memory_used_watermark": frozenset(),
    "rabbitmq_alarms_free_disk_space_watermark": frozenset(),
}
# made by Prometheus for every scrape (with the target's labels only)
SCRAPE_SERIES = ("up", "scrape_duration_seconds")
# functions whose answer is a scalar, not a vector
SCALAR_FUNCTIONS = frozenset({"scalar", "time", "pi"})
# aggregations that keep their input's series (and labels): `by` only groups them
SELECTING_AGGREGATIONS = frozenset({"topk", "bottomk", "limitk", "limit_ratio"})
# `{{ $labels.route }}` in an alert's annotations, `{{route}}` in a dashboard legend
ANNOTATION_LABEL = re.compile(r"\$labels\.(\w+)")
LEGEND_LABEL = re.compile(r"\{\{\s*(\w+)\s*\}\}")


def run_promtool(*args: str | Path) -> str:
    """promtool's output; the test fails with all of it when promtool does."""
    result = run(promtool(), *args)
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"promtool {' '.join(map(str, args))} failed:\n{output}"
    return output


def rule_files() -> list[Path]:
    return sorted(RULES_DIR.glob("*.yml"))


def rules() -> Iterator[dict[str, Any]]:
    """Every rule (recording and alerting) of every group of every rule file."""
    for path in rule_files():
        for group in yaml.safe_load(path.read_text())["groups"]:
            yield from group["rules"]


def recorded_names() -> set[str]:
    return {rule["record"] for rule in rules() if "record" in rule}


def code_series() -> dict[str, Labels]:
    """The series our processes expose, with their label names (those of the code's
    definitions; scraping adds TARGET_LABELS)."""
    series: dict[str, Labels] = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            for name, labels in _defined_series(ast.parse(path.read_text(), str(path))):
                series[name] = series.get(name, frozenset()) | labels
    return series


def _defined_series(module: ast.Module) -> Iterator[tuple[str, Labels]]:
    # the names this module imported from prometheus_client, as it calls them
    kinds = {alias.asname or alias.name: alias.name
             for node in ast.walk(module)
             if isinstance(node, ast.ImportFrom) and node.module == "prometheus_client"
             for alias in node.names if alias.name in SERIES_SUFFIXES}
    for node in ast.walk(module):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                and node.func.id in kinds and node.args
                and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
            kind, name = kinds[node.func.id], node.args[0].value
            if kind == "Counter":
                name = name.removesuffix("_total")
            labels = _label_names(node)
            for suffix, added in SERIES_SUFFIXES[kind].items():
                yield name + suffix, labels | added


def _label_names(call: ast.Call) -> Labels:
    """A metric definition's `labelnames` (its third positional argument or the keyword), as
    literal strings: a definition whose labels are computed cannot be checked, and fails."""
    given = call.args[2] if len(call.args) > 2 else next(
        (keyword.value for keyword in call.keywords if keyword.arg == "labelnames"), None)
    if given is None:
        return frozenset()
    try:
        names = ast.literal_eval(given)
    except ValueError:
        names = None
    assert isinstance(names, list | tuple) and all(isinstance(n, str) for n in names), \
        f"the labelnames of the metric on line {call.lineno} are not a literal list of strings"
    return frozenset(names)


def series_labels() -> dict[str, Labels]:
    """Every series that exists, with every label it may have."""
    scraped = {**code_series(), **RABBITMQ_SERIES, **dict.fromkeys(SCRAPE_SERIES, frozenset())}
    known = {name: labels | TARGET_LABELS for name, labels in scraped.items()}
    all_rules = list(rules())
    alerts = [rule for rule in all_rules if "alert" in rule]
    # A recording rule may read another one's series: repeat until nothing changes.
    for _ in all_rules:
        before = dict(known)
        for rule in all_rules:
            if "record" in rule:
                known[rule["record"]] = output_labels(rule["expr"], known)
        known["ALERTS"] = frozenset({"alertname", "alertstate"}).union(
            *(output_labels(alert["expr"], known) | set(alert.get("labels", {}))
              for alert in alerts))
        if known == before:
            break
    return known


def known_series() -> set[str]:
    return set(series_labels())


def metric_names_in(expression: str) -> set[str]:
    """The metric names a PromQL expression selects."""
    return {node.name for node in walk(parse(expression))
            if isinstance(node, Selector) and node.name}


def output_labels(expression: str, known: Mapping[str, Labels]) -> Labels:
    """The labels the series of an expression's answer may have (none for a scalar)."""
    return _Labelling(known).labels_of(parse(expression)) or frozenset()


def label_problems(expression: str, known: Mapping[str, Labels]) -> list[str]:
    """Each label name the expression uses that the series it applies to do not have: in a
    selector's matchers, in `by (...)` and `without (...)`, in `on (...)` (both sides need
    it), `ignoring (...)`, `group_left (...)` / `group_right (...)` (the other side's), and
    `le` for histogram_quantile."""
    labelling = _Labelling(known)
    labelling.labels_of(parse(expression))
    return labelling.problems


class _Labelling:
    """Works out, bottom up, the labels each part of an expression may have (None: a scalar),
    as Prometheus builds an answer's labels (promql/engine.go: aggregations keep their
    grouping labels, one-to-one matching keeps the left side's, `on` only the listed ones,
    `group_*` adds the listed ones from the other side), and notes each label used where the
    series it applies to cannot have it."""

    def __init__(self, known: Mapping[str, Labels]) -> None:
        self._known = known
        self.problems: list[str] = []

    def _require(self, labels: tuple[str, ...] | Labels, have: Labels, where: str) -> None:
        self.problems += [f"{where}: no label {label!r} (only {sorted(have)})"
                          for label in labels if label not in have]

    def labels_of(self, node: Expression) -> Labels | None:
        if isinstance(node, Number | String):
            return None
        if isinstance(node, Unary | Modified):
            return self.labels_of(node.operand)
        if isinstance(node, Selector):
            return self._selector(node)
        if isinstance(node, Call):
            return self._call(node)
        if isinstance(node, Aggregation):
            return self._aggregation(node)
        return self._binary(node)

    def _selector(self, node: Selector) -> Labels:
        have = self._known.get(node.name, frozenset())
        self._require(tuple(m.label for m in node.matchers if m.label != "__name__"), have,
                      f"{node.name}{{...}}")
        return have

    def _call(self, node: Call) -> Labels | None:
        args = [self.labels_of(arg) for arg in node.args]
        vectors = [labels for labels in args if labels is not None]
        if node.function == "histogram_quantile":
            buckets = args[1] or frozenset()
            self._require(("le",), buckets, "histogram_quantile")
            return buckets - {"le"}
        if node.function in ("label_replace", "label_join"):
            # label_replace(v, dst, replacement, src, regex); label_join(v, dst, sep, src...)
            strings = [arg.value for arg in node.args if isinstance(arg, String)]
            sources = strings[2:3] if node.function == "label_replace" else strings[2:]
            self._require(tuple(sources), vectors[0], node.function)
            return vectors[0] | {strings[0]}
        if node.function in SCALAR_FUNCTIONS:
            return None
        if node.function in ("vector", "absent", "absent_over_time"):
            return frozenset()
        return vectors[0] if vectors else frozenset()

    def _aggregation(self, node: Aggregation) -> Labels:
        args = [self.labels_of(arg) for arg in node.args]
        have = args[-1] or frozenset()
        self._require(node.labels, have, f"{node.operator} {node.grouping}")
        if node.operator in SELECTING_AGGREGATIONS:
            return have
        added = frozenset({node.args[0].value}) if (
            node.operator == "count_values" and isinstance(node.args[0], String)) else frozenset()
        if node.grouping == "by":
            return frozenset(node.labels) | added
        if node.grouping == "without":
            return have - set(node.labels) | added
        return added

    def _binary(self, node: Binary) -> Labels | None:
        left, right = self.labels_of(node.left), self.labels_of(node.right)
        if left is None or right is None:
            return right if left is None else left
        matching = node.matching
        if matching.on:
            self._require(matching.labels, left, f"left of {node.operator} on")
            self._require(matching.labels, right, f"right of {node.operator} on")
        elif matching.on is False:
            self._require(matching.labels, left | right, f"{node.operator} ignoring")
        if matching.group == "group_left":
            self._require(matching.include, right, "group_left")
            return left | set(matching.include)
        if matching.group == "group_right":
            self._require(matching.include, left, "group_right")
            return right | set(matching.include)
        if node.operator == "or":
            return left | right
        if node.operator in SET_OPERATORS:
            return left
        if matching.on:
            return left & set(matching.labels)
        return left - set(matching.labels)
