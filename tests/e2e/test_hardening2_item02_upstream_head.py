"""Issue 19, item 2: an upstream's answer head is bounded (UPSTREAM_MAX_HEADER_BYTES,
UPSTREAM_MAX_HEADER_FIELDS). Before, an upstream answering 200 with 8,000 header lines of 1 KB
had its 8 MB head relayed whole, and the gateway's memory grew with it."""

from __future__ import annotations

import http.client
import socketserver
import threading
import uuid
from collections.abc import Iterator

import pytest

from tests.e2e.conftest import Stack
from tests.e2e.helpers import (
    Client,
    Response,
    assert_error,
    call,
    eventually,
    header,
    project_with_route,
)

BIG_LINE = "v" * 1000


class HeadUpstream:
    """A raw HTTP upstream on loopback whose answer's head depends on the path's last segment:
    `huge` (8,000 header lines of 1 KB), `many` (150 small fields), anything else a small one.
    Raw, because no HTTP server library sends heads like these."""

    def __init__(self) -> None:
        self._server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    @staticmethod
    def _handler() -> type[socketserver.StreamRequestHandler]:
        class Handler(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                target = self.rfile.readline().split(b" ")[1].decode()
                while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass
                kind = target.rstrip("/").rsplit("/", 1)[-1]
                try:
                    self.wfile.write(b"HTTP/1.1 200 OK\r\n")
                    for line in _fields_of(kind):
                        self.wfile.write(line.encode() + b"\r\n")
                    body = b'{"small": true}'
                    self.wfile.write(b"Content-Type: application/json\r\nConnection: close\r\n"
                                     b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
                except OSError:  # the gateway stopped reading and closed: what we want
                    pass

        return Handler


def _fields_of(kind: str) -> Iterator[str]:
    if kind == "huge":
        return (f"X-Big-{n}: {BIG_LINE}" for n in range(8000))
    if kind == "many":
        return (f"X-Field-{n}: {n}" for n in range(150))
    return iter(["X-Small: relayed"])


@pytest.fixture(scope="module")
def head_upstream() -> Iterator[HeadUpstream]:
    server = HeadUpstream()
    server.start()
    yield server
    server.stop()


def get(gw: Stack, path: str) -> Response:
    try:
        return call(gw, "GET", path)
    except http.client.HTTPException as exc:  # urllib refuses heads of over 100 fields
        raise AssertionError(f"the gateway relayed the upstream's head: {exc!r}") from None


def route_to(gw: Stack, owner: Client, upstream: HeadUpstream, base: str) -> str:
    """A new route config `<prefix>/:what` to `upstream` + `base`; its prefix, once served."""
    prefix = f"/head-{uuid.uuid4().hex[:10]}"
    project_with_route(gw, owner.token, upstream, f"{prefix}/:what",
                       upstreamUrl=f"http://127.0.0.1:{upstream.port}{base}")
    assert eventually(lambda: call(gw, "GET", f"{prefix}/small")[0] == 200)
    return prefix


def test_item_02_an_upstream_answer_with_a_huge_head_is_a_502(gw: Stack, alice: Client,
                                                              head_upstream: HeadUpstream):
    prefix = route_to(gw, alice, head_upstream, "/base")
    status, body, headers = call(gw, "GET", f"{prefix}/small")
    assert (status, body, header(headers, "X-Small")) == (200, {"small": True}, "relayed")
    # 8 MB of header lines (over 64 KB), and 150 fields (over 100)
    for kind in ("huge", "many"):
        body = assert_error(get(gw, f"{prefix}/{kind}"), 502, "UPSTREAM_ERROR")
        assert "X-Big" not in str(body)
    # the gateway is no worse for it: a small head is still relayed
    status, body, headers = call(gw, "GET", f"{prefix}/small")
    assert (status, body, header(headers, "X-Small")) == (200, {"small": True}, "relayed")


def test_item_02_huge_heads_count_against_the_upstreams_breaker(gw: Stack, alice: Client,
                                                               head_upstream: HeadUpstream):
    prefix = route_to(gw, alice, head_upstream, "/breaker")  # a breaker of its own
    for _ in range(5):  # the breaker's threshold
        assert_error(get(gw, f"{prefix}/huge"), 502, "UPSTREAM_ERROR")
    assert_error(call(gw, "GET", f"{prefix}/small"), 503, "SERVICE_UNAVAILABLE",
                 "Upstream is failing; circuit open")
