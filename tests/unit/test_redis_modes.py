"""contracts.redis_clients and the request-path batcher's routing, without a server: which
client each mode makes, how commands are routed, and that multi-key keys share a slot."""

from __future__ import annotations

import dataclasses

import pytest
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.sentinel import SentinelConnectionPool
from redis.crc import key_slot
from redis.exceptions import ClusterDownError, CrossSlotTransactionError, ReadOnlyError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from auth_svc.throttle import LoginThrottle
from contracts.redis_clients import REDIS_FAILURES, addresses, client_for, place_of
from contracts.settings import load_settings
from gateway.monitor.presence import ALL_KEY, user_key
from gateway.redis_batch import key_of
from gateway.steps.rate_limiter import unchecked_reason


@pytest.fixture
def settings(monkeypatch):
    monkeypatch.setenv("APP_ENV", "development")
    return load_settings()


def test_addresses_are_host_port_lists() -> None:
    assert addresses(" 10.0.0.1:7001, redis-b:7002 ,") == (("10.0.0.1", 7001),
                                                          ("redis-b", 7002))
    assert addresses("[::1]:7001") == (("::1", 7001),)
    assert addresses("") == ()
    with pytest.raises(ValueError, match="host:port"):
        addresses("10.0.0.1")


async def test_each_mode_makes_its_client(settings) -> None:
    assert place_of(settings, "state").mode == "standalone"
    standalone = client_for(settings, "state")
    assert type(standalone) is Redis
    await standalone.aclose()

    clustered = dataclasses.replace(settings, redis_cluster_nodes="127.0.0.1:7001",
                                    redis_url="redis://user:secret@ignored:1/0")
    cluster = client_for(clustered, "state")
    assert isinstance(cluster, RedisCluster)
    assert cluster.get_connection_kwargs()["password"] == "secret"  # credentials from the URL
    await cluster.aclose()
    assert place_of(clustered, "cache").mode == "standalone"  # each role on its own

    watched = dataclasses.replace(settings, cache_redis_sentinels="127.0.0.1:26381",
                                  cache_redis_sentinel_master="cachemaster")
    sentinel = client_for(watched, "cache")
    assert isinstance(sentinel, Redis)
    pool = sentinel.connection_pool
    assert isinstance(pool, SentinelConnectionPool) and pool.service_name == "cachemaster"
    await sentinel.aclose()

    with pytest.raises(ValueError, match="both"):
        place_of(dataclasses.replace(clustered, redis_sentinels="127.0.0.1:26381"), "state")


def test_commands_are_routed_by_their_key() -> None:
    assert key_of(("EVALSHA", "abc", 1, "rl:{ip:1}:/x", 60000)) == "rl:{ip:1}:/x"
    assert key_of(("EVAL", "return 1", 0)) is None
    assert key_of(("HGETALL", "gw:cache:{p}:k")) == "gw:cache:{p}:k"


def test_a_route_template_never_becomes_the_buckets_hash_tag() -> None:
    # two callers of one route with `{id}` in its template: their buckets spread by caller
    slots = {key_slot(f"rl:{{ip:10.0.0.{n}}}:/api/v1/things/{{id}}".encode())
             for n in range(50)}
    assert len(slots) > 40


def test_multi_key_scripts_keep_their_keys_in_one_slot() -> None:
    keys = LoginThrottle._keys("someone@example.com", "10.1.2.3")
    assert len({key_slot(key.encode()) for key in keys}) == 1
    assert key_slot(ALL_KEY.encode()) == key_slot(user_key("u-1").encode())


def test_cluster_errors_are_redis_failures_and_have_a_reason() -> None:
    crossslot = CrossSlotTransactionError("keys in different slots")
    assert isinstance(crossslot, REDIS_FAILURES)  # not a RedisError: it used to escape
    assert unchecked_reason(crossslot) == "cluster"
    assert unchecked_reason(ClusterDownError("CLUSTERDOWN")) == "cluster"
    assert unchecked_reason(ReadOnlyError("READONLY")) == "readonly"
    assert unchecked_reason(RedisConnectionError("lost")) == "connection"
    assert unchecked_reason(RedisTimeoutError("late")) == "timeout"
