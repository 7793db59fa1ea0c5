"""All five processes with both Redis roles under Sentinel (infra/cluster/redis.sh up): the
gateway starts, its limits are exact and logins are throttled. (A module of its own: a stack
alive beside another would share its RPC queues, and half the logins would reach the other
stack's auth service.)"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
import redis
from redis.connection import parse_url

from tests.cluster.test_redis_cluster import MASTER, SENTINELS, running, sentinel_master
from tests.cluster.test_redis_cluster_stack import ADDRESS_FAILURES
from tests.e2e.conftest import Stack, healthy_stack
from tests.e2e.helpers import call

IP_LIMIT = 5
LOGIN_LIMIT = 3

pytestmark = pytest.mark.skipif(not running(26381),
                                reason="needs infra/cluster/redis.sh up (make cluster)")



@pytest.fixture(scope="module")
def watched(backends: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with healthy_stack(tmp_path_factory.mktemp("watched"), REDIS_SENTINELS=SENTINELS,
                       REDIS_SENTINEL_MASTER=MASTER, CACHE_REDIS_SENTINELS=SENTINELS,
                       CACHE_REDIS_SENTINEL_MASTER=MASTER, RATE_LIMIT_IP=str(IP_LIMIT),
                       LOGIN_MAX_FAILURES_PER_ACCOUNT=str(LOGIN_LIMIT)) as running_stack:
        yield running_stack


def test_limits_and_logins_under_sentinel(watched: Stack) -> None:
    primary = sentinel_primary()
    for key in primary.scan_iter("rl:{ip:127.0.0.1}:*"):  # every test client is 127.0.0.1
        primary.delete(key)
    primary.delete(ADDRESS_FAILURES)
    statuses = [call(watched, "GET", f"/nowhere/{uuid.uuid4().hex}")[0]
                for _ in range(IP_LIMIT + 1)]
    assert statuses == [404] * IP_LIMIT + [429]
    wrong = {"email": f"{uuid.uuid4().hex}@example.com", "password": "wrong-1234"}
    statuses = [call(watched, "POST", "/api/v1/auth/login", wrong)[0]
                for _ in range(LOGIN_LIMIT + 1)]
    assert statuses == [401] * LOGIN_LIMIT + [429]


def sentinel_primary() -> redis.Redis:
    """The primary, on the database the stack uses (REDIS_URL's, as in Sentinel mode)."""
    database = parse_url(os.environ.get("REDIS_URL", "redis://127.0.0.1/0")).get("db", 0)
    return redis.Redis(host="127.0.0.1", port=sentinel_master(), db=database)
