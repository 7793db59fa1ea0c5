"""Issue 19 (hardening, round 2): each item reproduced through the real stack as a user or an
attacker would, and checked where the user looks (their logs, analytics and monitor)."""

from __future__ import annotations

import secrets

import pytest

from tests.e2e.conftest import Stack
from tests.e2e.helpers import (
    Client,
    Relay,
    assert_error,
    call,
    eventually,
    project_with_route,
)
from tests.e2e.monitor_client import Watcher

USER_LIMIT, IP_LIMIT = 5000, 4000  # distinct, and high enough that no answer is a 429
GATEWAY_ID = f"gw-e2e-{secrets.token_hex(3)}"


@pytest.fixture(scope="module")
def gw_settings() -> dict[str, str]:
    return {"RATE_LIMIT_USER": str(USER_LIMIT), "RATE_LIMIT_IP": str(IP_LIMIT),
            "GATEWAY_ID": GATEWAY_ID}


# --- item 1: a developer's own 404s are theirs ---------------------------------------------


async def test_item_01_a_developers_404s_reach_their_logs_analytics_and_monitor(
        gw: Stack, upstream):
    from tests.e2e.helpers import register

    dev = register(gw, "own404")
    # a route config that is no longer active answers 404 like a path nobody serves
    _, config = project_with_route(gw, dev.token, upstream, f"/gone-{secrets.token_hex(4)}")
    assert eventually(lambda: call(gw, "GET", config["path"])[0] == 200)  # anonymous
    dev.ok("PATCH", f"/api/v1/routes/{config['id']}", {"active": False})
    assert eventually(lambda: call(gw, "GET", config["path"])[0] == 404)

    watcher = await Watcher().connect(gw.gateway_url, dev.token)
    unmatched = f"/mon-{secrets.token_hex(4)}"
    sent = {}
    for path in (unmatched, config["path"]):
        status, body, headers = call(gw, "GET", path, token=dev.token)
        assert_error((status, body, headers), 404, "NOT_FOUND")
        assert headers["X-RateLimit-Limit"] == str(USER_LIMIT)  # the user's tier
        sent[path] = headers["X-Request-Id"]
    # a bad token on an unmatched path is ignored: still a 404, under the address's tier
    status, _, headers = call(gw, "GET", unmatched, token="not-a-token")
    assert status == 404 and headers["X-RateLimit-Limit"] == str(IP_LIMIT)

    # her monitor socket gets both, as entries and as errors
    def seen(event: str):
        return lambda received: {e["path"] for e in received[event]} >= set(sent)

    assert await watcher.until(seen("log:entry")), watcher.received
    assert await watcher.until(seen("log:error")), watcher.received
    assert all(e["userId"] == dev.user_id for e in watcher.received["log:entry"]
               if e["path"] in sent)
    await watcher.close()

    # her analytics count them (her only error answers) under `(unmatched)`
    def errors4xx() -> int:
        return dev.ok("GET", "/api/v1/analytics/error-rate")["errors4xx"]

    assert eventually(lambda: errors4xx() == 2, within_s=5), errors4xx()
    top = dev.ok("GET", "/api/v1/analytics/top-endpoints")
    assert any((row["method"], row["path"]) == ("GET", "(unmatched)") for row in top), top

    # and her logs list them, each readable by its request id
    listed = dev.ok("GET", "/api/v1/logs", query={"statusCode": 404, "userId": dev.user_id})
    assert {e["requestId"] for e in listed["entries"]} >= set(sent.values()), listed
    for path, request_id in sent.items():
        entry = dev.ok("GET", f"/api/v1/logs/{request_id}")
        assert (entry["path"], entry["userId"], entry["statusCode"]) == (path, dev.user_id, 404)


def test_item_01_public_platform_routes_still_ignore_authorization(gw: Stack, alice: Client):
    status, body, headers = call(gw, "POST", "/api/v1/auth/forgot-password",
                                 {"email": "nobody@example.com"}, token="not-a-token")
    assert status == 200, body
    assert headers["X-RateLimit-Limit"] == str(IP_LIMIT)
    status, _, headers = call(gw, "POST", "/api/v1/auth/forgot-password",
                              {"email": "nobody@example.com"}, token=alice.token)
    assert status == 200 and headers["X-RateLimit-Limit"] == str(IP_LIMIT)


