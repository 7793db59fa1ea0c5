"""deploy/kubernetes, offline: every overlay renders with kustomize and every object it renders
is valid for the pinned Kubernetes version (kubeconform, strict), and the rendered Deployments
are what the platform needs to run well: probed, limited, locked down, drained, fed exactly
the settings and secrets their process reads, with values its settings accept. No cluster is
involved anywhere."""

from __future__ import annotations

import base64
import ipaddress
import re
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from contracts.settings import READS, Process, SettingsError
from gateway.client_ip import ClientAddress
from tests.deploy.process_settings import PROCESS_OF_PACKAGE, settings_from
from tests.deploy.tools import (
    KUBERNETES,
    OVERLAYS,
    ROOT,
    Document,
    build,
    kubernetes_copy,
    objects,
    of_kind,
    rendered,
    run,
    throwaway_secrets,
    validate,
)

IMAGE = "gateway-platform"
# where the dev overlay expects the engines of engines/ (README.md, "Development cluster")
ENGINES_NAMESPACE = "gateway-engines"


def status_port_variable(process: str) -> str:
    return "GATEWAY_STATUS_PORT" if process == "gateway" else f"{process.upper()}_HTTP_PORT"


def pod(deployment: Document) -> dict[str, Any]:
    spec: dict[str, Any] = deployment["spec"]["template"]["spec"]
    return spec


def container(deployment: Document) -> dict[str, Any]:
    containers: list[dict[str, Any]] = pod(deployment)["containers"]
    assert len(containers) == 1, deployment["metadata"]["name"]
    return containers[0]


def process_of(deployment: Document) -> Process:
    command = container(deployment)["command"]
    assert command[:2] == ["python", "-m"] and len(command) == 3, command
    return PROCESS_OF_PACKAGE[command[2]]


def config(overlay: str) -> dict[str, str]:
    """The one ConfigMap every pod reads (envFrom)."""
    [config_map] = of_kind(overlay, "ConfigMap")
    data: dict[str, str] = config_map["data"]
    return data


def secret_keys(overlay: str) -> set[str]:
    [secret] = of_kind(overlay, "Secret")
    return set(secret["data"])


def port(deployment: Document, name: str) -> int:
    [number] = [entry["containerPort"] for entry in container(deployment)["ports"]
                if entry["name"] == name]
    assert isinstance(number, int)
    return number


def selects(selector: dict[str, Any], deployment: Document) -> bool:
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    return all(labels.get(key) == value for key, value in selector["matchLabels"].items())


DEPLOYMENTS = [(overlay, name) for overlay in OVERLAYS for name in (
    "gateway", "auth-service", "project-service", "analytics-service", "logging-service")]


def deployment(overlay: str, name: str) -> Document:
    [found] = [item for item in of_kind(overlay, "Deployment")
               if item["metadata"]["name"] == name]
    return found


# --- rendering and schema validation -----------------------------------------------------------

@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_object_of_an_overlay_is_valid_for_kubernetes(overlay: str) -> None:
    result = validate(rendered(overlay))
    assert result.returncode == 0, result.stdout + result.stderr
    count = len(objects(overlay))
    assert (f"{count} resources found parsing stdin - Valid: {count}, Invalid: 0, Errors: 0, "
            "Skipped: 0") in result.stdout


def test_the_validation_rejects_a_field_kubernetes_does_not_know() -> None:
    """The schemas are the strict ones and are really applied: a misspelt field fails."""
    broken = rendered("dev").replace("readOnlyRootFilesystem:", "readOnlyRootFileSystem:", 1)
    result = validate(broken)
    assert result.returncode != 0
    assert "additional properties 'readOnlyRootFileSystem' not allowed" in result.stdout


def test_the_validation_rejects_a_kind_it_has_no_schema_for() -> None:
    """An unknown kind is an error, never skipped (nor fetched: the schemas are local)."""
    crd = "apiVersion: example.com/v1\nkind: Widget\nmetadata:\n  name: w\n"
    result = validate(crd)
    assert result.returncode != 0
    assert "could not find schema for Widget" in result.stdout


def test_production_refuses_to_render_without_its_secrets() -> None:
    with kubernetes_copy() as copy:
        production = copy / "overlays" / "production"
        refused = build(production)
        assert refused.returncode != 0
        assert "secrets.env" in refused.stderr
        (production / "secrets.env").write_text(throwaway_secrets(production))
        accepted = build(production)
    assert accepted.returncode == 0, accepted.stderr
    [secret] = [item for item in yaml.safe_load_all(accepted.stdout) if item["kind"] == "Secret"]
    assert set(secret["data"]) == secret_keys("production")


