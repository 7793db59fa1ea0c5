"""The gateway in front of a real local upstream: route configs followed from events, upstream
auth with API keys and tokens, key revocation, streaming, timeouts, the circuit breaker,
rate-limit overrides, and a request.completed event for every answer."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import aio_pika
import pytest

from contracts.messages import RequestCompleted, decode_events
from tests.e2e.conftest import Stack, healthy_stack
from tests.e2e.helpers import (
    call,
    developer,
    eventually,
    project_with_route,
    raw,
    register,
    with_role,
)


@pytest.fixture(scope="module")
def gw(backends, tmp_path_factory, upstream) -> Iterator[Stack]:
    with healthy_stack(tmp_path_factory.mktemp("proxy"), UPSTREAM_ALLOW_PRIVATE="127.0.0.0/8",
                       UPSTREAM_TIMEOUT_S="1", UPSTREAM_CONNECT_TIMEOUT_S="1") as running:
        yield running


def test_upstream_route_proxies_with_query_and_clean_headers(gw, upstream):
    token = developer(gw)
    _, config = project_with_route(gw, token, upstream, f"/shop-{uuid.uuid4().hex[:6]}/:id")
    path = config["path"].replace(":id", "7") + "?a=1&b=two"

    def proxied():
        status, body, headers = call(gw, "GET", path, headers={
            "Cookie": "session=secret", "X-API-Key": "", "X-Custom": "kept"})
        return (status, body, headers) if status == 200 else None

    _, body, headers = eventually(proxied)  # the config arrives by event, within 1 s
    assert body["path_qs"] == "/base" + path
    sent = {k.lower(): v for k, v in body["headers"].items()}
    assert "cookie" not in sent and "authorization" not in sent
    assert sent["x-custom"] == "kept"
    assert sent.get("accept-encoding") == "identity"  # the client's own, not the proxy's
    # an anonymous upstream does not refuse a bad token, it just ignores it
    assert call(gw, "GET", path, headers={"Authorization": "Bearer junk"})[0] == 200
    assert sent["x-forwarded-for"] == "127.0.0.1"
    assert sent["x-request-id"] == headers["X-Request-Id"]
    assert headers["X-Upstream"] == "yes"
    assert "X-RateLimit-Limit" in headers


def test_auth_required_upstream_takes_project_keys_and_owner_tokens(gw, upstream):
    owner, stranger = developer(gw), developer(gw)
    project_id, config = project_with_route(gw, owner, upstream,
                                            f"/private-{uuid.uuid4().hex[:6]}",
                                            authRequired=True)
    status, key, _ = call(gw, "POST", f"/api/v1/projects/{project_id}/keys", {"name": "k"},
                          owner)
    assert status == 201
    path = config["path"]
    assert eventually(lambda: call(gw, "GET", path)[0] == 401)
    assert call(gw, "GET", path, token=owner)[0] == 200
    assert call(gw, "GET", path, token=stranger)[0] == 401
    assert call(gw, "GET", path, headers={"X-API-Key": key["key"]})[0] == 200
    assert call(gw, "GET", path, headers={"X-API-Key": "gw_" + "0" * 64})[0] == 403

    status, _, _ = call(gw, "DELETE", f"/api/v1/keys/{key['id']}", token=owner)
    assert status == 200
    started = time.monotonic()
    refused = eventually(lambda: call(gw, "GET", path, headers={"X-API-Key": key["key"]}),
                         within_s=0)
    while refused[0] != 403 and time.monotonic() - started < 5:
        refused = call(gw, "GET", path, headers={"X-API-Key": key["key"]})
    assert refused[0] == 403 and refused[1]["message"] == "Key revoked"
    assert time.monotonic() - started < 1.0


def status_of(stack: Stack, path: str) -> int:
    try:
        with urllib.request.urlopen(stack.gateway_url + path, timeout=30) as response:
            response.read()
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_fifty_megabytes_stream_through_with_flat_memory(gw, upstream):
    token = developer(gw)
    project_with_route(gw, token, upstream, "/big")  # the upstream serves /base/big
    assert eventually(lambda: status_of(gw, "/big?mb=1") == 200)
    gateway_pid = gw.processes["gateway"].pid
    before = rss_kb(gateway_pid)
    received = 0
    with socket.create_connection(("127.0.0.1", int(gw.env["GATEWAY_PORT"])), timeout=30) as s:
        s.sendall(b"GET /big?mb=50 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        while chunk := s.recv(1 << 20):
            received += len(chunk)
    after = rss_kb(gateway_pid)
    assert received > 50 * 1024 * 1024
    assert after - before < 30 * 1024, f"gateway RSS grew by {(after - before) // 1024} MiB"


def test_upstream_timeout_is_504_and_failures_open_the_breaker(gw, upstream):
    token = developer(gw)
    project_with_route(gw, token, upstream, "/slow")
    eventually(lambda: call(gw, "GET", "/slow")[0] != 404, within_s=3)
    status, body, _ = call(gw, "GET", "/slow")
    assert status == 504 and body["error"] == "UPSTREAM_ERROR"

    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        dead_port = probe.getsockname()[1]
    path = f"/dead-{uuid.uuid4().hex[:6]}"
    project_with_route(gw, token, upstream, path, upstreamUrl=f"http://127.0.0.1:{dead_port}")
    eventually(lambda: call(gw, "GET", path)[0] != 404)
    statuses = [call(gw, "GET", path)[0] for _ in range(7)]
    assert statuses[:4] == [502] * 4 and statuses[-1] == 503, statuses


def test_route_config_rate_limit_overrides_the_tier(gw, upstream):
    token = developer(gw)
    path = f"/limited-{uuid.uuid4().hex[:6]}"
    project_with_route(gw, token, upstream, path, rateLimit=3)
    assert eventually(lambda: call(gw, "GET", path)[2].get("X-RateLimit-Limit") == "3")
    statuses = [call(gw, "GET", path)[0] for _ in range(3)]
    assert statuses[-1] == 429


@pytest.fixture
def completed_events(gw):
    """Collect request.completed events from a queue of this test, bound to gw.events, decoded
    as their consumers decode them (an event that does not decode fails the test)."""
    found: list[RequestCompleted] = []
    malformed: list = []
    ready = threading.Event()
    stop = threading.Event()

    async def consume() -> None:
        connection = await aio_pika.connect(gw.env["AMQP_URL"])
        channel = await connection.channel()
        exchange = await channel.get_exchange("gw.events")
        queue = await channel.declare_queue(exclusive=True)
        await queue.bind(exchange, "request.completed")
        ready.set()
        while not stop.is_set():
            message = await queue.get(fail=False)
            if message is None:
                await asyncio.sleep(0.05)
                continue
            batch = decode_events(message.routing_key, message.body)
            malformed.extend(batch.malformed)
            found.extend(batch.events)
            await message.ack()
        await connection.close()

    thread = threading.Thread(target=lambda: asyncio.run(consume()), daemon=True)
    thread.start()
    ready.wait(10)
    yield found
    stop.set()
    thread.join(10)
    assert malformed == [], "the gateway published events its consumers cannot decode"


def test_bad_inputs_get_envelopes_headers_and_events(gw, completed_events):
    token = developer(gw)
    answers = [
        (raw(gw, "POST", "/api/v1/auth/login", b'{"email": '), 400, "BAD_REQUEST"),
        (raw(gw, "POST", "/api/v1/auth/register", b"x" * (2 * 1024 * 1024)), 413,
         "PAYLOAD_TOO_LARGE"),
        (call(gw, "GET", "/api/v1/definitely-not-here"), 404, "NOT_FOUND"),
        (call(gw, "GET", "/api/v1/projects?limit=abc", token=token), 400, "VALIDATION_ERROR"),
        (call(gw, "POST", "/api/v1/auth/login", {"email": 3}), 400, "VALIDATION_ERROR"),
    ]
    request_ids = []
    for (status, body, headers), expected_status, code in answers:
        assert (status, body["error"]) == (expected_status, code)
        assert body["statusCode"] == status and body["requestId"] == headers["X-Request-Id"]
        assert "X-RateLimit-Limit" in headers
        request_ids.append((headers["X-Request-Id"], status))

    def all_seen():
        seen = {e.request_id: e.status_code for e in completed_events}
        return all(seen.get(r) == status for r, status in request_ids)

    assert eventually(all_seen, within_s=5), "a response without its request.completed event"


def test_twenty_concurrent_misses_make_one_upstream_call(gw, upstream):
    token = developer(gw)
    name = f"sf{uuid.uuid4().hex[:6]}"
    project_with_route(gw, token, upstream, f"/counted/{name}", cacheTTL=60)
    # a different query is a different entry: warm-up requests don't touch the tested key
    assert eventually(lambda: call(gw, "GET", f"/counted/{name}?warm=1")[0] == 200)
    calls_before = upstream.counts[name]

    with ThreadPoolExecutor(20) as pool:
        answers = list(pool.map(lambda _: call(gw, "GET", f"/counted/{name}?b=2&a=1"),
                                range(20)))

    assert [a[0] for a in answers] == [200] * 20
    assert upstream.counts[name] - calls_before == 1
    assert sorted(a[2]["X-Cache"] for a in answers) == ["HIT"] * 19 + ["MISS"]
    again = call(gw, "GET", f"/counted/{name}?a=1&b=2")  # same query, other order
    assert again[2]["X-Cache"] == "HIT" and "Age" in again[2]


def test_no_store_responses_are_never_cached(gw, upstream):
    token = developer(gw)
    name = f"nostore{uuid.uuid4().hex[:6]}"
    project_with_route(gw, token, upstream, f"/counted/{name}", cacheTTL=60)
    assert eventually(lambda: call(gw, "GET", f"/counted/{name}")[0] == 200)
    second = call(gw, "GET", f"/counted/{name}")
    assert second[2]["X-Cache"] == "MISS" and second[1]["calls"] >= 2


def test_a_refused_request_never_gets_the_cached_answer(gw, upstream):
    # a warm entry of the owner's must reach only a request that passed the access gate and
    # the rate limiter: not an anonymous one, a bad key, another user, or the owner past
    # the route's limit
    owner = developer(gw)
    path = f"/counted/refused{uuid.uuid4().hex[:6]}"
    project_with_route(gw, owner, upstream, path, cacheTTL=60, authRequired=True,
                       rateLimit=4)
    assert eventually(lambda: call(gw, "GET", path)[0] == 401)
    first = call(gw, "GET", path, token=owner)
    second = call(gw, "GET", path, token=owner)
    assert (first[2]["X-Cache"], second[2]["X-Cache"]) == ("MISS", "HIT")
    assert second[1] == first[1]
    for refused, status in ((call(gw, "GET", path), 401),
                            (call(gw, "GET", path, headers={"X-API-Key": "gw_" + "0" * 64}),
                             403),
                            (call(gw, "GET", path, token=developer(gw)), 401)):
        assert refused[0] == status and "X-Cache" not in refused[2], refused
        assert refused[1] != first[1] and "error" in refused[1]
    answers = [call(gw, "GET", path, token=owner) for _ in range(3)]
    assert [answer[0] for answer in answers] == [200, 200, 429]
    assert "X-Cache" not in answers[-1][2] and answers[-1][1]["error"] == "TOO_MANY_REQUESTS"


def test_cached_platform_responses_are_per_user_and_purged_on_change(gw):
    admin = with_role(gw, register(gw, "admin"), "ADMIN").token
    status, project, _ = call(gw, "POST", "/api/v1/projects", {"name": "cache"}, admin)
    status, config, _ = call(gw, "POST", f"/api/v1/projects/{project['id']}/routes", {
        "path": "/api/v1/auth/profile", "method": "GET", "service": "auth-service",
        "cacheTTL": 60}, admin)
    assert status == 201, config
    alice, bob = developer(gw), developer(gw)

    assert eventually(lambda: call(gw, "GET", "/api/v1/auth/profile", token=alice)[2].get(
        "X-Cache") == "HIT")
    first_alice = call(gw, "GET", "/api/v1/auth/profile", token=alice)
    first_bob = call(gw, "GET", "/api/v1/auth/profile", token=bob)
    assert first_bob[2]["X-Cache"] == "MISS"
    assert first_bob[1]["email"] != first_alice[1]["email"]
    assert call(gw, "GET", "/api/v1/auth/profile", token=bob)[1] == first_bob[1]

    status, _, _ = call(gw, "PATCH", f"/api/v1/routes/{config['id']}", {"cacheTTL": 30}, admin)
    assert status == 200
    assert eventually(lambda: call(gw, "GET", "/api/v1/auth/profile", token=alice)[2].get(
        "X-Cache") == "MISS")
    status, _, _ = call(gw, "DELETE", f"/api/v1/routes/{config['id']}", token=admin)
    assert status == 200


def test_upstream_bodies_over_the_limit_are_413(gw, upstream):
    token = developer(gw)
    path = f"/upload-{uuid.uuid4().hex[:6]}"
    project_with_route(gw, token, upstream, path, method="POST")
    assert eventually(lambda: raw(gw, "POST", path, b"{}")[0] == 200)
    status, body, _ = raw(gw, "POST", path, b"x" * (2 * 1024 * 1024))
    assert status == 413 and body["error"] == "PAYLOAD_TOO_LARGE"


def test_templates_that_could_shadow_platform_paths_are_refused(gw, upstream):
    token = developer(gw)
    status, project, _ = call(gw, "POST", "/api/v1/projects", {"name": "shadow"}, token)
    for path in ("/:a/:b/:c", "/metrics", "/api//v1/projects"):
        status, body, _ = call(gw, "POST", f"/api/v1/projects/{project['id']}/routes", {
            "path": path, "method": "GET", "upstreamUrl": f"http://127.0.0.1:{upstream.port}",
            "rateLimit": 1}, token)
        assert status == 400, (path, body)
