"""deploy/grafana: Grafana cannot run here, so the dashboard is checked for what Grafana needs
(its JSON shape: panels with unique ids, a place on the grid, targets on the provisioned data
source), its provisioning for compose is checked against compose.yaml's mounts, and every
PromQL expression in it must parse (promtool checks it as a recording rule of a throw-away
rules file, Grafana's variables substituted) and name only metrics that exist, and only labels
those metrics have (in selectors, groupings, legends and the variables' queries)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

from tests.deploy.prometheus_support import (
    GRAFANA_DIR,
    LEGEND_LABEL,
    known_series,
    label_problems,
    metric_names_in,
    output_labels,
    run_promtool,
    series_labels,
)
from tests.deploy.tools import COMPOSE_FILE

DASHBOARD = GRAFANA_DIR / "dashboards" / "gateway.json"
DATASOURCES = GRAFANA_DIR / "provisioning" / "datasources" / "prometheus.yml"
DASHBOARD_PROVIDERS = GRAFANA_DIR / "provisioning" / "dashboards" / "gateway.yml"
GRID_COLUMNS = 24
PANEL_TYPES = {"row", "timeseries", "stat", "gauge", "bargauge", "table", "text", "heatmap"}
# Grafana's own variables, as a query would see them with a 15 s scrape interval
BUILT_IN_VARIABLES = {"$__rate_interval": "1m", "$__interval": "15s", "$__range": "1h"}
# label_values(metric, label) of a query variable
LABEL_VALUES = re.compile(r"label_values\(\s*([A-Za-z_:][\w:]*)\s*,\s*(\w+)\s*\)")


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def panels() -> list[dict[str, Any]]:
    """Every panel, those inside collapsed rows too."""
    found = []
    for panel in dashboard()["panels"]:
        found.append(panel)
        found.extend(panel.get("panels", []))
    return found


def provisioned_datasource() -> dict[str, Any]:
    (datasource,) = yaml.safe_load(DATASOURCES.read_text())["datasources"]
    loaded: dict[str, Any] = datasource
    return loaded


def expressions() -> list[tuple[str, str]]:
    """(where, PromQL) for every panel target and every annotation query."""
    return [(where, expression) for where, expression, _ in labelled_expressions()]


def labelled_expressions() -> list[tuple[str, str, str]]:
    """(where, PromQL, what names its series) for every panel target (its legend) and every
    annotation query (its title)."""
    found = [(f"panel {panel['id']} target {target['refId']}", target["expr"],
              target.get("legendFormat", ""))
             for panel in panels() for target in panel.get("targets", [])]
    found += [(f"annotation {annotation['name']}", annotation["expr"],
               annotation.get("titleFormat", ""))
              for annotation in dashboard()["annotations"]["list"] if "expr" in annotation]
    return found


def substituted(expression: str) -> str:
    """The expression as Prometheus receives it when every variable is set to All."""
    values = dict(BUILT_IN_VARIABLES)
    for variable in dashboard()["templating"]["list"]:
        values[f"${variable['name']}"] = variable.get("allValue") or ".*"
    # longest first: $__rate_interval before $__range
    for name in sorted(values, key=len, reverse=True):
        expression = expression.replace(name, values[name])
    return expression


def test_dashboard_has_grafanas_shape() -> None:
    board = dashboard()
    assert isinstance(board["schemaVersion"], int) and board["schemaVersion"] >= 36
    assert board["uid"] and board["title"]
    ids = [panel["id"] for panel in panels()]
    assert all(isinstance(panel_id, int) for panel_id in ids)
    assert len(ids) == len(set(ids)), "panel ids repeat"
    for panel in panels():
        assert panel["type"] in PANEL_TYPES, panel["id"]
        grid = panel["gridPos"]
        assert all(isinstance(grid[key], int) for key in ("h", "w", "x", "y")), panel["id"]
        assert grid["w"] > 0 and grid["h"] > 0 and grid["x"] >= 0 and grid["y"] >= 0
        assert grid["x"] + grid["w"] <= GRID_COLUMNS, panel["id"]
        if panel["type"] == "row":
            assert "targets" not in panel, panel["id"]
            continue
        assert panel["title"], panel["id"]
        assert panel["targets"], panel["id"]
        refs = [target["refId"] for target in panel["targets"]]
        assert len(refs) == len(set(refs)), panel["id"]
        assert all(target["expr"].strip() for target in panel["targets"]), panel["id"]


def test_panels_do_not_overlap() -> None:
    taken: dict[tuple[int, int], int] = {}
    for panel in dashboard()["panels"]:
        grid = panel["gridPos"]
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                assert (x, y) not in taken, f"panels {taken[x, y]} and {panel['id']} overlap"
                taken[x, y] = panel["id"]


def test_every_query_uses_the_provisioned_datasource() -> None:
    datasource = provisioned_datasource()
    assert datasource["type"] == "prometheus"
    expected = {"type": "prometheus", "uid": datasource["uid"]}
    for panel in panels():
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == expected, panel["id"]
        for target in panel["targets"]:
            assert target["datasource"] == expected, (panel["id"], target["refId"])
    for variable in dashboard()["templating"]["list"]:
        assert variable["datasource"] == expected, variable["name"]
    for annotation in dashboard()["annotations"]["list"]:
        if "expr" in annotation:
            assert annotation["datasource"] == expected, annotation["name"]


def test_provisioning_matches_compose_mounts() -> None:
    services = yaml.safe_load(COMPOSE_FILE.read_text())["services"]
    host, _, port = provisioned_datasource()["url"].removeprefix("http://").partition(":")
    assert host in services and port == "9090"
    mounts = {source.rstrip("/"): target.rstrip("/")
              for source, target, *_ in (volume.split(":")
                                         for volume in services["grafana"]["volumes"])}
    assert mounts["./deploy/grafana/provisioning"] == "/etc/grafana/provisioning"
    (provider,) = yaml.safe_load(DASHBOARD_PROVIDERS.read_text())["providers"]
    assert provider["type"] == "file"
    assert mounts["./deploy/grafana/dashboards"] == provider["options"]["path"].rstrip("/")
    assert DASHBOARD.parent == GRAFANA_DIR / "dashboards"


def test_every_expression_parses_with_promtool(tmp_path: Path) -> None:
    found = expressions()
    rules = []
    for index, (where, expression) in enumerate(found):
        query = substituted(expression)
        assert "$" not in query, f"{where}: a variable is left in {query!r}"
        rules.append({"record": f"dashboard:expression:{index}", "expr": query})
    # JSON is YAML: promtool reads it as a rules file
    rules_file = tmp_path / "dashboard_rules.yml"
    rules_file.write_text(json.dumps({"groups": [{"name": "dashboard", "rules": rules}]}))
    output = run_promtool("check", "rules", rules_file)
    assert f"SUCCESS: {len(found)} rules found" in output


def test_every_expression_names_only_metrics_that_exist() -> None:
    known = known_series()
    for where, expression in expressions():
        unknown = metric_names_in(substituted(expression)) - known
        assert not unknown, f"{where}: unknown metrics {unknown}"
    for variable in dashboard()["templating"]["list"]:
        [(metric, _)] = LABEL_VALUES.findall(variable["query"])
        assert metric in known, variable["name"]


def test_every_expression_uses_only_labels_its_series_have() -> None:
    known = series_labels()
    for where, expression, legend in labelled_expressions():
        query = substituted(expression)
        assert label_problems(query, known) == [], where
        # a legend's {{label}} of a label the answer does not keep shows nothing
        named = set(LEGEND_LABEL.findall(legend))
        kept = output_labels(query, known)
        assert named <= kept, f"{where}: legend {legend!r} names {named - kept}"
    for variable in dashboard()["templating"]["list"]:
        [(metric, label)] = LABEL_VALUES.findall(variable["query"])
        assert label in known[metric], f"variable {variable['name']}: {metric} has no {label}"


def test_dashboard_shows_what_the_issue_asks_for() -> None:
    """Requests, errors, latency percentiles, cache hit ratio, limiter decisions, broker
    backlog and per-service RPC latency: each by the series it must read."""
    used = set().union(*(metric_names_in(substituted(expression))
                         for _, expression in expressions()))
    assert {
        "gateway_request_seconds_count",  # requests
        "route:gateway_request_errors:ratio_rate5m",  # errors
        "route:gateway_request_seconds:p99_rate5m",  # latency percentiles
        "gateway_cache_lookups_total",  # cache hit ratio
        "gateway_rate_limit_decisions_total",  # limiter decisions
        "rabbitmq_detailed_queue_messages_ready",  # broker backlog
        "rpc_server_seconds_bucket",  # per-service RPC latency
    } <= used
