"""`/livez`, `/readyz` and the drain after SIGTERM end to end (docs/api.md section 10): the
probes on the gateway's public port, its status port and the services' ports; their
exemption from rate limiting, logs and analytics; their paths reserved for route configs;
and a gateway and a service draining for real while traffic goes on."""

from __future__ import annotations

import asyncio
import http.client
import signal
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any

import pytest
from aiohttp import web

from tests.e2e.conftest import Stack
from tests.e2e.helpers import (
    Client,
    LoopbackServer,
    assert_error,
    assert_invalid,
    call,
    clear_limits,
    eventually,
    project_with_route,
    register,
)
from tests.support import get_json

SERVICES = ("auth_svc", "project_svc", "analytics_svc", "logging_svc")
PUBLIC_UPSTREAM = "https://93.184.216.34/v1"  # an IP literal: there is no DNS here
# Gateway event -> broker -> consumer -> store; polling allows for a loaded test machine.
FOLDED_WITHIN_S = 15.0
DRAIN_S = 2.0


@pytest.fixture(scope="module")
def gw_settings(redis_test_db: str) -> dict[str, str]:
    # a small address tier: probes sent well beyond it still pass, so they are not counted;
    # from empty buckets (earlier modules' requests were made under a much higher tier)
    clear_limits(redis_test_db)
    return {"RATE_LIMIT_IP": "5"}


def probe(port: int, path: str) -> tuple[int, Any]:
    return get_json(f"http://127.0.0.1:{port}{path}", timeout=5)


# --- where the probes answer ---------------------------------------------------------------


def test_the_gateway_answers_probes_on_its_public_and_status_ports(gw: Stack):
    for port in (gw.port("gateway"), gw.port("gateway_status")):
        assert probe(port, "/livez") == (200, {"status": "ok"})
        status, body = probe(port, "/readyz")
        assert status == 200 and body["status"] == "ok", body
        checks = {check["name"]: check for check in body["checks"]}
        # the limiter fails open by default: Redis is no reason to leave the load balancer
        assert list(checks) == ["rabbitmq", "route-configs"]
        assert all(c["status"] == "ok" and c["latency"] >= 0 for c in checks.values()), body


def test_each_service_answers_probes_on_its_port(gw: Stack):
    for name in SERVICES:
        assert probe(gw.port(name), "/livez") == (200, {"status": "ok"}), name
        status, body = probe(gw.port(name), "/readyz")
        assert status == 200 and body["status"] == "ok", (name, body)
        wanted = ["rabbitmq", "log-store" if name == "logging_svc" else "postgresql"]
        assert [c["name"] for c in body["checks"]] == wanted, (name, body)
        # the deep /health of a service is unchanged beside them
        status, body = probe(gw.port(name), "/health")
        assert status == 200 and set(body) == {"status", "service", "timestamp"}


def test_probes_are_in_the_api_document(gw: Stack):
    _, document, _ = call(gw, "GET", "/api-docs/openapi.json")
    assert {"/livez", "/readyz"} <= set(document["paths"])
    assert "503" in document["paths"]["/readyz"]["get"]["responses"]


# --- exempt like GET /health --------------------------------------------------------------------


def test_probes_are_neither_rate_limited_nor_logged_nor_counted(gw: Stack, admin: Client):
    for path in ("/livez", "/readyz"):
        for _ in range(12):  # beyond the address tier's 5
            status, _, headers = call(gw, "GET", path)
            assert status == 200, path
            assert not any(name.lower().startswith(("x-ratelimit", "ratelimit"))
                           for name in headers), (path, headers)

    # a request that is logged and counted, sent after the probes: once it is folded, so
    # would they be
    marker = uuid.uuid4().hex[:8]
    admin.ok("GET", "/api/v1/auth/profile", query={"probe": marker})

    def logged() -> list[str]:
        body = admin.ok("GET", "/api/v1/logs", query={"limit": 100})
        return [entry["path"] for entry in body["entries"]]

    def counted() -> dict[str, int]:
        rows = admin.ok("GET", "/api/v1/analytics/top-endpoints", query={"limit": 100})
        return {row["path"]: row["count"] for row in rows}

    assert eventually(lambda: f"/api/v1/auth/profile?probe={marker}" in logged(),
                      within_s=FOLDED_WITHIN_S), logged()
    assert eventually(lambda: counted().get("/api/v1/auth/profile", 0) >= 1,
                      within_s=FOLDED_WITHIN_S), counted()
    paths = {path.split("?")[0] for path in logged()}
    for path in ("/livez", "/readyz"):
        assert path not in paths, path
        assert path not in counted(), path


