"""deploy/prometheus/kubernetes: on Kubernetes, Prometheus scrapes what the rules and the
dashboard read, under the jobs of compose's configuration (the process's name, `rabbitmq`,
`rabbitmq-queues`), with the same paths and parameters: from the plain configuration
(kubernetes_sd_configs) and from the Prometheus Operator's PodMonitors alike.

No cluster discovers anything here, Debian's promtool is built without Kubernetes discovery,
and the Operator's CRDs cannot be had offline. So: promtool checks the plain configuration with
its discovery blocks swapped for static ones (everything else: relabeling, paths, parameters,
rule files), and the targets each form makes of the pods the overlays render and of the
RabbitMQ Cluster Operator's pods are worked out by tests/deploy/relabel.py (for the PodMonitors,
after the relabeling the Operator generates for them).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.prometheus_support import (
    PROMETHEUS_DIR,
    TARGET_LABELS,
    rule_files,
    run_promtool,
)
from tests.deploy.relabel import Labels, Pod, sanitized, scrape_targets
from tests.deploy.tools import KUBERNETES, OVERLAYS, of_kind, run

SCRAPE_DIR = PROMETHEUS_DIR / "kubernetes"
PLAIN_CONFIG = SCRAPE_DIR / "prometheus.yml"
MONITORS = SCRAPE_DIR / "monitors.yaml"
RULES_SCRIPT = SCRAPE_DIR / "prometheus-rules.sh"
NAME_LABEL = "app.kubernetes.io/name"


def yaml_file(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def namespace_of(overlay: str) -> str:
    [namespace] = of_kind(overlay, "Namespace")
    name: str = namespace["metadata"]["name"]
    return name


def platform_pods(overlay: str) -> list[Pod]:
    """A pod of each Deployment the overlay renders, as discovery would see it."""
    pods = []
    for index, deployment in enumerate(of_kind(overlay, "Deployment")):
        template = deployment["spec"]["template"]
        ports = [(container["name"], port["name"], port["containerPort"])
                 for container in template["spec"]["containers"]
                 for port in container.get("ports", [])]
        pods.append(Pod(deployment["metadata"]["namespace"],
                        f"{deployment['metadata']['name']}-0", template["metadata"]["labels"],
                        ports, f"10.0.0.{index + 1}"))
    return pods


def rabbitmq_pods(namespace: str) -> list[Pod]:
    """The pods the RabbitMQ Cluster Operator makes of engines/rabbitmq.yaml's cluster: named
    <cluster>-server-<n>, labelled as its internal/metadata/label.go does, container `rabbitmq`
    with the ports of its internal/resource/statefulset.go."""
    [cluster] = [item for item in yaml.safe_load_all((KUBERNETES / "engines" / "rabbitmq.yaml")
                                                    .read_text()) if item]
    name = cluster["metadata"]["name"]
    labels = {NAME_LABEL: name, "app.kubernetes.io/component": "rabbitmq",
              "app.kubernetes.io/part-of": "rabbitmq"}
    ports = [("rabbitmq", "epmd", 4369), ("rabbitmq", "amqp", 5672),
             ("rabbitmq", "management", 15672), ("rabbitmq", "prometheus", 15692)]
    return [Pod(namespace, f"{name}-server-{index}", labels, ports, f"10.0.1.{index + 1}")
            for index in range(cluster["spec"]["replicas"])]


def all_pods(overlay: str) -> list[Pod]:
    return platform_pods(overlay) + rabbitmq_pods(namespace_of(overlay))


def compose_jobs() -> dict[str, tuple[str, dict[str, str]]]:
    """What compose's configuration scrapes, by job: its path and parameters."""
    return {job["job_name"]: (job.get("metrics_path", "/metrics"),
                              {name: ",".join(values)
                               for name, values in job.get("params", {}).items()})
            for job in yaml_file(PROMETHEUS_DIR / "prometheus.yml")["scrape_configs"]}


def jobs_of(targets: list[Labels]) -> dict[str, set[tuple[str, tuple[tuple[str, str], ...]]]]:
    found: dict[str, set[tuple[str, tuple[tuple[str, str], ...]]]] = {}
    for target in targets:
        params = tuple(sorted((key.removeprefix("__param_"), value)
                              for key, value in target.items() if key.startswith("__param_")))
        found.setdefault(target["job"], set()).add((target["__metrics_path__"], params))
    return found


# --- what the Prometheus Operator makes of a PodMonitor ------------------------------------------

