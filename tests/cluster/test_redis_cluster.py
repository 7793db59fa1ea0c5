"""The gateway's Redis uses on a Redis Cluster and under Sentinel (infra/cluster/redis.sh up):
limits stay exact on every master, the multi-key scripts and transactions work (no
CROSSSLOT), and through a failover no call escapes the fail-open/closed policy, the limiter
is exact again within 5 s, and what it could not check is counted."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
import redis
from prometheus_client import REGISTRY
from redis.crc import key_slot

from auth_svc.throttle import LoginThrottle
from contracts.errors import ServiceUnavailable, TooManyRequests
from contracts.redis_clients import RedisClient, client_for
from contracts.settings import Settings, load_settings
from gateway.monitor.presence import Presence
from gateway.steps.rate_limiter import RateLimiter
from gateway.steps.response_cache import Entry, ResponseCache

HOST = "127.0.0.1"
STATE_NODES = "127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003"
CACHE_NODES = "127.0.0.1:7101,127.0.0.1:7102"
SENTINELS = "127.0.0.1:26381,127.0.0.1:26382,127.0.0.1:26383"
MASTER = "mymaster"
STATE_DIR = Path(os.environ.get("STATE_DIR", Path(__file__).parents[2] / ".local"))
NODES_DIR = STATE_DIR / "cluster" / "redis"
LIMIT = 5
RECOVERY_S = 5.0  # the bound: exact again within 5 s of the failover


def running(port: int) -> bool:
    try:
        return bool(redis.Redis(host=HOST, port=port, socket_timeout=1).ping())
    except redis.RedisError:
        return False


pytestmark = pytest.mark.skipif(not (running(7001) and running(26381)),
                                reason="needs infra/cluster/redis.sh up (make cluster)")


def node(port: int) -> redis.Redis:
    return redis.Redis(host=HOST, port=port, socket_timeout=2)


def settings(**changes: str) -> Settings:
    base = load_settings()
    return dataclasses.replace(base, **changes)


def unchecked() -> float:
    return sum(REGISTRY.get_sample_value("gateway_rate_limit_unchecked_total",
                                         {"reason": reason}) or 0.0
               for reason in ("connection", "timeout", "readonly", "cluster", "reply", "other"))


def masters() -> dict[int, list[int]]:
    """Master port -> its replicas' ports, as the state cluster sees it now."""
    found: dict[int, list[int]] = {}
    for _start, _end, master, *replicas in node(7001).execute_command("CLUSTER", "SLOTS"):
        found[int(master[1])] = [int(replica[1]) for replica in replicas]
    return found


def master_of(slot: int) -> int:
    for start, end, master, *_ in node(7001).execute_command("CLUSTER", "SLOTS"):
        if int(start) <= slot <= int(end):
            return int(master[1])
    raise AssertionError(f"no master for slot {slot}")


def identity_on(master: int) -> str:
    """A caller identity whose buckets live on `master`."""
    while True:
        identity = f"ip:{uuid.uuid4().hex}"
        if master_of(key_slot(identity.encode())) == master:
            return identity


def bucket(identity: str, template: str = "/api/v1/things/{id}") -> str:
    return f"rl:{{{identity}}}:{template}"  # as gateway.steps.rate_limiter names them


async def exact(limiter: RateLimiter, key: str) -> None:
    decisions = [await limiter.hit(key, LIMIT) for _ in range(LIMIT + 1)]
    assert [d is not None and d.allowed for d in decisions] == [True] * LIMIT + [False]


def start_node(port: int, *, sentinel: bool = False) -> None:
    directory = NODES_DIR / str(port)
    subprocess.run(["redis-server", str(directory / "redis.conf"),
                    *(["--sentinel"] if sentinel else []), "--daemonize", "yes",
                    "--pidfile", str(directory / "redis.pid"),
                    "--logfile", str(directory / "redis.log")], check=True)
    until(lambda: running(port), f"redis {port} to start")


def stop_node(port: int) -> None:
    try:
        node(port).shutdown(nosave=True)
    except redis.ConnectionError:  # it closes the connection as it exits
        pass
    until(lambda: not running(port), f"redis {port} to stop")