# --- reserved for the platform --------------------------------------------------------------------


@pytest.fixture(scope="module")
def developer(gw: Stack) -> Client:
    return register(gw, "probes")


@pytest.mark.parametrize("path", ["/livez", "/readyz", "/readyz/:part"])
def test_a_route_config_on_a_probe_path_is_refused(gw: Stack, admin: Client,
                                                   developer: Client, path: str):
    project = developer.ok("POST", "/api/v1/projects", {"name": "Probe paths"}, 201)
    url = f"/api/v1/projects/{project['id']}/routes"
    upstream = {"path": path, "method": "GET", "upstreamUrl": PUBLIC_UPSTREAM}
    for client in (developer, admin):  # an upstream config never may
        assert_invalid(client.call("POST", url, upstream), "body", "path")
    service = {"path": path, "method": "GET", "service": "project-service"}
    assert_error(developer.call("POST", url, service), 403, "FORBIDDEN",
                 "Only admins may configure platform paths")
    # and the probe still answers as the platform's
    status, body, _ = call(gw, "GET", "/livez")
    assert (status, body) == (200, {"status": "ok"})


# --- the drain --------------------------------------------------------------------------------


class SlowUpstream(LoopbackServer):
    """Answers every path under /base after `?sleep=` seconds."""

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/base/{tail:.*}", self._answer)

    async def _answer(self, request: web.Request) -> web.Response:
        await asyncio.sleep(float(request.query.get("sleep", "0")))
        return web.json_response({"slept": True})


@dataclass
class Outcome:
    started: float
    status: int | None  # None: the request failed (no answer)
    closing: bool = False  # the answer said `Connection: close`
    error: str = ""


class KeepAliveClient(threading.Thread):
    """Sends GET `path` in a loop over one keep-alive connection, reconnecting when the
    gateway closes it, until `stop` is set; records every request's outcome."""

    def __init__(self, port: int, path: str, token: str, stop: threading.Event) -> None:
        super().__init__(daemon=True)
        self.port, self.path, self.token, self.stop = port, path, token, stop
        self.outcomes: list[Outcome] = []

    def run(self) -> None:
        connection: http.client.HTTPConnection | None = None
        while not self.stop.is_set():
            if connection is None:
                connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
            started = time.monotonic()
            try:
                connection.request("GET", self.path,
                                   headers={"Authorization": f"Bearer {self.token}"})
                response = connection.getresponse()
                response.read()
            except (OSError, http.client.HTTPException) as exc:
                self.outcomes.append(Outcome(started, None, error=repr(exc)))
                connection.close()
                connection = None
                continue
            closing = (response.getheader("Connection") or "").lower() == "close"
            self.outcomes.append(Outcome(started, response.status, closing))
            if closing:
                connection.close()
                connection = None
            time.sleep(0.01)
        if connection is not None:
            connection.close()


@dataclass
class Sample:
    sent: float
    answered: float
    port: int
    status: int | None  # None: no answer
    body: Any


class Prober(threading.Thread):
    """GET /readyz on each port every 50 ms until `stop`."""

    def __init__(self, ports: tuple[int, ...], stop: threading.Event) -> None:
        super().__init__(daemon=True)
        self.ports, self.stop = ports, stop
        self.samples: list[Sample] = []

    def run(self) -> None:
        while not self.stop.is_set():
            for port in self.ports:
                sent = time.monotonic()
                try:
                    status, body = probe(port, "/readyz")
                except OSError:
                    status, body = None, None
                self.samples.append(Sample(sent, time.monotonic(), port, status, body))
            time.sleep(0.05)


def restart(stack: Stack, name: str, **env: str) -> None:
    """Stop `name`, then start it again with `env` changed (for it and later starts), until
    it is ready: a SIGTERM before then stops it without a drain."""
    assert stack.stop(name) == 0
    stack.env = {**stack.env, **env}
    stack.start(name)
    stack.wait_healthy()
    assert eventually(lambda: probe(stack.port(name), "/readyz")[0] == 200, within_s=10)


def refuses_connections(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) != 0


