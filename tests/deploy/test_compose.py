"""compose.yaml and the image it builds, offline: the file is valid against the Compose
specification's JSON schema, it gives the processes the same settings as the Kubernetes
overlays, with values their settings accept once compose has filled in its `${...}` from a
.env, and the image (infra/Dockerfile) is the multi-stage, pinned, non-root one the manifests
run. No Docker is involved."""

from __future__ import annotations

import copy
import re
from typing import Any

import jsonschema
import pytest
import yaml

from contracts.settings import READS, Process, SettingsError
from tests.deploy.compose_env import (
    InterpolationError,
    interpolate,
    interpolated,
    read_dotenv,
    required_variables,
)
from tests.deploy.process_settings import PROCESS_OF_PACKAGE, settings_from
from tests.deploy.tools import (
    COMPOSE_FILE,
    DOCKERFILE,
    OVERLAYS,
    ROOT,
    compose_schema,
    of_kind,
    throwaway_value,
)

# What compose.yaml starts `python -m` with, per container: the platform's five processes.
PACKAGES = {"gateway", "auth_svc", "project_svc", "analytics_svc", "logging_svc"}

# Settings the overlays give and compose does not, each for a reason:
ONLY_IN_OVERLAYS = {
    # the overlays' PostgreSQL sits behind a pooler (CloudNativePG's Pooler); compose's
    # processes talk to PostgreSQL directly, so their migrations use the database URLs
    "AUTH_MIGRATION_URL", "PROJECT_MIGRATION_URL", "ANALYTICS_MIGRATION_URL",
    "LOGS_MIGRATION_URL",
}


def compose() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(COMPOSE_FILE.read_text())  # `<<:` merged
    return document


def platform_services() -> dict[str, dict[str, Any]]:
    return {name: service for name, service in compose()["services"].items()
            if service.get("command", [None])[:2] == ["python", "-m"]}


def errors_of(document: dict[str, Any]) -> list[str]:
    schema = compose_schema()
    validator = jsonschema.validators.validator_for(schema)(schema)
    return [f"{'/'.join(map(str, error.absolute_path))}: {error.message}"
            for error in validator.iter_errors(document)]


def compose_settings() -> set[str]:
    return {name for service in platform_services().values()
            for name in service["environment"]}


def overlay_settings(overlay: str) -> set[str]:
    """What the pods of an overlay are given: the ConfigMap they all read and each one's own
    variables (its secrets)."""
    [config_map] = of_kind(overlay, "ConfigMap")
    given = set(config_map["data"])
    for deployment in of_kind(overlay, "Deployment"):
        for container in deployment["spec"]["template"]["spec"]["containers"]:
            given |= {entry["name"] for entry in container.get("env", [])}
    return given


def read_by_processes() -> set[str]:
    return set().union(*READS.values())


# --- the Compose specification ------------------------------------------------------------------

def test_compose_file_follows_the_compose_specification() -> None:
    assert errors_of(compose()) == []


def test_the_schema_check_rejects_what_compose_would() -> None:
    broken = copy.deepcopy(compose())
    broken["services"]["gateway"]["restart_policy"] = "always"  # not a service key
    broken["services"]["gateway"]["depends_on"]["redis"] = {"condition": "service_ready"}
    errors = errors_of(broken)
    assert any("restart_policy" in error for error in errors), errors
    assert any("service_ready" in error for error in errors), errors


# --- the same settings in compose and on Kubernetes --------------------------------------------

@pytest.mark.parametrize("overlay", OVERLAYS)
def test_compose_and_an_overlay_give_the_same_settings(overlay: str) -> None:
    read = read_by_processes()
    in_compose = compose_settings() & read
    in_overlay = overlay_settings(overlay) & read
    assert sorted(in_overlay - in_compose - ONLY_IN_OVERLAYS) == [], "only in the overlay"
    assert sorted(in_compose - in_overlay) == [], "only in compose.yaml"
    assert ONLY_IN_OVERLAYS <= in_overlay, "an exception that no longer is one"


def test_compose_and_the_overlays_give_only_settings_a_process_reads() -> None:
    """A misspelt or retired variable would be silently unread."""
    read = read_by_processes()
    assert sorted(compose_settings() - read) == []
    for overlay in OVERLAYS:
        assert sorted(overlay_settings(overlay) - read) == [], overlay


