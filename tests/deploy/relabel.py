"""Prometheus's target relabeling (`relabel_configs`), and the targets its Kubernetes pod
discovery (`kubernetes_sd_configs`, role `pod`) makes of a pod, for the checks of the
Kubernetes scrape configuration: no cluster is here to discover anything, and Debian's
Prometheus is built without Kubernetes discovery, so its promtool cannot run these.

As the Prometheus documentation describes them: a target per container port, labelled with
`__meta_kubernetes_*`; relabeling joins `source_labels` with `separator`, matches the whole of
it against `regex`, and `replace`s `target_label` with the expanded `replacement` (an empty
result removes the label), or `keep`s or `drop`s the target; afterwards `instance` defaults to
`__address__` and every label starting with `__` goes. Only the actions our configurations use
are known; any other fails rather than pass unchecked.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

Labels = dict[str, str]


@dataclass(frozen=True)
class Pod:
    """What discovery sees of a pod."""
    namespace: str
    name: str
    labels: Mapping[str, str]
    # (container name, port name, port number) of every container port
    ports: Sequence[tuple[str, str, int]]
    address: str = "10.0.0.1"
    phase: str = "Running"


def sanitized(name: str) -> str:
    """A Kubernetes label's name as a Prometheus label name (`app.kubernetes.io/name` ->
    `app_kubernetes_io_name`)."""
    return re.sub(r"[^a-zA-Z0-9_]", "_", name)


def discovered(pod: Pod) -> list[Labels]:
    """The targets of role `pod` discovery: one per container port."""
    common = {"__meta_kubernetes_namespace": pod.namespace,
              "__meta_kubernetes_pod_name": pod.name,
              "__meta_kubernetes_pod_ip": pod.address,
              "__meta_kubernetes_pod_phase": pod.phase}
    for key, value in pod.labels.items():
        common[f"__meta_kubernetes_pod_label_{sanitized(key)}"] = value
        common[f"__meta_kubernetes_pod_labelpresent_{sanitized(key)}"] = "true"
    return [{**common, "__address__": f"{pod.address}:{number}",
             "__meta_kubernetes_pod_container_name": container,
             "__meta_kubernetes_pod_container_port_name": port_name,
             "__meta_kubernetes_pod_container_port_number": str(number)}
            for container, port_name, number in pod.ports]


def scrape_targets(config: Mapping[str, Any], pods: Sequence[Pod]) -> list[Labels]:
    """The targets one scrape configuration makes of `pods`, with their final labels (plus
    `__metrics_path__` and `__param_<name>`, to tell what is scraped)."""
    [discovery] = config["kubernetes_sd_configs"]
    namespaces = discovery.get("namespaces", {}).get("names")
    targets = []
    for pod in pods:
        if namespaces is not None and pod.namespace not in namespaces:
            continue
        for meta in discovered(pod):
            labels = relabeled({"job": config["job_name"], **meta},
                               config.get("relabel_configs", []))
            if labels is not None:
                targets.append(_finished(labels, config))
    return targets


def relabeled(labels: Labels, configs: Sequence[Mapping[str, Any]]) -> Labels | None:
    """`labels` after `configs`, or None when a rule dropped the target."""
    result = dict(labels)
    for rule in configs:
        action = rule.get("action", "replace")
        value = rule.get("separator", ";").join(
            result.get(name, "") for name in rule.get("source_labels", []))
        match = re.fullmatch(rule.get("regex", "(.*)"), value)
        if action == "keep":
            if match is None:
                return None
        elif action == "drop":
            if match is not None:
                return None
        elif action == "replace":
            if match is not None:
                replaced = _expand(match, str(rule.get("replacement", "$1")))
                if replaced:
                    result[rule["target_label"]] = replaced
                else:
                    result.pop(rule["target_label"], None)
        else:
            raise ValueError(f"relabel action {action!r} is not simulated here")
    return result


def _expand(match: re.Match[str], template: str) -> str:
    """Go's regexp Expand: `$1`, `${1}`, `$name`, `${name}`; an unknown group is empty."""
    def group(reference: re.Match[str]) -> str:
        key = reference.group(1) or reference.group(2)
        try:
            found = match.group(int(key) if key.isdigit() else key)
        except IndexError:  # no such group
            return ""
        return found or ""

    return re.sub(r"\$\{(\w+)\}|\$(\w+)", group, template)


def _finished(labels: Labels, config: Mapping[str, Any]) -> Labels:
    labels.setdefault("instance", labels["__address__"])
    final = {key: value for key, value in labels.items() if not key.startswith("__")}
    final["__metrics_path__"] = config.get("metrics_path", "/metrics")
    for name, values in config.get("params", {}).items():
        final[f"__param_{name}"] = ",".join(values)
    return final