# --- item 4: response cache semantics (RFC 9111) -------------------------------------------


def fetch(gw: Stack, path: str, body: bytes | None = None, *, chunked: bool = False,
          headers: dict[str, str] | None = None) -> tuple[int, str, dict]:
    """A GET through the gateway, with a body if given: (status, X-Cache, echoed request)."""
    import http.client
    import json

    connection = http.client.HTTPConnection("127.0.0.1", int(gw.env["GATEWAY_PORT"]), timeout=10)
    try:
        if chunked:
            connection.request("GET", path, body=iter([body or b""]), headers=headers or {},
                               encode_chunked=True)
        else:
            connection.request("GET", path, body=body, headers=headers or {})
        response = connection.getresponse()
        answer = response.read()
        return response.status, response.getheader("X-Cache", ""), json.loads(answer)
    finally:
        connection.close()


@pytest.fixture(scope="module")
def cached_prefix(gw: Stack, alice: Client, upstream) -> str:
    prefix = f"/rfc9111-{secrets.token_hex(4)}"
    project_with_route(gw, alice.token, upstream, f"{prefix}/:name", cacheTTL=300)
    assert eventually(lambda: call(gw, "GET", f"{prefix}/warmup")[0] == 200)
    return prefix


def set_headers(*lines: str) -> str:
    """The echo upstream's query that makes it answer with these header field lines."""
    from urllib.parse import urlencode

    return urlencode([("set", line) for line in lines])


def test_item_04_cache_control_is_read_from_every_field_line(gw: Stack, cached_prefix: str):
    split = f"{cached_prefix}/split?" + set_headers("Cache-Control: max-age=60",
                                                    "Cache-Control: private")
    assert [fetch(gw, split)[1] for _ in range(2)] == ["MISS", "MISS"]
    # one line with both, as before, and a storable answer over two lines still is stored
    joined = f"{cached_prefix}/joined?" + set_headers("Cache-Control: max-age=60, private")
    assert [fetch(gw, joined)[1] for _ in range(2)] == ["MISS", "MISS"]
    public = f"{cached_prefix}/public?" + set_headers("Cache-Control: public",
                                                      "Cache-Control: max-age=60")
    assert [fetch(gw, public)[1] for _ in range(2)] == ["MISS", "HIT"]


def test_item_04_answers_needing_revalidation_are_not_stored(gw: Stack, cached_prefix: str):
    for lines in (["Cache-Control: no-cache"], ['Cache-Control: no-cache="Set-Cookie"'],
                  ["Cache-Control: max-age=0"], ["Cache-Control: s-maxage=0, max-age=60"],
                  ["Expires: Thu, 01 Jan 1970 00:00:00 GMT"], ["Expires: not a date"]):
        path = f"{cached_prefix}/stale?" + set_headers(*lines)
        assert [fetch(gw, path)[1] for _ in range(2)] == ["MISS", "MISS"], lines
    later = f"{cached_prefix}/later?" + set_headers("Expires: Fri, 31 Dec 9999 23:59:59 GMT")
    assert [fetch(gw, later)[1] for _ in range(2)] == ["MISS", "HIT"]


def test_item_04_a_get_with_a_body_never_meets_the_cache(gw: Stack, cached_prefix: str,
                                                         upstream):
    poison = b"<script>alert(document.cookie)</script>"
    page = f"{cached_prefix}/page"
    for chunked in (False, True):
        status, x_cache, echoed = fetch(gw, page, poison, chunked=chunked)
        assert (status, x_cache, echoed["body"]) == (200, "", poison.decode())
    # the plain URL was not stored with the attacker's body...
    status, x_cache, echoed = fetch(gw, page)
    assert (status, x_cache, echoed["body"]) == (200, "MISS", "")
    assert fetch(gw, page)[1] == "HIT"
    # ...and a GET with a body is not answered from the entry the plain URL now has
    before = len(upstream.seen)
    status, x_cache, echoed = fetch(gw, page, b"other")
    assert (x_cache, echoed["body"], len(upstream.seen)) == ("", "other", before + 1)
    # an empty body is no body
    assert fetch(gw, page, b"")[1] == "HIT"


