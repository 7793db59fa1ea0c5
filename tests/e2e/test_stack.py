"""All five processes, started as `python -m <package>`, driven through the gateway."""

from __future__ import annotations

import signal
import time

from tests.e2e.conftest import Stack
from tests.support import get_json

SERVICE_NAMES = ["auth-service", "project-service", "analytics-service", "logging-service"]


def test_whole_stack_is_healthy(stack: Stack):
    body = stack.wait_healthy()
    assert body["status"] == "ok"
    assert [s["name"] for s in body["services"]] == SERVICE_NAMES
    assert all(s["status"] == "ok" for s in body["services"])


def test_each_service_serves_its_own_health_and_metrics(stack: Stack):
    stack.wait_healthy()
    for package, name in zip(("auth_svc", "project_svc", "analytics_svc", "logging_svc"),
                             SERVICE_NAMES, strict=True):
        status, body = get_json(f"http://127.0.0.1:{stack.port(package)}/health")
        assert status == 200 and body["service"] == name and body["status"] == "ok"


def test_a_stopped_service_makes_health_503_naming_it(stack: Stack):
    stack.wait_healthy()
    assert stack.stop("project_svc") == 0  # graceful: SIGTERM, clean exit

    deadline = time.monotonic() + 10
    while True:
        status, body = get_json(f"{stack.gateway_url}/health")
        if status == 503 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert status == 503
    assert body["status"] == "degraded"
    failing = [s for s in body["services"] if s["status"] != "ok"]
    assert [s["name"] for s in failing] == ["project-service"], body
    assert failing[0]["error"] and "latency" not in failing[0]

    stack.start("project_svc")
    assert stack.wait_healthy()["status"] == "ok"


def test_processes_stop_cleanly_on_sigterm_and_sigint(stack: Stack):
    stack.wait_healthy()
    stack.processes["analytics_svc"].send_signal(signal.SIGINT)
    assert stack.processes["analytics_svc"].wait(20) == 0
    assert stack.stop("gateway") == 0
    assert stack.stop("auth_svc") == 0
