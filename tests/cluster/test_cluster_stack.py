"""The scaled-out stack of `make run-cluster` (`infra/stack.py --cluster --replicas 2`): two
gateways and two replicas of every service on the RabbitMQ cluster, the Redis Clusters and
PostgreSQL through PgBouncer. What a user sees does not depend on which gateway answers:
accounts, route configs, exact rate limits, the cache, logs, analytics and alerts counted
once, and the live monitor of one gateway showing traffic served by the other."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from tests.cluster.test_rabbitmq_cluster import NODES, api, cluster_running
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
from tests.support import get_json

ROOT = Path(__file__).parents[2]
VHOST = f"{os.environ.get('TEST_VHOST', 'gw-test')}-stack"
PGBOUNCER_PORT = 6432
ALERT_INTERVAL_MS = 1000
STARTED_WITHIN_S = 60.0  # ten processes starting on two cores, migrations included
ARRIVES_WITHIN_S = 15.0  # an event through the broker to a service and its database, loaded

pytestmark = pytest.mark.skipif(
    not (cluster_running() and running(7001) and running(7101)),
    reason="needs the RabbitMQ and Redis clusters (make cluster)")


@dataclass
class ClusterStack:
    """`infra/stack.py` running the scaled-out stack, and a view of each of its gateways."""

    process: subprocess.Popen[bytes]
    log: Path
    gateways: tuple[Stack, Stack]

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-6000:]


def free_block(size: int) -> int:
    """A first port of `size` consecutive free ones (the stack numbers replicas' ports)."""
    for _ in range(200):
        base = random.randrange(20_000, 40_000)
        try:
            for port in range(base, base + size):
                with socket.socket() as probe:
                    probe.bind(("127.0.0.1", port))
        except OSError:
            continue
        return base
    raise RuntimeError("no block of free ports")


def recreate_cluster_vhost() -> None:
    try:
        api(f"/vhosts/{VHOST}", "DELETE")
    except urllib.error.HTTPError as exc:
        if exc.code != 404:
            raise
    api(f"/vhosts/{VHOST}", "PUT", {})
    api(f"/permissions/{VHOST}/guest", "PUT", {"configure": ".*", "write": ".*", "read": ".*"})


def through_pgbouncer(direct: str) -> str:
    host, _, rest = direct.rpartition(":")
    return f"{host}:{PGBOUNCER_PORT}/{rest.split('/', 1)[1]}"


def stopped(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)  # the stack stops its children, then itself
        try:
            process.wait(40)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


@pytest.fixture(scope="module")
def cluster_stack(auth_database_url: str, project_database_url: str,
                  analytics_database_url: str, logs_database_url: str, mongo_test_db: str,
                  tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterStack]:
    """The stack as `make run-cluster` starts it, with the tests' isolation: a vhost of its own
    on the RabbitMQ cluster, the session's test databases through PgBouncer (migrated over
    the direct URLs), ports of its own. The Redis Clusters have no databases: every key the
    tests touch belongs to a user, project or route created here."""
    recreate_cluster_vhost()
    directory = tmp_path_factory.mktemp("cluster-stack")
    base = free_block(17)
    env = {
        **os.environ,
        "AMQP_URL": ",".join(f"amqp://guest:guest@127.0.0.1:{port}/{VHOST}"
                             for port in NODES.values()),
        "GATEWAY_PORT": str(base), "AUTH_HTTP_PORT": str(base + 2),
        "PROJECT_HTTP_PORT": str(base + 3), "ANALYTICS_HTTP_PORT": str(base + 4),
        "LOGGING_HTTP_PORT": str(base + 5), "GATEWAY_STATUS_PORT": "0",
        "SMTP_SINK_PORT": str(base + 16), "SMTP_SINK_DIR": str(directory / "mail"),
        "SMTP_URL": f"smtp://127.0.0.1:{base + 16}",
        "UPSTREAM_ALLOW_PRIVATE": "127.0.0.0/8", "ALERT_INTERVAL_MS": str(ALERT_INTERVAL_MS),
        "SHUTDOWN_GRACE_S": "5", "HEALTH_TIMEOUT_MS": "3000",
    }
    for prefix, direct in (("AUTH", auth_database_url), ("PROJECT", project_database_url),
                           ("ANALYTICS", analytics_database_url), ("LOGS", logs_database_url)):
        env[f"{prefix}_DATABASE_URL"] = through_pgbouncer(direct)
        env[f"{prefix}_MIGRATION_URL"] = direct
    for variable in ("REDIS_CLUSTER_NODES", "CACHE_REDIS_CLUSTER_NODES", "DATABASE_POOL_MODE"):
        env.pop(variable, None)  # the stack's cluster defaults, as `make run-cluster` has them
    log = directory / "stack.log"
    with open(log, "wb") as output:
        process = subprocess.Popen(
            [sys.executable, "infra/stack.py", "--cluster", "--replicas", "2"], cwd=ROOT,
            env=env, stdout=output, stderr=subprocess.STDOUT, start_new_session=True)
    gateways = (Stack(env, directory), Stack({**env, "GATEWAY_PORT": str(base + 1)}, directory))
    running_stack = ClusterStack(process, log, gateways)
    try:
        until = time.monotonic() + STARTED_WITHIN_S
        for gateway in gateways:
            while True:
                assert process.poll() is None, running_stack.output()
                try:
                    if get_json(f"{gateway.gateway_url}/health", timeout=5)[0] == 200:
                        break
                except OSError:
                    pass
                assert time.monotonic() < until, running_stack.output()
                time.sleep(0.2)
        yield running_stack
    finally:
        stopped(process)
    # the stack answers 1 when one of its processes exited before it was told to stop
    assert process.returncode == 0, running_stack.output()


@pytest.fixture(scope="module")
def upstream() -> Iterator[Upstream]:
    server = Upstream()
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def gateways(cluster_stack: ClusterStack) -> tuple[Stack, Stack]:
    return cluster_stack.gateways


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
