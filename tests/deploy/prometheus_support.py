"""What the Prometheus rules and the Grafana dashboard tests share: where the files are,
promtool, and which metric names exist.

A metric name exists when the code defines it (every `Counter(...)`, `Gauge(...)`,
`Histogram(...)`... of prometheus_client in our packages, read from the source so that no
module has to be imported), when RabbitMQ's rabbitmq_prometheus plugin serves it on the
endpoints deploy/prometheus/prometheus.yml scrapes, when Prometheus itself makes it (`up`), or
when a recording rule of deploy/prometheus/rules/ records it.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from tests.deploy.tools import ROOT, promtool, run

PROMETHEUS_DIR = ROOT / "deploy" / "prometheus"
RULES_DIR = PROMETHEUS_DIR / "rules"
RULE_TESTS_DIR = PROMETHEUS_DIR / "tests"
GRAFANA_DIR = ROOT / "deploy" / "grafana"
PACKAGES = ("contracts", "gateway", "auth_svc", "project_svc", "analytics_svc", "logging_svc")

# The series of a metric family as exposed (prometheus_client adds `_total` to a counter's
# name when it lacks it, and `_created` to counters, histograms and summaries).
SERIES_SUFFIXES = {
    "Counter": ("_total", "_created"),
    "Gauge": ("",),
    "Histogram": ("_bucket", "_count", "_sum", "_created"),
    "Summary": ("", "_count", "_sum", "_created"),
    "Info": ("_info",),
    "Enum": ("",),
}

# rabbitmq_prometheus 3.10 on the scraped endpoints (`curl 127.0.0.1:15692/metrics/detailed?
# family=queue_coarse_metrics&family=queue_consumer_count`, and /metrics for the node's own).
RABBITMQ_SERIES = frozenset({
    "rabbitmq_detailed_queue_messages_ready", "rabbitmq_detailed_queue_messages_unacked",
    "rabbitmq_detailed_queue_messages", "rabbitmq_detailed_queue_process_reductions_total",
    "rabbitmq_detailed_queue_consumers", "rabbitmq_build_info", "rabbitmq_identity_info",
    "rabbitmq_queues", "rabbitmq_consumers", "rabbitmq_connections", "rabbitmq_channels",
    "rabbitmq_queue_messages_ready", "rabbitmq_queue_messages_unacked",
    "rabbitmq_global_messages_received_total", "rabbitmq_global_messages_delivered_total",
    "rabbitmq_global_messages_dead_lettered_rejected_total",
    "rabbitmq_alarms_memory_used_watermark", "rabbitmq_alarms_free_disk_space_watermark",
})
# made by Prometheus for every scrape and alert
PROMETHEUS_SERIES = frozenset({"up", "scrape_duration_seconds", "ALERTS", "ALERTS_FOR_STATE"})


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


def code_series() -> set[str]:
    """The series our processes expose, from the prometheus_client metrics the code defines."""
    series = set()
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            series |= _defined_series(ast.parse(path.read_text(), str(path)))
    return series


def _defined_series(module: ast.Module) -> set[str]:
    # the names this module imported from prometheus_client, as it calls them
    kinds = {alias.asname or alias.name: alias.name
             for node in ast.walk(module)
             if isinstance(node, ast.ImportFrom) and node.module == "prometheus_client"
             for alias in node.names if alias.name in SERIES_SUFFIXES}
    series = set()
    for node in ast.walk(module):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                and node.func.id in kinds and node.args
                and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
            kind, name = kinds[node.func.id], node.args[0].value
            if kind == "Counter":
                name = name.removesuffix("_total")
            series |= {name + suffix for suffix in SERIES_SUFFIXES[kind]}
    return series


def known_series() -> set[str]:
    return code_series() | RABBITMQ_SERIES | PROMETHEUS_SERIES | recorded_names()


_STRING = re.compile(r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'|`[^`]*`')
_MATCHERS = re.compile(r"\{[^{}]*\}")
_LABEL_LIST = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
_RANGE = re.compile(r"\[[^\]]*\]")
_TOKEN = re.compile(r"(?P<number>\d[\w.]*)|(?P<name>[A-Za-z_:][\w:]*)(?P<call>\s*\()?")
_KEYWORDS = frozenset({"and", "or", "unless", "offset", "bool", "inf", "nan", "Inf", "NaN",
                       "group_left", "group_right"})  # the last two may come without a list


def metric_names_in(expression: str) -> set[str]:
    """The metric names a PromQL expression selects: what remains once strings, label
    matchers, label lists (`by (...)`, `on (...)`...), ranges, numbers, keywords and function
    or aggregation names are taken out."""
    text = _STRING.sub('""', expression)
    text = _MATCHERS.sub(" ", text)
    text = _LABEL_LIST.sub(" ", text)
    text = _RANGE.sub(" ", text)
    return {match["name"] for match in _TOKEN.finditer(text)
            if match["name"] and not match["call"] and match["name"] not in _KEYWORDS}