# --- item 3: no request loops ----------------------------------------------------------------


def test_item_03_a_route_config_cannot_target_the_gateway(gw: Stack, alice: Client):
    project = alice.ok("POST", "/api/v1/projects", {"name": "Loop"}, status=201)["id"]
    port = gw.env["GATEWAY_PORT"]
    # GATEWAY_PORT on any local address, and APP_URL's address and port (localhost:3000)
    for url in (f"http://127.0.0.1:{port}", f"http://127.0.0.2:{port}/v1",
                f"http://[::ffff:127.0.0.1]:{port}", "http://127.0.0.1:3000/x"):
        body = assert_error(alice.call("POST", f"/api/v1/projects/{project}/routes", {
            "path": f"/loop-{secrets.token_hex(4)}", "method": "GET", "upstreamUrl": url}),
            400, "VALIDATION_ERROR")
        assert body["details"][0]["field"] == "upstreamUrl", body
        assert "loop" in body["details"][0]["message"], body
    # the same address on another port is an ordinary (operator-allowed) upstream
    alice.ok("POST", f"/api/v1/projects/{project}/routes", {
        "path": f"/loop-{secrets.token_hex(4)}", "method": "GET",
        "upstreamUrl": f"http://127.0.0.1:{int(port) + 1}"}, status=201)


def test_item_03_a_request_that_comes_round_is_refused_with_508(gw: Stack, alice: Client,
                                                                upstream):
    # every proxied request carries our Via entry, after the client's own
    prefix = f"/via-{secrets.token_hex(4)}"
    project_with_route(gw, alice.token, upstream, f"{prefix}/:x")
    assert eventually(lambda: call(gw, "GET", f"{prefix}/a")[0] == 200)
    call(gw, "GET", f"{prefix}/b", headers={"Via": "1.0 corporate-proxy"})
    seen = upstream.seen[-1]["headers"]
    assert seen["Via"] == f"1.0 corporate-proxy, 1.1 {GATEWAY_ID}", seen

    # one naming us, on any route, is a loop
    for path in ("/api/v1/projects", f"{prefix}/c", "/nowhere"):
        for via in (f"1.1 {GATEWAY_ID}", f"1.0 a, HTTP/1.1 {GATEWAY_ID} (note), 1.1 b"):
            assert_error(call(gw, "GET", path, token=alice.token, headers={"Via": via}),
                         508, "LOOP_DETECTED")
    assert call(gw, "GET", "/api/v1/projects", token=alice.token,
                headers={"Via": f"1.1 {GATEWAY_ID}x"})[0] == 200

    # a loop through another proxy: one pass through each, then the 508 comes back
    relay = Relay(gw.gateway_url)
    relay.start()
    try:
        looped = f"/looped-{secrets.token_hex(4)}"
        project_with_route(gw, alice.token, upstream, f"{looped}/:x",
                           upstreamUrl=f"http://127.0.0.1:{relay.port}/base")
        assert eventually(lambda: call(gw, "GET", f"{looped}/a")[0] != 404)
        relay.calls = 0
        status, body, _ = call(gw, "GET", f"{looped}/b")  # the inner answer, relayed as is
        assert (status, body["error"], relay.calls) == (508, "LOOP_DETECTED", 1)
    finally:
        relay.stop()


def test_item_04_a_cache_hit_keeps_the_upstreams_own_server_header(gw: Stack,
                                                                   cached_prefix: str):
    path = f"{cached_prefix}/named?" + set_headers("Server: upstream-y/2.0")
    answers = [call(gw, "GET", path)[2] for _ in range(2)]
    assert [a["X-Cache"] for a in answers] == ["MISS", "HIT"]
    assert [a["Server"] for a in answers] == ["upstream-y/2.0"] * 2