def test_sigterm_drains_the_gateway_while_requests_go_on_then_it_exits_cleanly(
        gw: Stack, admin: Client):
    upstream = SlowUpstream()
    upstream.start()
    try:
        route = f"/e2e-drain-{uuid.uuid4().hex[:8]}/:what"
        project_with_route(gw, admin.token, upstream, route)
        restart(gw, "gateway", SHUTDOWN_DRAIN_S=str(DRAIN_S))
        slow_path = route.replace(":what", "slow")
        assert eventually(lambda: call(gw, "GET", slow_path, token=admin.token)[0] == 200,
                          within_s=5)
        _drain_and_check(gw, admin, slow_path)
    finally:
        gw.env = {**gw.env, "SHUTDOWN_DRAIN_S": "0"}
        if gw.processes["gateway"].poll() is not None:
            gw.start("gateway")
            gw.wait_healthy()
        upstream.stop()


def _drain_and_check(gw: Stack, admin: Client, slow_path: str) -> None:
    port, status_port = gw.port("gateway"), gw.port("gateway_status")
    assert admin.token is not None
    stop_sending, stop_probing = threading.Event(), threading.Event()
    clients = [KeepAliveClient(port, "/api/v1/auth/profile", admin.token, stop_sending)
               for _ in range(4)]
    prober = Prober((port, status_port), stop_probing)
    for thread in (*clients, prober):
        thread.start()
    time.sleep(0.5)  # traffic and probes before the signal

    gateway = gw.processes["gateway"]
    signalled = time.monotonic()
    gateway.send_signal(signal.SIGTERM)
    # a request in flight when the listener closes (after the drain) still gets its answer
    time.sleep(1.0)
    in_flight: dict[str, Any] = {}
    slow = threading.Thread(target=lambda: in_flight.update(
        answer=call(gw, "GET", f"{slow_path}?sleep=2", token=admin.token)))
    slow.start()
    time.sleep(0.3)  # well inside the drain: a load balancer would have stopped by now
    stop_sending.set()
    stop_probing.set()
    for thread in (*clients, prober):
        thread.join(10)
    time.sleep(max(0.0, signalled + DRAIN_S + 0.4 - time.monotonic()))
    assert gateway.poll() is None, "gone before the request in flight was answered"
    assert refuses_connections(port), "the listener is still open after the drain"

    assert gateway.wait(20) == 0, gw.logs("gateway")
    exited = time.monotonic()
    slow.join(10)
    assert in_flight["answer"][0] == 200, in_flight
    assert exited - signalled >= DRAIN_S

    outcomes = [outcome for client in clients for outcome in client.outcomes]
    before = [o for o in outcomes if o.started < signalled]
    after = [o for o in outcomes if o.started >= signalled]
    assert before and all(o.status == 200 for o in before), before
    assert len(after) >= 10, after
    failed = [o for o in after if o.status != 200]
    assert not failed, failed  # no request started after the signal failed
    # keep-alive until the drain, then every answer closes its connection
    assert not all(o.closing for o in before)
    assert all(o.closing for o in after if o.started >= signalled + 0.3), after

    for probed in (port, status_port):
        samples = [s for s in prober.samples if s.port == probed]
        early = [s for s in samples if s.answered < signalled]
        late = [s for s in samples if s.sent >= signalled + 0.3]
        assert early and all(s.status == 200 for s in early), early
        assert late and all(s.status == 503 and s.body == {"status": "draining", "checks": []}
                            for s in late), late


def test_sigterm_drains_a_service_then_it_exits_cleanly(gw: Stack):
    restart(gw, "logging_svc", SHUTDOWN_DRAIN_S="2")
    try:
        port = gw.port("logging_svc")
        service = gw.processes["logging_svc"]
        signalled = time.monotonic()
        service.send_signal(signal.SIGTERM)
        assert eventually(lambda: probe(port, "/readyz")[0] == 503, within_s=0.5)
        assert probe(port, "/readyz") == (503, {"status": "draining", "checks": []})
        assert probe(port, "/livez") == (200, {"status": "ok"})  # still serving
        # and still working: the gateway's deep health still finds it over RPC
        status, body = get_json(f"{gw.gateway_url}/health")
        assert status == 200, body
        assert service.wait(20) == 0, gw.logs("logging_svc")
        assert time.monotonic() - signalled >= 2.0
    finally:
        gw.env = {**gw.env, "SHUTDOWN_DRAIN_S": "0"}
        gw.start("logging_svc")
        gw.wait_healthy()
