"""The live monitor (docs/api.md section 11) end to end with a real Socket.IO client: the handshake,
who receives which event, alerts, token expiry, the page, and the traffic that is exempt from
rate limiting and logging (sections 7.1, 13.1)."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import aiohttp
import pytest

from contracts.identity import issue_access_token
from contracts.settings import DEV_SECRETS
from tests.e2e.conftest import Stack
from tests.e2e.helpers import Client, call, eventually
from tests.e2e.monitor_client import Watcher, refusal_of

SECRET = DEV_SECRETS["ACCESS_TOKEN_SECRET"]
ALERT_SECRET = "monitor-e2e-alert-secret"


@pytest.fixture(scope="module")
def gw_settings() -> dict[str, str]:
    return {"ALERT_INTERVAL_MS": "500", "ALERT_SECRET": ALERT_SECRET,
            "MONITOR_MAX_EVENTS_PER_S": "50"}


def token_for(user_id: str, role: str = "DEVELOPER", *, expires_in_s: float = 900) -> str:
    return issue_access_token(SECRET, user_id=user_id, email=f"{user_id}@example.com",
                              role=role, now=time.time() - 900 + expires_in_s)


async def watching(gw: Stack, client: Client) -> Watcher:
    return await Watcher().connect(gw.gateway_url, client.token)


def paths(received: dict[str, list], event: str = "log:entry") -> list[str]:
    return [entry["path"] for entry in received[event]]


# --- handshake -----------------------------------------------------------------------------


async def test_a_connection_without_a_valid_token_is_refused(gw: Stack):
    url = gw.gateway_url
    assert await refusal_of(url) == {"error": "UNAUTHORIZED"}
    assert await refusal_of(url, "not-a-jwt") == {"error": "UNAUTHORIZED"}
    assert await refusal_of(url, token_for("x") + "x") == {"error": "UNAUTHORIZED"}
    assert await refusal_of(url, token_for("x", expires_in_s=-5)) == {"error": "TOKEN_EXPIRED"}


async def test_the_token_may_come_as_a_header_or_a_query_parameter(gw: Stack, alice: Client):
    by_header = await Watcher().connect(
        gw.gateway_url, headers={"Authorization": f"Bearer {alice.token}"})
    by_query = await Watcher().connect(gw.gateway_url, query=f"?token={alice.token}")
    assert by_header.client.connected and by_query.client.connected
    await by_header.close()
    await by_query.close()


async def test_a_socket_is_disconnected_when_its_token_expires(gw: Stack):
    watcher = await Watcher().connect(gw.gateway_url, token_for("short", expires_in_s=2))
    await asyncio.wait_for(watcher.disconnected.wait(), 6)


async def test_more_sockets_than_the_cap_per_user_are_refused(gw: Stack):
    token = token_for(f"capped-{uuid.uuid4().hex[:6]}")
    sockets = [await Watcher().connect(gw.gateway_url, token) for _ in range(10)]
    assert await refusal_of(gw.gateway_url, token) == {"error": "TOO_MANY_CONNECTIONS"}
    await sockets[0].close()
    await asyncio.sleep(0.3)
    again = await Watcher().connect(gw.gateway_url, token)  # a place is free again
    for watcher in [*sockets[1:], again]:
        await watcher.close()


async def test_connections_are_counted_and_announced(gw: Stack, alice: Client, bob: Client):
    first = await watching(gw, alice)
    # an announcement already on its way when this socket joined may count without it (its
    # count was read before the admission); the one its own connection caused counts it
    assert await first.until(lambda r: r["connections:active"]
                             and r["connections:active"][-1]["count"] >= 1), \
        first.received["connections:active"]
    before = first.received["connections:active"][-1]["count"]
    second = await watching(gw, bob)
    assert await first.until(lambda r: r["connections:active"][-1]["count"] == before + 1)
    await second.close()
    assert await first.until(lambda r: r["connections:active"][-1]["count"] == before)
    await first.close()


# --- who receives what ---------------------------------------------------------------------


async def test_each_developer_sees_only_their_traffic_and_an_admin_sees_all(
        gw: Stack, alice: Client, bob: Client, admin: Client):
    watchers = {name: await watching(gw, client)
                for name, client in (("alice", alice), ("bob", bob), ("admin", admin))}
    mark = uuid.uuid4().hex[:8]

    def burst(client: Client, who: str) -> None:
        for index in range(5):
            client.call("GET", "/api/v1/auth/profile", query={"m": f"{mark}-{who}-{index}"})

    await asyncio.gather(asyncio.to_thread(burst, alice, "alice"),
                         asyncio.to_thread(burst, bob, "bob"))

    def mine(who: str):
        return lambda r: [p for p in paths(r) if f"{mark}-{who}" in p]

    for who in ("alice", "bob"):
        got = await watchers[who].until(lambda r, who=who: len(mine(who)(r)) == 5 and r)
        assert got, (who, mine(who)(watchers[who].received),
                     watchers[who].received["log:dropped"], watchers[who].received["stats"][-2:])
    assert len(await watchers["admin"].until(
        lambda r: len(mine("alice")(r)) == 5 and len(mine("bob")(r)) == 5 and r)) > 0
    await asyncio.sleep(0.5)
    assert mine("bob")(watchers["alice"].received) == []
    assert mine("alice")(watchers["bob"].received) == []
    entry = next(e for e in watchers["alice"].received["log:entry"] if mark in e["path"])
    assert set(entry) == {"method", "path", "status", "latency", "userId"}
    assert entry["userId"] == alice.user_id and entry["status"] == 200
    for watcher in watchers.values():
        await watcher.close()


async def test_an_error_is_also_sent_as_log_error(gw: Stack, alice: Client):
    watcher = await watching(gw, alice)
    missing = str(uuid.uuid4())
    assert alice.call("GET", f"/api/v1/projects/{missing}")[0] == 404
    errors = await watcher.until(lambda r: [e for e in r["log:error"] if missing in e["path"]])
    assert errors == [{"method": "GET", "path": f"/api/v1/projects/{missing}",
                       "statusCode": 404, "error": "Client Error", "userId": alice.user_id}]
    await watcher.close()


async def test_stats_arrive_every_second_for_the_sockets_view(gw: Stack, alice: Client):
    watcher = await watching(gw, alice)
    for _ in range(3):
        alice.call("GET", "/api/v1/auth/profile")
    stats = await watcher.until(lambda r: [s for s in r["stats"] if s["rps"] > 0], 4)
    assert stats and set(stats[-1]) == {"rps", "errorRate", "p50", "p95", "p99", "window"}
    assert stats[-1]["window"] == 60 and stats[-1]["p50"] > 0
    await watcher.close()


async def test_engine_alerts_reach_their_owner_and_admins_only(
        gw: Stack, alice: Client, bob: Client, admin: Client):
    watchers = {name: await watching(gw, client)
                for name, client in (("alice", alice), ("bob", bob), ("admin", admin))}
    name = f"monitor-{uuid.uuid4().hex[:6]}"
    alice.ok("POST", "/api/v1/alerts/rules", {
        "name": name, "service": "gateway", "metric": "request_count", "windowSeconds": 60,
        "threshold": 0, "operator": "gt", "coolDownSeconds": 3600}, status=201)
    mine = lambda r: [a for a in r["alert:new"] if a.get("ruleName") == name]  # noqa: E731
    [alert] = await watchers["alice"].until(mine, 10)
    assert set(alert) == {"id", "ruleId", "ruleName", "service", "metric", "value",
                          "threshold", "operator", "message", "severity", "timestamp"}
    assert await watchers["admin"].until(mine)
    await asyncio.sleep(0.5)
    assert mine(watchers["bob"].received) == []
    for watcher in watchers.values():
        await watcher.close()


async def test_emitted_alerts_reach_admins_only(gw: Stack, alice: Client, admin: Client):
    developer, operator = await watching(gw, alice), await watching(gw, admin)
    text = f"external {uuid.uuid4().hex[:6]}"
    status, _, _ = call(gw, "POST", "/api/v1/alerts/emit", {"severity": "CRITICAL",
                                                             "message": text},
                        headers={"X-Alert-Secret": ALERT_SECRET})
    assert status == 200
    [alert] = await operator.until(lambda r: [a for a in r["alert:new"]
                                              if a.get("message") == text])
    assert alert["source"] == "external" and alert["severity"] == "critical"
    await asyncio.sleep(0.5)
    assert [a for a in developer.received["alert:new"] if a.get("message") == text] == []
    await developer.close()
    await operator.close()


# --- load ----------------------------------------------------------------------------------


async def test_log_events_are_capped_per_socket_and_the_rest_reported(gw: Stack,
                                                                     admin: Client):
    watcher = await watching(gw, admin)
    probe = f"/capped-{uuid.uuid4().hex[:6]}"
    async with aiohttp.ClientSession() as session:
        async def one(index: int) -> None:
            async with session.get(f"{gw.gateway_url}{probe}/{index}") as response:
                await response.read()
        await asyncio.gather(*(one(i) for i in range(300)))  # 300 x (log:entry + log:error)

    def accounted(r: dict[str, list]) -> bool:
        shown = sum(probe in e["path"] for name in ("log:entry", "log:error") for e in r[name])
        return shown + sum(d["count"] for d in r["log:dropped"]) >= 600

    assert await watcher.until(accounted, 8)  # every one sent or reported as dropped
    assert sum(d["count"] for d in watcher.received["log:dropped"]) > 0
    # the cap holds per clock second, so any window shorter than a second spans at most two
    arrivals = sorted(watcher.arrived["log:entry"] + watcher.arrived["log:error"])
    for index, moment in enumerate(arrivals):
        assert len([m for m in arrivals[index:] if m - moment < 0.9]) <= 2 * 50
    await watcher.close()


async def test_a_client_that_never_reads_does_not_grow_the_gateway(gw: Stack, admin: Client):
    ws_url = gw.gateway_url.replace("http", "ws") + "/socket.io/?EIO=4&transport=websocket"
    async with aiohttp.ClientSession() as session:
        silent = await session.ws_connect(ws_url)
        await silent.receive()  # the Engine.IO open packet
        await silent.send_str(f'40/monitor,{{"token":"{admin.token}"}}')
        joined = await silent.receive()
        assert joined.data.startswith("40/monitor,{"), joined.data  # admitted to /monitor
        # from here on the client reads nothing: its socket buffers fill up
        before = rss_kb(gw)
        async def one() -> None:
            async with session.get(f"{gw.gateway_url}/nothing-here") as response:
                await response.read()
        for _ in range(10):
            await asyncio.gather(*(one() for _ in range(200)))  # 2,000 requests
        await asyncio.sleep(1)
        grown_kb = rss_kb(gw) - before
        await silent.close()
    assert grown_kb < 40_000, f"gateway grew by {grown_kb} kB"


def rss_kb(gw: Stack) -> int:
    status = open(f"/proc/{gw.processes['gateway'].pid}/status").read()
    return int(next(line.split()[1] for line in status.splitlines()
                    if line.startswith("VmRSS:")))


# --- the page and the exempt traffic -------------------------------------------------------


def test_the_monitor_page_and_its_files_are_served(gw: Stack):
    import urllib.request

    for path, kind in (("/monitor/", "text/html"), ("/monitor/monitor.js", "javascript"),
                       ("/monitor/monitor.css", "text/css"),
                       ("/monitor/vendor/socket.io.min.js", "javascript")):
        with urllib.request.urlopen(gw.gateway_url + path, timeout=10) as response:
            assert response.status == 200 and kind in response.headers["Content-Type"]


def test_exempt_traffic_is_neither_rate_limited_nor_logged(gw: Stack, admin: Client):
    def count(path: str) -> int:
        body = admin.ok("GET", "/api/v1/logs", query={"limit": 100})
        return sum(1 for e in body["entries"] if e["path"] == path)

    marker = f"/api/v1/logs?probe={uuid.uuid4().hex[:6]}"
    for path in ("/health", "/monitor/", "/api-docs/", "/monitor/monitor.js"):
        for _ in range(3):
            _, _, headers = call(gw, "GET", path) if path == "/health" else _get_raw(gw, path)
            assert "X-RateLimit-Limit" not in headers, path
    admin.ok("GET", marker.split("?")[0], query={"probe": marker.split("=")[1]})
    assert eventually(lambda: count(marker) == 1, within_s=5)  # logged, so the rest would be
    for path in ("/health", "/monitor/", "/api-docs/", "/monitor/monitor.js"):
        assert count(path) == 0, path


def _get_raw(gw: Stack, path: str) -> tuple[int, Any, dict[str, str]]:
    import urllib.request

    with urllib.request.urlopen(gw.gateway_url + path, timeout=10) as response:
        return response.status, response.read(), dict(response.headers)


async def test_long_polling_is_refused_in_the_envelope_and_websocket_still_works(
        gw: Stack, alice: Client):
    # one gateway process and no MONITOR_ALLOW_POLLING: websocket only all the same
    status, body, _ = await asyncio.to_thread(
        call, gw, "GET", "/socket.io/?EIO=4&transport=polling")
    assert status == 400, body
    assert body["error"] == "BAD_REQUEST" and body["statusCode"] == 400
    assert "websocket" in body["message"] and "transports" in body["message"]
    watcher = await watching(gw, alice)
    assert await watcher.until(lambda r: r["connections:active"])
    await watcher.close()