def test_every_platform_service_gets_the_same_settings() -> None:
    environments = [service["environment"] for service in platform_services().values()]
    assert all(environment == environments[0] for environment in environments)


# --- the values compose gives, once it has filled in its ${...} ---------------------------------

def dotenv(kind: str) -> dict[str, str]:
    """A .env for compose: `required` gives only what compose refuses to run without, so its
    own defaults apply; `example` is .env.example as its header says to use it (copied, the
    empty values filled in)."""
    required = {name: throwaway_value(name) for name in required_variables(compose())}
    if kind == "required":
        return required
    example = read_dotenv((ROOT / ".env.example").read_text())
    return {**example, **{name: value for name, value in required.items()
                          if not example.get(name)}}


def container_environments(variables: dict[str, str]) -> dict[Process, dict[str, str]]:
    """Each platform container's environment as compose would give it, by process."""
    resolved = interpolated(compose(), variables)["services"]
    environments: dict[Process, dict[str, str]] = {}
    for name in platform_services():
        environment = resolved[name]["environment"]
        assert all(isinstance(value, str) for value in environment.values()), name
        environments[PROCESS_OF_PACKAGE[resolved[name]["command"][2]]] = environment
    return environments


@pytest.mark.parametrize("kind", ["required", "example"])
def test_compose_gives_each_process_values_its_settings_accept(kind: str) -> None:
    environments = container_environments(dotenv(kind))
    assert sorted(environments) == sorted(READS)
    for process, environment in environments.items():
        assert settings_from(environment, process).app_env == "production", process


def test_a_bad_value_from_the_env_file_fails_the_process_that_reads_it() -> None:
    """The check above can fail: .env's LOG_STORE reaches the logging service."""
    environment = container_environments({**dotenv("required"), "LOG_STORE": "postgres"})
    with pytest.raises(SettingsError, match="LOG_STORE"):
        settings_from(environment["logging"], "logging")


def test_compose_refuses_to_run_without_its_required_variables() -> None:
    variables = dotenv("required")
    assert {"ACCESS_TOKEN_SECRET", "ALERT_SECRET", "RABBITMQ_PASSWORD"} <= set(variables)
    for name in variables:
        with pytest.raises(InterpolationError, match=name):
            container_environments({**variables, name: ""})


@pytest.mark.parametrize(("text", "expected"), [
    ("${SET:-d}/${EMPTY:-d}/${UNSET:-d}", "v/d/d"),
    ("${SET-d}/${EMPTY-d}/${UNSET-d}", "v//d"),
    ("${SET:+r}/${EMPTY:+r}/${UNSET:+r}", "r//"),
    ("${SET+r}/${EMPTY+r}/${UNSET+r}", "r/r/"),
    ("$SET/${SET}/${UNSET}/$$SET/${EMPTY?e}", "v/v//$SET/"),
    ("${MAIL:-Gateway Platform <no-reply@localhost>}", "Gateway Platform <no-reply@localhost>"),
])
def test_interpolation_follows_the_compose_specification(text: str, expected: str) -> None:
    assert interpolate(text, {"SET": "v", "EMPTY": ""}) == expected


@pytest.mark.parametrize("text", ["${EMPTY:?set EMPTY}", "${UNSET?set UNSET}",
                                  "${UNSET:-${SET}}", "${1BAD}"])
def test_interpolation_refuses_what_compose_would(text: str) -> None:
    with pytest.raises(InterpolationError):
        interpolate(text, {"SET": "v", "EMPTY": ""})


def test_dotenv_lines_are_read_as_compose_reads_them() -> None:
    text = "# comment\n\nA=1\nB= spaced out  # note\nC='quoted # kept'\nD=\nE=a=b\n"
    assert read_dotenv(text) == {"A": "1", "B": "spaced out", "C": "quoted # kept", "D": "",
                                 "E": "a=b"}


# --- one image for compose and Kubernetes -------------------------------------------------------