def operator_scrape_configs(monitor: Mapping[str, Any], namespace: str) -> list[dict[str, Any]]:
    """The scrape configurations the Prometheus Operator generates for a PodMonitor in
    `namespace` (its pkg/prometheus/promcfg.go, generatePodMonitorConfig, v0.93): pods of its
    namespace that are not finished, with every label of the selector, the endpoint's port by
    name; `namespace`, `container`, `pod`; `job` <namespace>/<name>, then the pod's `jobLabel`
    label when it has one; `endpoint`; then the endpoint's own relabelings."""
    spec, name = monitor["spec"], monitor["metadata"]["name"]
    assert set(spec["selector"]) == {"matchLabels"}, "only matchLabels is modelled here"
    configs = []
    for index, endpoint in enumerate(spec["podMetricsEndpoints"]):
        rules: list[dict[str, Any]] = [
            {"source_labels": ["__meta_kubernetes_pod_phase"], "regex": "(Failed|Succeeded)",
             "action": "drop"}]
        rules += [{"source_labels": [f"__meta_kubernetes_pod_label_{sanitized(key)}",
                                     f"__meta_kubernetes_pod_labelpresent_{sanitized(key)}"],
                   "regex": f"({value});true", "action": "keep"}
                  for key, value in sorted(spec["selector"]["matchLabels"].items())]
        rules += [
            {"source_labels": ["__meta_kubernetes_pod_container_port_name"],
             "regex": endpoint["port"], "action": "keep"},
            {"source_labels": ["__meta_kubernetes_namespace"], "target_label": "namespace"},
            {"source_labels": ["__meta_kubernetes_pod_container_name"],
             "target_label": "container"},
            {"source_labels": ["__meta_kubernetes_pod_name"], "target_label": "pod"},
            {"target_label": "job", "replacement": f"{namespace}/{name}"}]
        if spec.get("jobLabel"):
            rules.append({"source_labels": [
                f"__meta_kubernetes_pod_label_{sanitized(spec['jobLabel'])}"],
                "target_label": "job", "regex": "(.+)", "replacement": "${1}"})
        rules.append({"target_label": "endpoint", "replacement": endpoint["port"]})
        rules += [{_SNAKE.get(key, key): value for key, value in rule.items()}
                  for rule in endpoint.get("relabelings", [])]
        configs.append({
            "job_name": f"podMonitor/{namespace}/{name}/{index}",
            "kubernetes_sd_configs": [{"role": "pod", "namespaces": {"names": [namespace]}}],
            "metrics_path": endpoint.get("path", "/metrics"),
            "params": endpoint.get("params", {}),
            "relabel_configs": rules})
    return configs


# the PodMonitor's relabelings as Prometheus spells them
_SNAKE = {"sourceLabels": "source_labels", "targetLabel": "target_label"}


def monitors() -> list[dict[str, Any]]:
    return [item for item in yaml.safe_load_all(MONITORS.read_text()) if item]


def plain_targets(overlay: str) -> list[Labels]:
    return [target for config in yaml_file(PLAIN_CONFIG)["scrape_configs"]
            for target in scrape_targets(config, all_pods(overlay))]


def operator_targets(overlay: str) -> list[Labels]:
    return [target for monitor in monitors()
            for config in operator_scrape_configs(monitor, namespace_of(overlay))
            for target in scrape_targets(config, all_pods(overlay))]


FORMS = {"kubernetes_sd_configs": plain_targets, "PodMonitor": operator_targets}


# --- the plain configuration --------------------------------------------------------------------

def test_plain_config_passes_promtool_check_config(tmp_path: Path) -> None:
    """Everything but the discovery: Debian's promtool refuses `kubernetes_sd_configs` as an
    unknown field (its Prometheus is built without it)."""
    config = copy.deepcopy(yaml_file(PLAIN_CONFIG))
    for job in config["scrape_configs"]:
        assert job.pop("kubernetes_sd_configs")
        job["static_configs"] = [{"targets": ["10.0.0.1:4000"]}]
    checked = tmp_path / "prometheus.yml"
    checked.write_text(yaml.safe_dump(config))
    output = run_promtool("check", "config", checked)
    assert "SUCCESS" in output


def test_plain_config_discovers_pods_of_the_production_namespace() -> None:
    for job in yaml_file(PLAIN_CONFIG)["scrape_configs"]:
        assert job["kubernetes_sd_configs"] == [
            {"role": "pod", "namespaces": {"names": [namespace_of("production")]}}], \
            job["job_name"]