def until(condition: Callable[[], bool], what: str, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"waited {timeout_s} s for {what}"
        time.sleep(0.05)


def role(port: int) -> str:
    return str(node(port).execute_command("ROLE")[0].decode())


class Hammer:
    """Hits one bucket with a fail-open and a fail-closed limiter every few ms and records
    what came back: a decision, None (failed open), 503 (failed closed) or anything else
    (which would have been a 500)."""

    def __init__(self, open_limiter: RateLimiter, closed_limiter: RateLimiter,
                 key: str) -> None:
        self.limiters = (open_limiter, closed_limiter)
        self.key = key
        self.decided = self.failed_open = self.failed_closed = 0
        self.escaped: list[BaseException] = []
        self.first_failure = self.last_failure = 0.0
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        while True:
            for limiter in self.limiters:
                try:
                    decision = await limiter.hit(self.key, 10**9)
                except ServiceUnavailable:
                    self.failed_closed += 1
                    self.failed()
                except Exception as exc:  # what must never happen
                    self.escaped.append(exc)
                else:
                    if decision is None:
                        self.failed_open += 1
                        self.failed()
                    else:
                        self.decided += 1
            await asyncio.sleep(0.005)

    def failed(self) -> None:
        self.last_failure = time.monotonic()
        self.first_failure = self.first_failure or self.last_failure

    def report(self, what: str, began: float, took: float) -> None:
        failing = (f"failures from {self.first_failure - began:.2f} s to "
                   f"{self.last_failure - began:.2f} s after it began" if self.first_failure
                   else "no failure")
        print(f"\n{what}: exact again {took:.2f} s after the old master stopped; "
              f"{failing}; {self.decided} decided, {self.failed_open} failed open, "
              f"{self.failed_closed} failed closed")

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        assert self._task is not None
        self._task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await self._task


async def limiters(client: RedisClient) -> AsyncIterator[tuple[RateLimiter, RateLimiter]]:
    open_limiter = RateLimiter(client)
    closed_limiter = RateLimiter(client, fail_closed=True)
    yield open_limiter, closed_limiter
    await open_limiter.close()
    await closed_limiter.close()
    await client.aclose()


@pytest.fixture
async def on_cluster() -> AsyncIterator[tuple[RateLimiter, RateLimiter]]:
    client = client_for(settings(redis_cluster_nodes=STATE_NODES), "state",
                        socket_connect_timeout=1, socket_timeout=1)
    async for pair in limiters(client):
        yield pair


@pytest.fixture
async def on_sentinel() -> AsyncIterator[tuple[RateLimiter, RateLimiter]]:
    client = client_for(settings(redis_sentinels=SENTINELS, redis_sentinel_master=MASTER),
                        "state", socket_connect_timeout=1, socket_timeout=1)
    async for pair in limiters(client):
        yield pair


async def recovered(hammer: Hammer, limiter: RateLimiter, key_on_slot: Callable[[], str],
                    since: float) -> float:
    """Seconds from `since` until the limiter is exact again on the failed-over slot."""
    while True:
        assert time.monotonic() - since < 30, "the limiter never recovered"
        try:
            await exact(limiter, key_on_slot())
        except AssertionError:
            await asyncio.sleep(0.05)
            continue
        return time.monotonic() - since


# --- Cluster ---------------------------------------------------------------------------------


async def test_the_limiter_is_exact_on_every_master(on_cluster) -> None:
    limiter, _ = on_cluster
    for master in masters():
        identity = identity_on(master)
        for template in ("/api/v1/things/{id}", "/api/v1/other"):
            await exact(limiter, bucket(identity, template))


async def test_cache_presence_and_login_throttle_work_on_clusters() -> None:
    cache_client = client_for(settings(cache_redis_cluster_nodes=CACHE_NODES), "cache")
    cache = ResponseCache(cache_client, max_body_bytes=1024, project_budget_bytes=4096)
    project = str(uuid.uuid4())
    key = f"gw:cache:{{{project}}}:{uuid.uuid4().hex}"  # as cache_key names an entry
    entry = Entry(200, [("Content-Type", "text/plain")], time.time(), b"hello")
    assert await cache.put(key, project, entry, 60)  # the 4-key budget script: no CROSSSLOT
    assert (await cache.get(key)).body == b"hello"
    # the budget counts every entry of the project (its entries and books share a slot)
    big = Entry(200, [], time.time(), b"x" * 1000)
    stored = [await cache.put(f"gw:cache:{{{project}}}:{n}", project, big, 60) for n in range(6)]
    assert stored.count(True) == 2 and stored[2:] == [False] * 4
    token = await cache.lock(key)
    assert token is not None and await cache.lock(key) is None
    await cache.unlock(key, token)
    await cache.close()

    state_client = client_for(settings(redis_cluster_nodes=STATE_NODES), "state")
    try:
        presence = Presence(state_client, uuid.uuid4().hex, max_per_user=2)
        user = str(uuid.uuid4())
        before = await presence.count()
        assert [await presence.admit(f"s{n}", user) for n in range(3)] == [True, True, False]
        assert await presence.count() == before + 2
        await presence.heartbeat()
        await presence.forget_all()
        assert await presence.count() == before

        throttle = LoginThrottle(state_client, max_per_account=2, max_per_ip=100, window_s=60)
        email, address = f"{uuid.uuid4().hex}@example.com", f"10.{uuid.uuid4().int % 250}.0.1"
        await throttle.admit(email, address)
        await throttle.succeeded(email, address)  # the MULTI transaction: no CROSSSLOT
        await throttle.admit(email, address)
        await throttle.admit(email, address)
        with pytest.raises(TooManyRequests):
            await throttle.admit(email, address)
    finally:
        await state_client.aclose()


async def test_a_cluster_failover_keeps_the_policy_and_the_limit(on_cluster) -> None:
    limiter, closed = on_cluster
    old_master, replicas = next(iter(masters().items()))
    new_master = replicas[0]
    identity = identity_on(old_master)
    await exact(limiter, bucket(identity))
    hammer = Hammer(limiter, closed, bucket(identity, "/hammered"))
    counted_before = unchecked()
    hammer.start()
    try:
        await asyncio.sleep(0.2)
        began = time.monotonic()
        await asyncio.to_thread(node(new_master).execute_command, "CLUSTER", "FAILOVER")
        await asyncio.to_thread(until, lambda: role(new_master) == "master", "the promotion")
        await asyncio.to_thread(stop_node, old_master)
        stopped = time.monotonic()
        took = await recovered(hammer, limiter,
                               lambda: bucket(identity, f"/after/{uuid.uuid4().hex}"), stopped)
        await asyncio.sleep(0.3)
    finally:
        await hammer.stop()
        await asyncio.to_thread(restore_cluster, old_master, new_master)
    hammer.report("cluster failover", began, took)
    assert hammer.escaped == []  # nothing but a decision, None (open) or 503 (closed)
    assert took < RECOVERY_S
    assert hammer.decided > 0
    assert unchecked() - counted_before == hammer.failed_open + hammer.failed_closed


def restore_cluster(old_master: int, new_master: int) -> None:
    """The old master back, as a master again (other tests expect the starting shape)."""
    if not running(old_master):
        start_node(old_master)
    until(lambda: role(old_master) == "slave", "the old master to rejoin as a replica")
    until(lambda: node(old_master).info("replication").get("master_link_status") == "up",
          "the old master to sync")
    node(old_master).execute_command("CLUSTER", "FAILOVER")
    until(lambda: role(old_master) == "master", "the old master to take over again")
    until(lambda: all(b"cluster_state:ok" in node(port).execute_command("CLUSTER", "INFO")
                      for port in (old_master, new_master)), "the cluster to be ok")


# --- Sentinel --------------------------------------------------------------------------------


def sentinel_master() -> int:
    _host, port = node(26381).execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", MASTER)
    return int(port)


async def test_a_sentinel_failover_keeps_the_policy_and_the_limit(on_sentinel) -> None:
    limiter, closed = on_sentinel
    identity = f"ip:{uuid.uuid4().hex}"
    await exact(limiter, bucket(identity))
    old_primary = sentinel_master()
    hammer = Hammer(limiter, closed, bucket(identity, "/hammered"))
    counted_before = unchecked()
    hammer.start()
    try:
        await asyncio.sleep(0.2)
        began = time.monotonic()
        await asyncio.to_thread(node(26381).execute_command, "SENTINEL", "FAILOVER", MASTER)
        await asyncio.to_thread(until, lambda: sentinel_master() != old_primary,
                                "the sentinels to promote a replica")
        await asyncio.to_thread(stop_node, old_primary)
        stopped = time.monotonic()
        took = await recovered(hammer, limiter,
                               lambda: bucket(identity, f"/after/{uuid.uuid4().hex}"), stopped)
        await asyncio.sleep(0.3)
    finally:
        await hammer.stop()
        await asyncio.to_thread(restore_sentinel_node, old_primary)
    hammer.report("sentinel failover", began, took)
    assert hammer.escaped == []
    assert took < RECOVERY_S
    assert hammer.decided > 0
    assert unchecked() - counted_before == hammer.failed_open + hammer.failed_closed


def restore_sentinel_node(port: int) -> None:
    """The old primary back; the sentinels make it a replica of the new one."""
    if not running(port):
        start_node(port)
    until(lambda: role(port) == "slave", "the old primary to become a replica", 30)