def test_production_secrets_are_never_committed() -> None:
    secrets = KUBERNETES / "overlays" / "production" / "secrets.env"
    ignored = run("git", "check-ignore", "--quiet", "--no-index", secrets)
    assert ignored.returncode == 0, f"{secrets.relative_to(ROOT)} is not git-ignored"


def test_production_pins_its_image() -> None:
    for item in of_kind("production", "Deployment"):
        image = container(item)["image"]
        assert re.fullmatch(rf"[\w.-]+(/[\w.-]+)*/{IMAGE}:\d+\.\d+\.\d+(@sha256:\w+)?", image)


# --- what every Deployment must have -------------------------------------------------------------

def test_all_five_processes_are_deployed() -> None:
    for overlay in OVERLAYS:
        processes = sorted(process_of(item) for item in of_kind(overlay, "Deployment"))
        assert processes == sorted(READS), overlay


@pytest.mark.parametrize(("overlay", "name"), DEPLOYMENTS)
def test_a_deployment_is_probed_on_its_status_port(overlay: str, name: str) -> None:
    item = deployment(overlay, name)
    app = container(item)
    expected = {"startupProbe": "/livez", "livenessProbe": "/livez", "readinessProbe": "/readyz"}
    for probe, path in expected.items():
        assert app[probe]["httpGet"] == {"path": path, "port": "status"}, probe
    # the named port is the port the process listens on, per its settings
    variable = status_port_variable(process_of(item))
    assert port(item, "status") == int(config(overlay)[variable])
    annotations = item["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == str(port(item, "status"))
    if name == "gateway":
        assert port(item, "http") == int(config(overlay)["GATEWAY_PORT"])
    assert config(overlay)["SERVICE_HOST"] == "0.0.0.0"  # the kubelet probes the pod's address


@pytest.mark.parametrize(("overlay", "name"), DEPLOYMENTS)
def test_a_deployment_has_requests_and_limits(overlay: str, name: str) -> None:
    resources = container(deployment(overlay, name))["resources"]
    for bound in ("requests", "limits"):
        assert set(resources[bound]) == {"cpu", "memory"}, bound


@pytest.mark.parametrize(("overlay", "name"), DEPLOYMENTS)
def test_a_deployment_runs_locked_down(overlay: str, name: str) -> None:
    item = deployment(overlay, name)
    spec, app = pod(item), container(item)
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["runAsUser"] != 0
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert app["securityContext"] == {
        "allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
        "runAsNonRoot": True, "capabilities": {"drop": ["ALL"]}}
    # no API token, no injected Service variables (GATEWAY_PORT would be one)
    assert spec["automountServiceAccountToken"] is False
    assert spec["enableServiceLinks"] is False
    # the one writable place is a bounded emptyDir on /tmp
    [tmp] = [volume for volume in spec["volumes"] if volume["name"] == "tmp"]
    assert tmp["emptyDir"]["sizeLimit"]
    assert app["volumeMounts"] == [{"name": "tmp", "mountPath": "/tmp"}]


@pytest.mark.parametrize(("overlay", "name"), DEPLOYMENTS)
def test_a_stop_fits_in_the_termination_grace_period(overlay: str, name: str) -> None:
    """preStop sleep, then the drain (/readyz 503, still serving), then in-flight work's
    grace: all before the kubelet's SIGKILL."""
    item = deployment(overlay, name)
    settings = config(overlay)
    pre_stop = container(item).get("lifecycle", {}).get("preStop", {})
    sleep = pre_stop.get("sleep", {}).get("seconds", 0)
    if name == "gateway":
        assert sleep > 0, "the gateway must keep serving while its endpoints are withdrawn"
    needed = sleep + float(settings["SHUTDOWN_DRAIN_S"]) + float(settings["SHUTDOWN_GRACE_S"])
    assert pod(item)["terminationGracePeriodSeconds"] > needed


@pytest.mark.parametrize(("overlay", "name"), DEPLOYMENTS)
def test_a_deployment_gets_exactly_the_secrets_its_process_reads(overlay: str,
                                                                  name: str) -> None:
    item = deployment(overlay, name)
    reads = READS[process_of(item)]
    [secret] = of_kind(overlay, "Secret")
    referenced = {entry["name"] for entry in container(item)["env"]
                  if entry["valueFrom"]["secretKeyRef"]["name"] == secret["metadata"]["name"]}
    for entry in container(item)["env"]:
        assert entry["valueFrom"]["secretKeyRef"]["key"] == entry["name"]
    assert referenced == reads & secret_keys(overlay)
    [source] = container(item)["envFrom"]
    assert source["configMapRef"]["name"] == of_kind(overlay, "ConfigMap")[0]["metadata"]["name"]


def pod_environment(overlay: str, item: Document) -> dict[str, str]:
    """The variables the Deployment's container gets: the ConfigMap (envFrom), then its own
    `env` entries, each the value of its key in the Secret (they win over envFrom)."""
    [secret] = of_kind(overlay, "Secret")
    environment = dict(config(overlay))
    for entry in container(item)["env"]:
        reference = entry["valueFrom"]["secretKeyRef"]
        assert reference["name"] == secret["metadata"]["name"]
        environment[entry["name"]] = base64.b64decode(secret["data"][reference["key"]]).decode()
    return environment


@pytest.mark.parametrize(("overlay", "name"), DEPLOYMENTS)
def test_a_deployment_s_values_are_settings_its_process_accepts(overlay: str,
                                                                name: str) -> None:
    """Values, not only names: the environment the pod gets (production with
    secrets.env.example's lines made valid, dev with its committed dev secrets) loads
    through contracts.settings as the process would at start."""
    item = deployment(overlay, name)
    settings = settings_from(pod_environment(overlay, item), process_of(item))
    assert settings.app_env == config(overlay)["APP_ENV"]


def test_a_bad_value_fails_the_process_that_reads_it() -> None:
    """The check above can fail: a value the logging service refuses, in the ConfigMap."""
    item = deployment("production", "logging-service")
    environment = {**pod_environment("production", item), "LOG_STORE": "postgres"}
    with pytest.raises(SettingsError, match="LOG_STORE"):
        settings_from(environment, "logging")


def test_production_believes_the_forwarded_for_of_its_ingress_only() -> None:
    """Behind an Ingress every TCP peer is the controller: without TRUSTED_PROXIES all clients
    share its address (one per-IP rate limit, one login throttle)."""
    item = deployment("production", "gateway")
    settings = settings_from(pod_environment("production", item), "gateway")
    assert settings.trusted_proxies, "production must set TRUSTED_PROXIES"
    ClientAddress(settings.trusted_proxies)  # each is a network, as the gateway reads them
    for network in map(ipaddress.ip_network, settings.trusted_proxies):
        # a cluster's own range, never the internet: any address there could name its client
        assert network.is_private, network


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_secrets_and_settings_are_apart(overlay: str) -> None:
    """Every Secret key is a setting some process reads; the ConfigMap holds no credential."""
    read = set().union(*READS.values())
    assert secret_keys(overlay) <= read
    for key, value in config(overlay).items():
        assert key in read, f"{key} is read by no process"
        assert not re.search(r"SECRET|PASSWORD|TOKEN", key), key
        assert not re.search(r"://[^/@\s]*@", value), f"{key} holds credentials"
        assert key not in secret_keys(overlay), f"{key} is both a setting and a secret"


# --- scaling, disruption, traffic ---------------------------------------------------------------

@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_gateway_scales_on_cpu(overlay: str) -> None:
    [autoscaler] = of_kind(overlay, "HorizontalPodAutoscaler")
    assert autoscaler["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1", "kind": "Deployment", "name": "gateway"}
    assert 1 <= autoscaler["spec"]["minReplicas"] < autoscaler["spec"]["maxReplicas"]
    # the autoscaler owns the count: an applied `replicas` would reset it
    assert "replicas" not in deployment(overlay, "gateway")["spec"]
    assert config(overlay)["GATEWAY_WORKERS"] == "1"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_deployment_has_a_service_and_a_disruption_budget(overlay: str) -> None:
    services = of_kind(overlay, "Service")
    budgets = of_kind(overlay, "PodDisruptionBudget")
    for item in of_kind(overlay, "Deployment"):
        name = item["metadata"]["name"]
        assert [budget for budget in budgets if selects(budget["spec"]["selector"], item)], name
        [service] = [service for service in services
                     if selects({"matchLabels": service["spec"]["selector"]}, item)]
        targets = {entry["targetPort"] for entry in service["spec"]["ports"]}
        assert "status" in targets, name


def admits_a_named_few(source: dict[str, Any]) -> bool:
    """A NetworkPolicy peer that admits named pods or namespaces, not the whole cluster: a
    `namespaceSelector` (alone or with a `podSelector`) must name labels, since `{}` selects
    every namespace; a `podSelector` alone is this namespace's pods. An `ipBlock` is not one."""
    if "namespaceSelector" in source:
        return bool(source["namespaceSelector"].get("matchLabels"))
    return set(source) == {"podSelector"}


def test_a_peer_admitting_every_namespace_is_refused() -> None:
    assert not admits_a_named_few({"namespaceSelector": {}, "podSelector": {}})
    assert not admits_a_named_few({"namespaceSelector": {}})
    assert not admits_a_named_few({"namespaceSelector": {"matchExpressions": []},
                                   "podSelector": {"matchLabels": {"a": "b"}}})
    assert not admits_a_named_few({"ipBlock": {"cidr": "0.0.0.0/0"}})
    assert admits_a_named_few({"podSelector": {}})
    assert admits_a_named_few({"namespaceSelector": {"matchLabels": {"a": "b"}},
                               "podSelector": {}})


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_only_the_gateway_takes_outside_traffic(overlay: str) -> None:
    policies = of_kind(overlay, "NetworkPolicy")
    deployments = of_kind(overlay, "Deployment")
    # a default deny covers every pod of the platform
    [deny] = [policy for policy in policies if "ingress" not in policy["spec"]]
    assert deny["spec"]["policyTypes"] == ["Ingress"]
    assert all(selects(deny["spec"]["podSelector"], item) for item in deployments)
    # a rule without `from` admits anyone: only on the gateway's public port
    for policy in policies:
        for rule in policy["spec"].get("ingress", []):
            if "from" not in rule:
                covered = [item["metadata"]["name"] for item in deployments
                           if selects(policy["spec"]["podSelector"], item)]
                assert covered == ["gateway"], policy["metadata"]["name"]
                assert rule["ports"] == [{"protocol": "TCP", "port": "http"}]
            else:
                for source in rule["from"]:
                    assert admits_a_named_few(source), (policy["metadata"]["name"], source)
    # every process's status port is admitted from somewhere (Prometheus scrapes it)
    for item in deployments:
        admitted = [rule for policy in policies if selects(policy["spec"]["podSelector"], item)
                    for rule in policy["spec"].get("ingress", [])
                    if {"protocol": "TCP", "port": "status"} in rule["ports"]]
        assert admitted, item["metadata"]["name"]


def test_the_namespace_enforces_the_restricted_pod_security_profile() -> None:
    for overlay in OVERLAYS:
        [namespace] = of_kind(overlay, "Namespace")
        labels = namespace["metadata"]["labels"]
        assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
        assert all(item["metadata"]["namespace"] == namespace["metadata"]["name"]
                   for item in objects(overlay) if item["kind"] != "Namespace")


def test_dev_reaches_its_engines_in_a_namespace_of_their_own() -> None:
    """The operators' engine pods need not meet the `restricted` profile the platform's
    namespace enforces (README.md, "Development cluster"): they live in gateway-engines, and
    every host of the dev secrets is one of its Services."""
    [namespace] = of_kind("dev", "Namespace")
    assert namespace["metadata"]["name"] != ENGINES_NAMESPACE
    [secret] = of_kind("dev", "Secret")
    hosts = {key: [urlsplit(url).hostname for url in
                   base64.b64decode(value).decode().split(",") if "://" in url]
             for key, value in secret["data"].items()}
    assert any(hosts.values())
    for key, names in hosts.items():
        for host in names:
            assert host and host.endswith(f".{ENGINES_NAMESPACE}"), (key, host)


def test_engine_examples_stay_out_of_the_overlays() -> None:
    """engines/ holds custom resources of operators, whose schemas cannot be had offline:
    documentation, never rendered (README.md, "Engines")."""
    engines = KUBERNETES / "engines"
    examples = [item for path in sorted(engines.glob("*.yaml"))
                for item in yaml.safe_load_all(path.read_text()) if item]
    assert {"RabbitmqCluster", "Cluster", "Pooler", "MongoDBCommunity", "RedisFailover"} <= {
        item["kind"] for item in examples}
    for overlay in OVERLAYS:
        rendered_names = {(item["kind"], item["metadata"]["name"]) for item in objects(overlay)}
        assert not rendered_names & {(item["kind"], item["metadata"]["name"])
                                     for item in examples}