def test_plain_config_loads_the_rules_where_compose_mounts_them() -> None:
    assert yaml_file(PLAIN_CONFIG)["rule_files"] == \
        yaml_file(PROMETHEUS_DIR / "prometheus.yml")["rule_files"]


# --- what both forms scrape ---------------------------------------------------------------------

@pytest.mark.parametrize("form", FORMS)
def test_kubernetes_scrapes_what_compose_scrapes_under_the_same_jobs(form: str) -> None:
    """job:rpc_server_seconds:* and the dashboard's $service group by `job`, the dashboard
    reads job="gateway": the process's name as in compose, not a discovery default."""
    targets = FORMS[form]("production")
    assert {job: {(path, tuple(sorted(params.items())))}
            for job, (path, params) in compose_jobs().items()} == jobs_of(targets)
    for target in targets:
        assert TARGET_LABELS <= set(target), target


@pytest.mark.parametrize("form", FORMS)
def test_each_pod_is_scraped_on_its_metrics_port_once_per_job(form: str) -> None:
    targets = FORMS[form]("production")
    for pod in platform_pods("production"):
        [target] = [target for target in targets if target["pod"] == pod.name]
        [status] = [number for _, port, number in pod.ports if port == "status"]
        assert target["instance"] == f"{pod.address}:{status}"  # never the public port
        assert target["job"] == pod.labels[NAME_LABEL]
    for pod in rabbitmq_pods(namespace_of("production")):
        scraped = [target for target in targets if target["pod"] == pod.name]
        assert sorted(target["job"] for target in scraped) == ["rabbitmq", "rabbitmq-queues"]
        assert {target["instance"] for target in scraped} == {f"{pod.address}:15692"}


def test_the_simulated_discovery_can_miss_a_pod() -> None:
    """A pod without the platform's label, or of another namespace, is not scraped."""
    [config] = [job for job in yaml_file(PLAIN_CONFIG)["scrape_configs"]
                if job["job_name"] == "gateway-platform"]
    [pod] = [pod for pod in platform_pods("production") if pod.labels[NAME_LABEL] == "gateway"]
    assert scrape_targets(config, [pod])
    unlabelled = Pod(pod.namespace, pod.name, {NAME_LABEL: "gateway"}, pod.ports)
    elsewhere = Pod("default", pod.name, pod.labels, pod.ports)
    assert scrape_targets(config, [unlabelled, elsewhere]) == []


# --- the Operator's resources -------------------------------------------------------------------

@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_platform_pod_monitor_selects_every_process_by_its_status_port(overlay: str) -> None:
    [monitor] = [item for item in monitors() if item["metadata"]["name"] == "gateway-platform"]
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["kind"] == "PodMonitor"
    selector = monitor["spec"]["selector"]["matchLabels"]
    [endpoint] = monitor["spec"]["podMetricsEndpoints"]
    for pod in platform_pods(overlay):
        assert selector.items() <= pod.labels.items(), pod.name
        assert monitor["spec"]["jobLabel"] in pod.labels, pod.name
        assert endpoint["port"] in {port for _, port, _ in pod.ports}, pod.name
    for pod in rabbitmq_pods(namespace_of(overlay)):
        assert not selector.items() <= pod.labels.items(), pod.name


def test_every_monitor_is_an_operator_resource_kept_out_of_the_overlays() -> None:
    assert {(item["apiVersion"], item["kind"]) for item in monitors()} == {
        ("monitoring.coreos.com/v1", "PodMonitor")}
    for overlay in OVERLAYS:
        assert not of_kind(overlay, "PodMonitor")


# --- the rules as PrometheusRule resources ------------------------------------------------------

def test_the_rules_script_wraps_each_rules_file_unchanged() -> None:
    result = run("bash", RULES_SCRIPT, "release=kube-prometheus-stack")
    assert result.returncode == 0, result.stderr
    resources = [item for item in yaml.safe_load_all(result.stdout) if item]
    assert len(resources) == len(rule_files())
    for resource, path in zip(resources, rule_files(), strict=True):
        assert (resource["apiVersion"], resource["kind"]) == (
            "monitoring.coreos.com/v1", "PrometheusRule")
        assert resource["metadata"]["name"] == f"gateway-platform-{path.stem}"
        assert resource["metadata"]["labels"]["release"] == "kube-prometheus-stack"
        assert resource["spec"] == yaml_file(path)
