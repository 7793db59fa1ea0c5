"""The scaled-out stack of `make run-cluster` (`infra/stack.py --cluster --replicas 2`): two
gateways and two replicas of every service on the RabbitMQ cluster, the Redis Clusters and
PostgreSQL through PgBouncer. What a user sees does not depend on which gateway answers:
accounts, route configs, exact rate limits, the cache, logs, analytics and alerts counted
once, and the live monitor of one gateway showing traffic served by the other."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from dataclasses import replace
from typing import Any

import pytest

from tests.cluster.conftest import ALERT_INTERVAL_MS
from tests.cluster.rabbitmq_nodes import cluster_running
from tests.cluster.test_redis_cluster import running
from tests.e2e.conftest import Stack
from tests.e2e.helpers import (
    PASSWORD,
    Client,
    Upstream,
    call,
    eventually,
    project_with_route,
    register,
)
from tests.e2e.monitor_client import Watcher

ARRIVES_WITHIN_S = 15.0  # an event through the broker to a service and its database, loaded

pytestmark = pytest.mark.skipif(
    not (cluster_running() and running(7001) and running(7101)),
    reason="needs the RabbitMQ and Redis clusters (make cluster)")


def on(gateway: Stack, client: Client) -> Client:
    """`client` calling through `gateway`."""
    return replace(client, base_url=gateway.gateway_url)


def routed(gateways: tuple[Stack, Stack], token: str, upstream: Upstream, path: str,
           probe: str | None = None, **route: Any) -> str:
    """A new project with a route to `upstream`, once both gateways follow it (each has its
    own subscription to config events): the project id. The gateways are probed at `probe`
    (the route's path by default) with an identity of its own, so no quota of the caller's
    bucket on the route is spent."""
    project_id, config = project_with_route(gateways[0], token, upstream, path, **route)
    prober = developer_token(gateways[0])
    for gateway in gateways:
        assert eventually(lambda gateway=gateway: call(
            gateway, "GET", probe or config["path"], token=prober)[0] == 200, within_s=5)
    return project_id


def developer_token(gateway: Stack) -> str:
    token = register(gateway, "cluster").token
    assert token is not None
    return token


def test_an_account_registered_on_one_gateway_logs_in_on_the_other(gateways):
    first, second = gateways
    client = register(first, "cluster")
    status, body, _ = call(second, "POST", "/api/v1/auth/login",
                           {"email": client.email, "password": PASSWORD})
    assert status == 200, body
    assert body["user"]["id"] == client.user_id
    profile = on(first, client).ok("GET", "/api/v1/auth/profile")
    assert profile["email"] == client.email
    assert call(first, "GET", "/api/v1/auth/profile", token=body["accessToken"])[0] == 200


def test_a_route_config_proxies_on_both_gateways(gateways, upstream):
    token = developer_token(gateways[0])
    path = f"/cl-{uuid.uuid4().hex[:8]}/items"
    routed(gateways, token, upstream, path)
    for gateway in gateways:
        status, body, headers = call(gateway, "GET", f"{path}?from={gateway.port('gateway')}")
        assert status == 200, body
        assert body["path_qs"] == f"/base{path}?from={gateway.port('gateway')}"
        assert headers["X-Upstream"] == "yes"


def test_a_route_limit_is_exact_across_both_gateways(gateways, upstream):
    limit = 5
    path = f"/cl-limited-{uuid.uuid4().hex[:8]}"
    routed(gateways, developer_token(gateways[0]), upstream, path, rateLimit=limit)
    caller = developer_token(gateways[0])  # a bucket of its own on the route
    # alternating, and then concurrently: the limit is one count whichever gateway answers
    statuses = [call(gateways[index % 2], "GET", path, token=caller)[0]
                for index in range(limit + 1)]
    assert statuses == [200] * limit + [429]
    assert call(gateways[1], "GET", path, token=caller)[0] == 429

    racer = developer_token(gateways[0])

    async def race() -> list[int]:
        return [answer[0] for answer in await asyncio.gather(*(asyncio.to_thread(
            call, gateways[index % 2], "GET", path, None, racer) for index in range(12)))]

    assert Counter(asyncio.run(race())) == {200: limit, 429: 12 - limit}


def test_an_answer_cached_by_one_gateway_is_a_hit_on_the_other(gateways, upstream):
    name = f"cl{uuid.uuid4().hex[:8]}"
    routed(gateways, developer_token(gateways[0]), upstream, f"/counted/{name}",
           probe=f"/counted/{name}?warm=1", cacheTTL=60)
    before = upstream.counts[name]
    first = call(gateways[0], "GET", f"/counted/{name}?q=1")
    second = call(gateways[1], "GET", f"/counted/{name}?q=1")
    assert (first[0], second[0]) == (200, 200)
    assert (first[2]["X-Cache"], second[2]["X-Cache"]) == ("MISS", "HIT")
    assert second[1] == first[1]
    assert upstream.counts[name] - before == 1


def test_a_request_is_logged_and_counted_once_whichever_gateway_served_it(gateways, upstream):
    owner = register(gateways[0], "cluster")
    assert owner.token is not None
    path = f"/cl-logged-{uuid.uuid4().hex[:8]}"
    project_id = routed(gateways, owner.token, upstream, path)
    served = []  # the owner's own calls, three through each gateway
    for index in range(6):
        status, _, headers = call(gateways[index % 2], "GET", f"{path}?n={index}",
                                  token=owner.token)
        assert status == 200
        served.append(headers["X-Request-Id"])

    def logged() -> list[str]:
        status, body, _ = on(gateways[1], owner).call(
            "GET", "/api/v1/logs", query={"userId": owner.user_id, "source": "gateway",
                                          "limit": 100})
        assert status == 200, body
        return [entry["requestId"] for entry in body["entries"] if path in entry["path"]]

    assert eventually(lambda: set(served) <= set(logged()), within_s=ARRIVES_WITHIN_S)
    assert Counter(logged()) == Counter(served)  # each once, none other

    # the two probes of `routed` were the project's traffic too
    total = len(served) + 2

    def counted() -> int:
        summary = on(gateways[0], owner).ok("GET", "/api/v1/analytics/summary",
                                            query={"projectId": project_id})
        return int(summary["totalRequests"])

    assert eventually(lambda: counted() == total, within_s=ARRIVES_WITHIN_S), counted()
    time.sleep(1)  # a copy folded twice would arrive on the other replica by now
    assert counted() == total


def test_an_alert_rule_fires_once_on_traffic_through_both_gateways(gateways, upstream):
    owner = register(gateways[0], "cluster")
    assert owner.token is not None
    path = f"/cl-alert-{uuid.uuid4().hex[:8]}"
    project_id = routed(gateways, owner.token, upstream, path)
    rule = on(gateways[1], owner).ok("POST", "/api/v1/alerts/rules", {
        "name": "Busy", "service": "gateway", "metric": "request_count", "windowSeconds": 60,
        "threshold": 9, "operator": "gt", "coolDownSeconds": 600, "projectId": project_id},
        status=201)
    for index in range(8):  # with the two probes: 10 > 9, so it fires on the last one
        assert call(gateways[index % 2], "GET", path)[0] == 200

    def fired() -> list[dict[str, Any]]:
        events = on(gateways[1], owner).ok("GET", "/api/v1/alerts/events",
                                                   query={"limit": 100})["events"]
        return [event for event in events if event["ruleId"] == rule["id"]]

    events = eventually(fired, within_s=ARRIVES_WITHIN_S)
    assert events, "no alert"
    assert events[0]["value"] == 10 and events[0]["projectId"] == project_id
    time.sleep(2.5 * ALERT_INTERVAL_MS / 1000)  # both analytics replicas evaluated again
    assert len(fired()) == 1


async def test_a_monitor_on_one_gateway_sees_requests_served_by_the_other(gateways):
    client = await asyncio.to_thread(register, gateways[0], "cluster")
    watcher = await Watcher().connect(gateways[0].gateway_url, client.token)
    try:
        mark = uuid.uuid4().hex[:8]
        status, _, _ = await asyncio.to_thread(
            on(gateways[1], client).call, "GET", "/api/v1/auth/profile", None, {"m": mark})
        assert status == 200
        seen = await watcher.until(lambda received: [
            entry for entry in received["log:entry"] if mark in entry["path"]], within_s=10)
        assert len(seen) == 1, watcher.received
        assert seen[0]["userId"] == client.user_id and seen[0]["status"] == 200
    finally:
        await watcher.close()
