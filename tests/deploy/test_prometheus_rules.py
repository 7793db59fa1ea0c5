"""deploy/prometheus: the rules pass `promtool check rules` and their unit tests
(`promtool test rules` on synthetic series, deploy/prometheus/tests/), every alert is complete
and tested both firing and not, every recording rule's value is checked, the rules name only
metrics that exist and only labels those metrics have (an alert's annotations too), and the
scrape configuration (compose's, and the local one `make observe` derives from it) passes
`promtool check config`."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path
from typing import Any

import yaml

from contracts.names import SERVICES
from tests.deploy.prometheus_support import (
    ANNOTATION_LABEL,
    PROMETHEUS_DIR,
    RULE_TESTS_DIR,
    known_series,
    label_problems,
    metric_names_in,
    output_labels,
    recorded_names,
    rule_files,
    rules,
    run_promtool,
    series_labels,
)
from tests.deploy.tools import COMPOSE_FILE, ROOT

SEVERITIES = {"critical", "warning"}


def alerts() -> list[dict[str, Any]]:
    return [rule for rule in rules() if "alert" in rule]


def rule_test_cases() -> list[dict[str, Any]]:
    return [case for path in sorted(RULE_TESTS_DIR.glob("*.yml"))
            for case in yaml.safe_load(path.read_text())["tests"]]


def test_rule_files_pass_promtool_check_rules() -> None:
    output = run_promtool("check", "rules", *rule_files())
    assert output.count("SUCCESS") == len(rule_files())


def test_rules_pass_their_promtool_unit_tests() -> None:
    test_files = sorted(RULE_TESTS_DIR.glob("*.yml"))
    assert test_files
    output = run_promtool("test", "rules", *test_files)
    assert output.count("SUCCESS") == len(test_files)


def test_every_rule_file_has_unit_tests() -> None:
    tested = {(path.parent / name).resolve()
              for path in RULE_TESTS_DIR.glob("*.yml")
              for name in yaml.safe_load(path.read_text())["rule_files"]}
    assert tested == {path.resolve() for path in rule_files()}


def test_every_alert_has_for_severity_and_annotations() -> None:
    assert alerts()
    for alert in alerts():
        name = alert["alert"]
        assert re.fullmatch(r"\d+[smh]", str(alert.get("for", ""))), f"{name}: no for:"
        assert alert.get("labels", {}).get("severity") in SEVERITIES, name
        annotations = alert.get("annotations", {})
        for key in ("summary", "description", "runbook"):
            assert annotations.get(key, "").strip(), f"{name}: no {key} annotation"
        # the runbook points at the alert's section of the README
        assert f"README.md#{name.lower()}" in annotations["runbook"], name
        assert f"### {name}" in (PROMETHEUS_DIR / "README.md").read_text(), name


def test_every_alert_is_tested_firing_and_not_firing() -> None:
    firing: set[str] = set()
    quiet: set[str] = set()
    for case in rule_test_cases():
        for check in case.get("alert_rule_test", []):
            (firing if check.get("exp_alerts") else quiet).add(check["alertname"])
    names = {alert["alert"] for alert in alerts()}
    assert names - firing == set(), "alerts never tested firing"
    assert names - quiet == set(), "alerts never tested not firing"


def test_every_recording_rule_value_is_checked() -> None:
    checked = {check["expr"].strip()
               for case in rule_test_cases() for check in case.get("promql_expr_test", [])
               if check.get("exp_samples")}
    assert recorded_names() - checked == set()


def test_rules_name_only_metrics_that_exist() -> None:
    known = known_series()
    for rule in rules():
        unknown = metric_names_in(rule["expr"]) - known
        assert not unknown, f"{rule.get('alert') or rule.get('record')}: unknown {unknown}"


def test_rules_use_only_labels_their_series_have() -> None:
    known = series_labels()
    for rule in rules():
        problems = label_problems(rule["expr"], known)
        assert not problems, f"{rule.get('alert') or rule.get('record')}: {problems}"


def test_alert_annotations_name_only_labels_the_alert_has() -> None:
    """`{{ $labels.x }}` of a label the expression does not keep renders as nothing."""
    known = series_labels()
    for alert in alerts():
        kept = output_labels(alert["expr"], known)
        for key, text in alert["annotations"].items():
            named = set(ANNOTATION_LABEL.findall(text))
            assert named <= kept, f"{alert['alert']} {key}: {named - kept} (has {sorted(kept)})"


def test_metric_names_in_finds_selected_series_only() -> None:
    expression = ('sum by (route) (rate(gateway_request_seconds_count{status=~"5.."}[5m]))'
                  ' / on (route) group_left route:gateway_requests:rate5m offset 1h'
                  ' > bool 0.5 and histogram_quantile(0.9, sum(rate(x_bucket{a="b c"}[1m])))')
    assert metric_names_in(expression) == {"gateway_request_seconds_count",
                                           "route:gateway_requests:rate5m", "x_bucket"}


def compose_config() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
    return loaded


def targets(config: dict[str, Any]) -> dict[str, list[str]]:
    return {job["job_name"]: [target for static in job["static_configs"]
                              for target in static["targets"]]
            for job in config["scrape_configs"]}


def test_compose_scrape_config_passes_promtool_check_config() -> None:
    run_promtool("check", "config", PROMETHEUS_DIR / "prometheus.yml")


def test_compose_scrape_targets_are_the_services_ports() -> None:
    compose = yaml.safe_load(COMPOSE_FILE.read_text())
    scraped = targets(compose_config())
    for info in SERVICES.values():
        assert scraped[info.public_name] == [f"{info.public_name}:{info.http_port}"]
    assert scraped["gateway"] == ["gateway:4000"]  # GATEWAY_STATUS_PORT's default
    for job, addresses in scraped.items():
        for address in addresses:
            assert address.rpartition(":")[0] in compose["services"], f"{job}: {address}"


def test_local_config_of_make_observe_loads_every_rule_file(tmp_path: Path) -> None:
    local = tmp_path / "prometheus.yml"
    # the default ports, as for `make run` (tests/conftest.py sets GATEWAY_STATUS_PORT=0)
    environ = {name: value for name, value in os.environ.items() if not name.endswith("_PORT")}
    subprocess.run(["bash", str(ROOT / "infra" / "observe.sh"), "config", str(local)],
                   check=True, cwd=ROOT, env=environ, timeout=60)
    output = run_promtool("check", "config", local)
    assert f"SUCCESS: {len(rule_files())} rule files found" in output
    config = yaml.safe_load(local.read_text())
    compose = targets(compose_config())
    assert {job: [address.rpartition(":")[2] for address in addresses]
            for job, addresses in targets(config).items()} == \
        {job: [address.rpartition(":")[2] for address in addresses]
         for job, addresses in compose.items()}
    assert all(address.startswith("127.0.0.1:")
               for addresses in targets(config).values() for address in addresses)
