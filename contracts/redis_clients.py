"""The redis-py asyncio client for each Redis role, in whichever of three modes it runs.

Two roles: `state` (rate limits, key verdicts, login throttles, monitor presence, the alert
lease: REDIS_*) and `cache` (the response cache's own Redis: CACHE_REDIS_*). Each role is
one of:
- standalone: `REDIS_URL`'s server (the default);
- Cluster: `REDIS_CLUSTER_NODES=host:port,...`, any reachable nodes; the client learns the
  rest and follows slot moves and failovers;
- Sentinel: `REDIS_SENTINELS=host:port,...` watching `REDIS_SENTINEL_MASTER`; every new
  connection asks the sentinels for the current primary, so a failover is followed.
In Cluster and Sentinel mode the URL still gives the credentials and options (username,
password, TLS; the database in Sentinel mode), never the address.

Every multi-key script or transaction must keep its keys in one hash slot (a `{tag}` in
each key name), or a Cluster refuses it with CROSSSLOT; the code that writes keys does so.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.connection import SSLConnection, parse_url
from redis.asyncio.sentinel import Sentinel
from redis.exceptions import RedisClusterException, RedisError

from contracts.settings import Settings

RedisClient = Redis | RedisCluster

# What a Redis call may raise when the store is unreachable, failing over or refusing:
# redis-py's cluster-side errors (CrossSlotTransactionError, SlotNotCoveredError...) derive
# from RedisClusterException, not RedisError, and socket errors may surface unwrapped.
REDIS_FAILURES: tuple[type[Exception], ...] = (RedisError, RedisClusterException, OSError)

Role = Literal["state", "cache"]
Mode = Literal["standalone", "cluster", "sentinel"]


@dataclass(frozen=True)
class RedisPlace:
    """Where one role's Redis is (what the settings say)."""
    url: str
    cluster_nodes: tuple[tuple[str, int], ...] = ()
    sentinels: tuple[tuple[str, int], ...] = ()
    sentinel_master: str = "mymaster"

    @property
    def mode(self) -> Mode:
        if self.cluster_nodes:
            return "cluster"
        if self.sentinels:
            return "sentinel"
        return "standalone"


def addresses(text: str) -> tuple[tuple[str, int], ...]:
    """`host:port,host:port` (blanks ignored; `[v6]:port` accepted)."""
    found = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        host, sep, port = part.rpartition(":")
        if not sep or not host or not port.isdigit():
            raise ValueError(f"not a host:port: {part!r}")
        found.append((host.strip("[]"), int(port)))
    return tuple(found)


def place_of(settings: Settings, role: Role) -> RedisPlace:
    if role == "state":
        url, nodes, sentinels, master = (
            settings.redis_url, settings.redis_cluster_nodes, settings.redis_sentinels,
            settings.redis_sentinel_master)
    else:
        url, nodes, sentinels, master = (
            settings.cache_redis_url, settings.cache_redis_cluster_nodes,
            settings.cache_redis_sentinels, settings.cache_redis_sentinel_master)
    place = RedisPlace(url, addresses(nodes), addresses(sentinels), master)
    if place.cluster_nodes and place.sentinels:
        raise ValueError(f"Redis role {role}: cluster nodes and sentinels are both set")
    return place


def _url_options(url: str) -> dict[str, Any]:
    """The URL's credentials and options, without its address."""
    options = dict(parse_url(url))
    for name in ("host", "port", "path"):
        options.pop(name, None)
    if options.pop("connection_class", None) is SSLConnection:
        options["ssl"] = True
    return options


def connect(place: RedisPlace, *, max_connections: int, **options: Any) -> RedisClient:
    """A client for `place`; `options` are connection options (socket timeouts...).
    `max_connections` bounds the pool (per node in a Cluster)."""
    if place.mode == "standalone":
        # under load callers wait a moment for a connection instead of failing (which would
        # make the rate limiter fail open)
        return Redis(connection_pool=BlockingConnectionPool.from_url(
            place.url, max_connections=max_connections, timeout=2, **options))
    url_options = _url_options(place.url)
    if place.mode == "cluster":
        url_options.pop("db", None)  # a Cluster has database 0 only
        return RedisCluster(
            startup_nodes=[ClusterNode(host, port) for host, port in place.cluster_nodes],
            max_connections=max_connections, **url_options, **options)
    sentinel = Sentinel(list(place.sentinels), **{  # type: ignore[no-untyped-call, unused-ignore]  # typed from redis 8.2
        name: value for name, value in options.items() if name.startswith("socket_")})
    client: _SentinelManaged = sentinel.master_for(
        place.sentinel_master, redis_class=_SentinelManaged, max_connections=max_connections,
        **url_options, **options)
    client.watched_by = sentinel
    return client


class _SentinelManaged(Redis):
    """The primary's client, which also closes its connections to the sentinels (redis-py's
    own leaves them open)."""

    watched_by: Sentinel | None = None

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        await super().aclose(close_connection_pool)
        if self.watched_by is not None:
            for watcher in self.watched_by.sentinels:
                await watcher.aclose()


def client_for(settings: Settings, role: Role, *, max_connections: int = 32,
               **options: Any) -> RedisClient:
    return connect(place_of(settings, role), max_connections=max_connections, **options)
