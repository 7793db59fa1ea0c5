"""Issue 19, item 6: information leaks. Before, every answer the gateway made itself carried
`Server: Python/3.11 aiohttp/3.x`, and requests aiohttp's parser refused were answered in
plain text, outside the error envelope (docs/api.md section 2)."""

from __future__ import annotations

import http.client
import json
import re
import socket
import socketserver
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator

import pytest

from tests.e2e.conftest import Stack
from tests.e2e.helpers import (
    UUID4,
    BrokerTap,
    Client,
    assert_error,
    call,
    eventually,
    header,
    project_with_route,
    raw,
)

VERSIONED = re.compile(r"aiohttp|python|/\s*\d", re.I)


def assert_no_version(headers: dict[str, str], what: str = "") -> None:
    server = header(headers, "Server")
    assert server is None or not VERSIONED.search(server), (what, server)


class NamedUpstream:
    """A raw HTTP upstream on loopback answering every request with its own `Server`."""

    def __init__(self) -> None:
        class Handler(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass
                body = b'{"upstream": true}'
                self.wfile.write(b"HTTP/1.1 200 OK\r\nServer: upstream-x/1.0\r\n"
                                 b"Content-Type: application/json\r\nConnection: close\r\n"
                                 b"Content-Length: %d\r\n\r\n%s" % (len(body), body))

        self._server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture(scope="module")
def named_upstream() -> Iterator[NamedUpstream]:
    server = NamedUpstream()
    yield server
    server.stop()


def exchange(gw: Stack, data: bytes) -> tuple[int, dict[str, str], bytes]:
    """Raw bytes to the gateway's port; its answer (status, headers, body), read to the close."""
    with socket.create_connection(("127.0.0.1", int(gw.env["GATEWAY_PORT"])), timeout=10) as sock:
        sock.sendall(data)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {k: v for k, _, v in (line.partition(": ") for line in lines)}
    return int(status_line.split()[1]), headers, body


MALFORMED = [
    b"GARBAGE\r\n\r\n",
    b"GET /health HTTP/1.1\r\nHost: localhost\r\nNoColonHere\r\n\r\n",
    b"GET /health HTTP/1.1\r\nHost: localhost\r\nBad Name: y\r\n\r\n",
    b"GET /" + b"a" * 10_000 + b" HTTP/1.1\r\nHost: localhost\r\n\r\n",
]


def test_item_06_the_gateways_own_answers_name_no_version(gw: Stack, alice: Client):
    answers = {
        "health": call(gw, "GET", "/health"),
        "404": call(gw, "GET", f"/no-such-route-{uuid.uuid4().hex[:8]}"),
        "api": call(gw, "GET", "/api/v1/auth/profile", token=alice.token),
        "401": call(gw, "GET", "/api/v1/auth/profile"),
        "400": raw(gw, "POST", "/api/v1/auth/login", b"{not json"),
    }
    assert [answers[k][0] for k in answers] == [200, 404, 200, 401, 400]
    for name, (_, _, headers) in answers.items():
        assert_no_version(headers, name)
    with urllib.request.urlopen(f"{gw.gateway_url}/api-docs/openapi.json", timeout=10) as docs:
        assert_no_version(dict(docs.headers), "docs")
    status_port = f"http://127.0.0.1:{gw.port('gateway_status')}/metrics"
    with urllib.request.urlopen(status_port, timeout=10) as metrics:
        assert_no_version(dict(metrics.headers), "metrics")


def test_item_06_a_proxied_answer_keeps_the_upstreams_server_header(
        gw: Stack, alice: Client, named_upstream: NamedUpstream):
    prefix = f"/named-{uuid.uuid4().hex[:10]}"
    project_with_route(gw, alice.token, named_upstream, f"{prefix}/:x",
                       upstreamUrl=f"http://127.0.0.1:{named_upstream.port}/base")
    assert eventually(lambda: call(gw, "GET", f"{prefix}/up")[0] == 200)
    connection = http.client.HTTPConnection("127.0.0.1", int(gw.env["GATEWAY_PORT"]), timeout=10)
    connection.request("GET", f"{prefix}/up")
    response = connection.getresponse()
    assert (response.status, json.loads(response.read())) == (200, {"upstream": True})
    assert response.headers.get_all("Server") == ["upstream-x/1.0"]  # unchanged, and alone
    connection.close()


@pytest.mark.parametrize("request_bytes", MALFORMED,
                         ids=["request-line", "no-colon", "space-in-name", "long-line"])
def test_item_06_malformed_requests_get_the_json_envelope(gw: Stack, request_bytes: bytes):
    status, headers, body = exchange(gw, request_bytes)
    assert 400 <= status < 500, body
    assert header(headers, "Content-Type").startswith("application/json"), headers
    envelope = assert_error((status, json.loads(body), headers), status, "BAD_REQUEST")
    assert envelope["message"] == "Malformed HTTP request"
    assert_no_version(headers)


def test_item_06_malformed_requests_are_no_requests_of_the_logs(gw: Stack):
    """No request.completed event: what the parser refused reached no route."""
    tap = BrokerTap(gw, "request.completed")
    try:
        refused = {json.loads(exchange(gw, data)[2])["requestId"] for data in MALFORMED}
        assert all(UUID4.match(request_id) for request_id in refused)
        # a request that is reported (a 404 is), after them
        _, _, headers = call(gw, "GET", f"/after-the-refused-{uuid.uuid4().hex[:8]}")
        marker = header(headers, "X-Request-Id")
        seen: set[str] = set()

        def marker_seen() -> bool:
            seen.update(event["requestId"] for event in tap.events())
            return marker in seen

        assert eventually(marker_seen, within_s=10), "the marker's event never came"
        time.sleep(0.5)  # events of one publisher arrive in order; a margin all the same
        marker_seen()
        assert not refused & seen
    finally:
        tap.close()
