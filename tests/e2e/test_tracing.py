"""W3C trace context end to end (docs/api.md sections 1.2, 6.4 and 7.1; docs/architecture.md
section 12): a client's `traceparent` reaches the upstream (same trace, the gateway's span as
the parent, `tracestate` unchanged), the request's log entry and every JSON log line of it,
the gateway's and the service's; a request without one, or with an invalid one, gets a new
trace (never a 4xx); and spans exported over OTLP to a receiver of the test's own when
OTEL_EXPORTER_OTLP_ENDPOINT is set, none otherwise.

This module's `gw` stack exports nothing (no OTEL_EXPORTER_OTLP_ENDPOINT). Its processes log
at INFO, so the gateway's access line of every request is there to read.
"""

from __future__ import annotations

import http.client
import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from contracts.tracing import SAMPLED, TraceContext, new_span_id, new_trace_id, parse_traceparent
from tests.conftest import TEST_VHOST
from tests.e2e.conftest import Stack, healthy_stack
from tests.e2e.helpers import (
    Client,
    Upstream,
    call,
    eventually,
    header,
    project_with_route,
    register,
    wait_for_entry,
)
from tests.otlp_receiver import OtlpReceiver, ReceivedSpan
from tests.support import free_port, rabbit_api, recreate_vhost

TRACESTATE = "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"
ENTRY_WITHIN_S = 10.0  # a loaded machine: the pipeline's own bound is tests/e2e/test_logs_api
INVALID = [
    "00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-01",  # uppercase
    "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",  # version ff
    "00-00000000000000000000000000000000-00f067aa0ba902b7-01",  # all-zero trace id
    "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",  # all-zero parent id
    "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",  # 00 with a 5th field
    "not a traceparent",
]


@pytest.fixture(scope="module")
def silent_collector() -> Iterator[OtlpReceiver]:
    """Where this module's `gw` stack would send spans if anything exported them."""
    receiver = OtlpReceiver()
    receiver.start()
    yield receiver
    receiver.stop()