def test_compose_runs_each_process_from_the_image_of_infra_dockerfile() -> None:
    services = platform_services()
    assert {service["command"][2] for service in services.values()} == PACKAGES
    for name, service in services.items():
        assert (ROOT / service["build"]["context"] / service["build"]["dockerfile"]
                ) == DOCKERFILE, name
        assert service["image"].split(":")[0] == "gateway-platform", name
    for overlay in OVERLAYS:
        for deployment in of_kind(overlay, "Deployment"):
            [container] = deployment["spec"]["template"]["spec"]["containers"]
            repository = container["image"].split(":")[0].rsplit("/", 1)[-1]
            assert repository == "gateway-platform"


def dockerfile_stages() -> list[list[str]]:
    """The Dockerfile's instructions (continuation lines joined), split into its stages; the
    global ARGs before the first FROM are stage 0."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    stages: list[list[str]] = [[]]
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if line.startswith("FROM "):
            stages.append([])
        stages[-1].append(line.strip())
    return stages


def test_the_image_is_multi_stage_pinned_and_unprivileged() -> None:
    global_args, *stages = dockerfile_stages()
    assert len(stages) >= 2, "a build stage and a runtime stage"
    [base] = [line.split("=", 1)[1] for line in global_args if line.startswith("ARG PYTHON_IMAGE=")]
    assert re.fullmatch(r"python:3\.11\.\d+-slim-bookworm", base), base
    assert all(stage[0].startswith("FROM ${PYTHON_IMAGE}") for stage in stages)
    runtime = stages[-1]
    # the runtime stage copies the built environment and installs nothing itself
    assert any(line.startswith("COPY --from=build /opt/venv") for line in runtime)
    assert not any("pip install" in line for line in runtime)
    [user] = [line.split()[1] for line in runtime if line.startswith("USER ")]
    uid, gid = (int(part) for part in user.split(":"))
    assert uid != 0 and gid != 0
    # the id the manifests declare (runAsNonRoot is checked against it, not /etc/passwd)
    for overlay in OVERLAYS:
        for deployment in of_kind(overlay, "Deployment"):
            context = deployment["spec"]["template"]["spec"]["securityContext"]
            assert (context["runAsUser"], context["runAsGroup"]) == (uid, gid)


# --- what compose publishes and mounts ---------------------------------------------------------

def test_only_the_gateway_is_published_beyond_loopback() -> None:
    for name, service in compose()["services"].items():
        for mapping in service.get("ports", []):
            if name != "gateway":
                assert mapping.startswith("127.0.0.1:"), f"{name}: {mapping}"


def test_third_party_images_are_pinned_where_compose_mounts_our_files_into_them() -> None:
    """Prometheus and Grafana read deploy/'s files, whose format follows their versions."""
    services = compose()["services"]
    assert re.fullmatch(r"prom/prometheus:v\d+\.\d+\.\d+", services["prometheus"]["image"])
    assert re.fullmatch(r"grafana/grafana:\d+\.\d+\.\d+", services["grafana"]["image"])


def test_every_file_compose_mounts_exists() -> None:
    for name, service in compose()["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith("./"):
                assert (ROOT / source).exists(), f"{name} mounts {source}"


def test_rabbitmq_exposes_its_prometheus_endpoint() -> None:
    rabbitmq = compose()["services"]["rabbitmq"]
    assert "rabbitmq_prometheus" in rabbitmq["environment"]["RABBITMQ_ENABLED_PLUGINS"].split(",")
    assert "127.0.0.1:15692:15692" in rabbitmq["ports"]


def test_prometheus_scrapes_the_ports_compose_serves_metrics_on() -> None:
    """deploy/prometheus/prometheus.yml names compose's services and their status ports."""
    scrape = yaml.safe_load((ROOT / "deploy" / "prometheus" / "prometheus.yml").read_text())
    services = compose()["services"]
    status_ports = {name: service["environment"][
        "GATEWAY_STATUS_PORT" if service["command"][2] == "gateway"
        else f"{service['command'][2].removesuffix('_svc').upper()}_HTTP_PORT"]
        for name, service in platform_services().items()}
    status_ports["rabbitmq"] = "15692"
    targets = [target for job in scrape["scrape_configs"]
               for static in job.get("static_configs", []) for target in static["targets"]]
    assert targets
    for target in targets:
        host, port = target.rsplit(":", 1)
        assert host in services, target
        assert status_ports.get(host) == port, target
    assert {target.split(":")[0] for target in targets} == set(status_ports)
