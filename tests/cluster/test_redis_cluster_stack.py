"""All five processes with both Redis roles on Redis Clusters (infra/cluster/redis.sh up):
the gateway starts, its limits are exact, logins are throttled, and through a failover of
the limiter's master no request gets a 500 (the policy applies) and every check it could not
make is on `/metrics`."""

from __future__ import annotations

import re
import threading
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import Iterator

import pytest
from redis.cluster import ClusterNode, RedisCluster

from tests.cluster.test_redis_cluster import (
    CACHE_NODES,
    STATE_NODES,
    masters,
    node,
    restore_cluster,
    role,
    running,
    stop_node,
    until,
)
from tests.e2e.conftest import Stack, healthy_stack
from tests.e2e.helpers import call

IP_LIMIT = 5
LOGIN_LIMIT = 3
BUCKET = "rl:{ip:127.0.0.1}:unmatched"  # the address tier's bucket of unmatched paths
ADDRESS_FAILURES = "auth:login-failures:{throttle}:ip:127.0.0.1"  # the login throttle's

pytestmark = pytest.mark.skipif(not running(7001),
                                reason="needs infra/cluster/redis.sh up (make cluster)")


@pytest.fixture(scope="module")
def clustered(backends: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with healthy_stack(tmp_path_factory.mktemp("clustered"), REDIS_CLUSTER_NODES=STATE_NODES,
                       CACHE_REDIS_CLUSTER_NODES=CACHE_NODES, RATE_LIMIT_IP=str(IP_LIMIT),
                       LOGIN_MAX_FAILURES_PER_ACCOUNT=str(LOGIN_LIMIT)) as running_stack:
        yield running_stack


def state_cluster() -> RedisCluster:
    host, port = STATE_NODES.split(",")[0].split(":")
    return RedisCluster(startup_nodes=[ClusterNode(host, int(port))])


def clear_buckets() -> None:
    """Every test client is 127.0.0.1: each test starts from its address's empty buckets
    (and login failure count, which earlier runs leave for its 15-minute window)."""
    cluster = state_cluster()
    for key in cluster.scan_iter("rl:{ip:127.0.0.1}:*", target_nodes=RedisCluster.PRIMARIES):
        cluster.delete(key)
    cluster.delete(ADDRESS_FAILURES)


def unchecked(stack: Stack) -> float:
    url = f"http://127.0.0.1:{stack.port('gateway_status')}/metrics"
    with urllib.request.urlopen(url, timeout=5) as response:
        text = response.read().decode()
    return sum(float(value) for value in re.findall(
        r'^gateway_rate_limit_unchecked_total\{reason="\w+"\} (\S+)$', text, re.MULTILINE))


def test_limits_are_exact_through_the_gateway(clustered: Stack) -> None:
    clear_buckets()
    statuses = [call(clustered, "GET", f"/nowhere/{uuid.uuid4().hex}")[0]
                for _ in range(IP_LIMIT + 1)]
    assert statuses == [404] * IP_LIMIT + [429]


def test_logins_are_throttled_on_the_cluster(clustered: Stack) -> None:
    clear_buckets()
    email = f"{uuid.uuid4().hex}@example.com"
    wrong = {"email": email, "password": "wrong-1234"}
    statuses = [call(clustered, "POST", "/api/v1/auth/login", wrong)[0]
                for _ in range(LOGIN_LIMIT + 1)]
    assert statuses == [401] * LOGIN_LIMIT + [429]


def test_a_failover_under_traffic_answers_no_500(clustered: Stack) -> None:
    clear_buckets()
    cluster = state_cluster()
    owner = int(cluster.get_node_from_key(BUCKET).port)  # the bucket's master
    replica = masters()[owner][0]
    counted_before = unchecked(clustered)
    statuses: Counter[int] = Counter()
    stop = threading.Event()

    def traffic() -> None:
        while not stop.is_set():
            statuses[call(clustered, "GET", f"/nowhere/{uuid.uuid4().hex}")[0]] += 1
            time.sleep(0.01)

    sender = threading.Thread(target=traffic)
    sender.start()
    try:
        time.sleep(0.3)
        node(replica).execute_command("CLUSTER", "FAILOVER")
        until(lambda: role(replica) == "master", "the promotion")
        stop_node(owner)
        time.sleep(1.5)
    finally:
        stop.set()
        sender.join()
        restore_cluster(owner, replica)
    print(f"\nthrough the gateway: {dict(statuses)}, "
          f"{unchecked(clustered) - counted_before:.0f} checks skipped")
    assert set(statuses) <= {404, 429}, statuses  # fail open: never a 500, never a 503
    assert statuses[429] > 0  # the limit held before and after
    # every request that passed unchecked is on /metrics: all the 404s beyond the limit
    assert unchecked(clustered) - counted_before == statuses[404] - IP_LIMIT
    cluster.delete(BUCKET)
    after = [call(clustered, "GET", f"/nowhere/{uuid.uuid4().hex}")[0]
             for _ in range(IP_LIMIT + 1)]
    assert after == [404] * IP_LIMIT + [429]