@pytest.fixture(scope="module")
def gw_settings(silent_collector: OtlpReceiver) -> dict[str, str]:
    # no OTEL_EXPORTER_OTLP_ENDPOINT; the SDK's own per-signal variable points at the
    # silent collector, so an exporter made from the environment alone would be seen there
    return {"LOG_LEVEL": "INFO", "OTEL_BSP_SCHEDULE_DELAY": "50",
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": f"{silent_collector.endpoint}/v1/traces"}


@pytest.fixture
def own_broker() -> Iterator[str]:
    """AMQP_URL on a vhost of the test's own (deleted afterwards): on the module's vhost, the
    `gw` stack's services, which export nothing, would take some of another stack's RPCs."""
    vhost = f"{TEST_VHOST}-otel"
    recreate_vhost(vhost)
    yield f"{os.environ['AMQP_URL'].rsplit('/', 1)[0]}/{vhost}"
    rabbit_api("DELETE", f"/vhosts/{vhost}")


def a_caller() -> TraceContext:
    """A client's span: a trace of the test's own."""
    return TraceContext(new_trace_id(), new_span_id(), SAMPLED)


def upstream_route(stack: Stack, owner: Client, upstream: Upstream, **route: Any) -> str:
    """The path of a new route config in a new project of `owner`'s, proxied to `upstream`
    (unless `route` says otherwise), once the gateway applies it."""
    path = f"/traced-{uuid.uuid4().hex[:10]}"
    project_with_route(stack, owner.token or "", upstream, path, **route)
    assert eventually(lambda: call(stack, "GET", path)[0] != 404, 5), "route never applied"
    return path


def seen_upstream(upstream: Upstream, trace_id: str) -> dict[str, Any]:
    """What the upstream received in the trace `trace_id`."""
    found = eventually(lambda: [r for r in upstream.seen
                                if trace_id in (header(r["headers"], "traceparent") or "")])
    assert found, f"no upstream request in trace {trace_id}"
    return found[-1]


def traceresponse(headers: dict[str, str]) -> TraceContext:
    answer = parse_traceparent(header(headers, "traceresponse") or "")
    assert answer is not None, headers
    return answer


def json_lines(stack: Stack, process: str) -> list[dict[str, Any]]:
    """Every JSON line a process of the stack wrote so far."""
    lines = (stack.log_dir / f"{process}.log").read_text(errors="replace").splitlines()
    return [json.loads(line) for line in lines if line.startswith("{")]


def logged(stack: Stack, process: str, **fields: Any) -> list[dict[str, Any]]:
    """The JSON lines of `process` with these values, once there is one (or none)."""
    def matching() -> list[dict[str, Any]]:
        return [line for line in json_lines(stack, process)
                if all(line.get(name) == value for name, value in fields.items())]

    return eventually(matching, 5) or []


# --- propagation -------------------------------------------------------------------------------


def test_a_clients_trace_reaches_the_upstream_and_the_log_entry(gw, upstream, alice):
    path = upstream_route(gw, alice, upstream)
    caller = a_caller()
    status, _, headers = call(gw, "GET", path, headers={
        "traceparent": caller.traceparent, "tracestate": TRACESTATE})
    assert status == 200

    sent = seen_upstream(upstream, caller.trace_id)
    received = parse_traceparent(header(sent["headers"], "traceparent") or "")
    assert received is not None and received.trace_id == caller.trace_id
    assert received.span_id != caller.span_id and received.sampled  # the gateway's span
    assert header(sent["headers"], "tracestate") == TRACESTATE
    # the client is told the trace and the gateway's span: the upstream's parent
    assert traceresponse(headers) == TraceContext(caller.trace_id, received.span_id, SAMPLED)

    entry = wait_for_entry(gw, alice.token, header(headers, "X-Request-Id"), ENTRY_WITHIN_S)
    assert entry is not None and entry["traceId"] == caller.trace_id, entry


def test_an_unsampled_trace_stays_unsampled(gw, upstream, alice):
    path = upstream_route(gw, alice, upstream)
    caller = TraceContext(new_trace_id(), new_span_id(), 0)
    status, _, headers = call(gw, "GET", path, headers={"traceparent": caller.traceparent,
                                                        "tracestate": TRACESTATE})
    assert status == 200
    sent = seen_upstream(upstream, caller.trace_id)
    received = parse_traceparent(header(sent["headers"], "traceparent") or "")
    assert received is not None and not received.sampled
    assert header(sent["headers"], "tracestate") == TRACESTATE  # passed on all the same
    assert not traceresponse(headers).sampled


def test_without_a_traceparent_a_new_trace_is_the_same_everywhere(gw, upstream, alice):
    path = upstream_route(gw, alice, upstream)
    status, _, headers = call(gw, "GET", path)
    assert status == 200
    answer = traceresponse(headers)
    sent = seen_upstream(upstream, answer.trace_id)
    assert header(sent["headers"], "traceparent") == answer.traceparent
    assert answer.sampled
    entry = wait_for_entry(gw, alice.token, header(headers, "X-Request-Id"), ENTRY_WITHIN_S)
    assert entry is not None and entry["traceId"] == answer.trace_id, entry


@pytest.mark.parametrize("invalid", INVALID)
def test_an_invalid_traceparent_starts_a_new_trace(gw, upstream, alice, invalid):
    path = upstream_route(gw, alice, upstream)
    status, body, headers = call(gw, "GET", path, headers={
        "traceparent": invalid, "tracestate": TRACESTATE})
    assert status == 200, body  # never refused for its trace header
    answer = traceresponse(headers)
    assert answer.trace_id not in invalid.lower()
    sent = seen_upstream(upstream, answer.trace_id)
    assert header(sent["headers"], "traceparent") == answer.traceparent
    assert header(sent["headers"], "tracestate") is None  # not read without a valid parent
    entry = wait_for_entry(gw, alice.token, header(headers, "X-Request-Id"), ENTRY_WITHIN_S)
    assert entry is not None and entry["traceId"] == answer.trace_id, entry


def test_two_traceparent_fields_start_a_new_trace(gw, upstream, alice):
    path = upstream_route(gw, alice, upstream)
    caller, other = a_caller(), a_caller()
    connection = http.client.HTTPConnection("127.0.0.1", gw.port("gateway"), timeout=30)
    try:
        connection.putrequest("GET", path)
        connection.putheader("traceparent", caller.traceparent)
        connection.putheader("traceparent", other.traceparent)
        connection.endheaders()
        response = connection.getresponse()
        response.read()
    finally:
        connection.close()
    assert response.status == 200
    answer = traceresponse(dict(response.getheaders()))
    assert answer.trace_id not in (caller.trace_id, other.trace_id)  # neither first nor last
    assert header(seen_upstream(upstream, answer.trace_id)["headers"], "traceparent") == \
        answer.traceparent


def test_an_rpc_routes_log_entry_has_the_trace(gw, alice):
    caller = a_caller()
    status, _, headers = call(gw, "GET", "/api/v1/auth/profile", token=alice.token,
                              headers={"traceparent": caller.traceparent})
    assert status == 200
    assert traceresponse(headers).trace_id == caller.trace_id
    entry = wait_for_entry(gw, alice.token, header(headers, "X-Request-Id"), ENTRY_WITHIN_S)
    assert entry is not None and entry["traceId"] == caller.trace_id, entry


def test_the_services_log_lines_carry_the_trace(gw):
    """A line the auth service logs while handling the call (a refresh token used twice)
    carries the client's trace id."""
    email = f"traced-{uuid.uuid4().hex[:12]}@example.com"
    status, session, _ = call(gw, "POST", "/api/v1/auth/register",
                              {"email": email, "password": "Passw0rdX", "name": "Traced"})
    assert status == 201
    first = {"refreshToken": session["refreshToken"]}
    assert call(gw, "POST", "/api/v1/auth/refresh", first)[0] == 200  # rotated
    caller = a_caller()
    status, _, _ = call(gw, "POST", "/api/v1/auth/refresh", first,
                        headers={"traceparent": caller.traceparent})  # reused
    assert status == 401
    lines = logged(gw, "auth_svc", event="refresh token reused; its family is revoked",
                   trace_id=caller.trace_id)
    assert len(lines) == 1, json_lines(gw, "auth_svc")[-5:]


def test_the_gateways_log_lines_carry_the_trace_of_their_request_only(gw, alice):
    """On one keep-alive connection: a traced request's access line has its trace id, the
    health probe after it (exempt traffic) none, and the next request a trace of its own
    (aiohttp runs each request in a task of its own, so this checks that each line is bound
    to its request's trace, not a leak across requests)."""
    caller = a_caller()
    connection = http.client.HTTPConnection("127.0.0.1", gw.port("gateway"), timeout=30)
    answers = []
    try:
        for path, headers in (
                ("/api/v1/auth/profile", {"traceparent": caller.traceparent}),
                ("/health", {}),
                ("/api/v1/auth/profile", {})):
            connection.request("GET", path, headers={
                "Authorization": f"Bearer {alice.token}", **headers})
            response = connection.getresponse()
            response.read()
            answers.append(dict(response.getheaders()))
    finally:
        connection.close()
    traced, health, untraced = (header(a, "X-Request-Id") for a in answers)
    [line] = logged(gw, "gateway", event="request", request_id=traced)
    assert line["trace_id"] == caller.trace_id
    [line] = logged(gw, "gateway", event="request", request_id=health)
    assert "trace_id" not in line and header(answers[1], "traceresponse") is None
    [line] = logged(gw, "gateway", event="request", request_id=untraced)
    assert line["trace_id"] == traceresponse(answers[2]).trace_id != caller.trace_id


# --- export ------------------------------------------------------------------------------------


def one(spans: list[ReceivedSpan]) -> ReceivedSpan:
    assert len(spans) == 1, spans
    return spans[0]


def test_spans_are_exported_over_otlp(backends, tmp_path: Path, upstream, collector,
                                      own_broker: str):
    with healthy_stack(tmp_path, UPSTREAM_ALLOW_PRIVATE="127.0.0.0/8", AMQP_URL=own_broker,
                       OTEL_EXPORTER_OTLP_ENDPOINT=collector.endpoint,
                       OTEL_BSP_SCHEDULE_DELAY="100") as stack:
        dev = register(stack, "otel")
        path = upstream_route(stack, dev, upstream)

        # an upstream route: the gateway's server span, parented on the client's, and its
        # client span for the upstream call, the upstream's parent
        caller = a_caller()
        status, _, headers = call(stack, "GET", path, headers={
            "traceparent": caller.traceparent, "tracestate": TRACESTATE})
        assert status == 200
        in_trace = collector.wait_for(trace_id=caller.trace_id, count=2)
        server = one([s for s in in_trace if s.kind == "server"])
        assert (server.service, server.name, server.parent_span_id) == \
            ("gateway", f"GET {path}", caller.span_id)
        assert server.attributes["http.route"] == path
        assert server.attributes["http.response.status_code"] == 200
        assert server.trace_state == TRACESTATE and not server.error
        assert traceresponse(headers).span_id == server.span_id
        client = one([s for s in in_trace if s.kind == "client"])
        assert (client.service, client.parent_span_id) == ("gateway", server.span_id)
        assert client.attributes["server.port"] == upstream.port and not client.error
        sent = seen_upstream(upstream, caller.trace_id)
        assert header(sent["headers"], "traceparent") == \
            f"00-{caller.trace_id}-{client.span_id}-01"

        # an RPC route: the service's server span is parented on the gateway's RPC span
        caller = a_caller()
        status, _, _ = call(stack, "GET", "/api/v1/auth/profile", token=dev.token,
                            headers={"traceparent": caller.traceparent})
        assert status == 200
        collector.wait_for(trace_id=caller.trace_id, count=3)
        server = one(collector.spans(trace_id=caller.trace_id, service="gateway",
                                     kind="server"))
        assert (server.name, server.parent_span_id) == ("GET /api/v1/auth/profile",
                                                        caller.span_id)
        rpc = one(collector.spans(trace_id=caller.trace_id, service="gateway", kind="client"))
        assert (rpc.name, rpc.parent_span_id) == ("auth.profile", server.span_id)
        assert rpc.attributes["messaging.destination.name"] == "rpc.auth"
        handled = one(collector.spans(trace_id=caller.trace_id, service="auth-service"))
        assert (handled.kind, handled.name, handled.parent_span_id) == \
            ("server", "auth.profile", rpc.span_id)
        assert handled.attributes["rpc.response.status_code"] == 200

        # a service calling another carries the trace on: logging -> project
        project_id = call(stack, "GET", "/api/v1/projects", token=dev.token)[1]["projects"][0]["id"]
        caller = a_caller()
        status, _, _ = call(stack, "GET", f"/api/v1/logs?projectId={project_id}",
                            token=dev.token, headers={"traceparent": caller.traceparent})
        assert status == 200
        collector.wait_for(trace_id=caller.trace_id, count=5)
        listed = one(collector.spans(trace_id=caller.trace_id, service="logging-service",
                                     kind="server"))
        asked = one(collector.spans(trace_id=caller.trace_id, service="logging-service",
                                    kind="client"))
        answered = one(collector.spans(trace_id=caller.trace_id, service="project-service"))
        assert (listed.name, asked.name, answered.name) == \
            ("log.list", "project.get", "project.get")
        assert asked.parent_span_id == listed.span_id
        assert answered.parent_span_id == asked.span_id

        # a failing upstream: both of the gateway's spans have an error status
        broken = upstream_route(stack, dev, upstream,
                                upstreamUrl=f"http://127.0.0.1:{free_port()}/base")
        caller = a_caller()
        status, _, _ = call(stack, "GET", broken, headers={"traceparent": caller.traceparent})
        assert status == 502
        failed = collector.wait_for(trace_id=caller.trace_id, count=2)
        assert {(s.kind, s.error) for s in failed} == {("server", True), ("client", True)}


def test_without_an_endpoint_nothing_is_exported(gw, upstream, alice, silent_collector):
    """This module's stack has no OTEL_EXPORTER_OTLP_ENDPOINT: after every request above and
    these, nothing reached the collector the SDK's own variable names (an exporter built
    from the environment alone would have sent there). That no SDK object exists at all is
    tests/unit/test_tracing.py's subprocess check."""
    path = upstream_route(gw, alice, upstream)
    for _ in range(3):
        assert call(gw, "GET", path, headers={"traceparent": a_caller().traceparent})[0] == 200
        assert call(gw, "GET", "/api/v1/auth/profile", token=alice.token)[0] == 200
    assert eventually(lambda: silent_collector.requests > 0, 1.0) is False
    assert silent_collector.spans() == []
