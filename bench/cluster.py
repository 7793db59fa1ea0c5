"""The cluster rows of `make bench` (issue 23): the same gateway and services on the local
clusters of `make cluster` (three RabbitMQ nodes, a Redis Cluster for the limiter and one for
the cache, PostgreSQL through PgBouncer in transaction mode) beside the single-node stack.

The cluster stack shares the single-node stack's auth and project databases (through
PgBouncer), so the bench's user, token and routes are the same on both gateways; its event
consumers write to databases of their own (`*_bench_cluster`, recreated per run) and its
broker state lives in the bench vhost on the cluster, recreated per run. The Redis Clusters
have no databases to flush: every key the rows touch belongs to this run's routes.

What is read here, besides wrk's figures: the gateway's `gateway_redis_writes_total` and
`gateway_redis_commands_total` (gateway/redis_batch.py) against
`gateway_rate_limit_decisions_total`, i.e. the limiter's round trips per request and the
commands each write carried. Pipelining is per node and per event-loop tick, so on a
cluster a tick costs one write per master its buckets hash to, never one per request.
"""

from __future__ import annotations

import re
import tempfile
import time
import urllib.request
from pathlib import Path

from infra.stack import cluster_env
from tests.cluster.rabbitmq_nodes import cluster_running, from_any_node, recreate_vhost

SERVICES = ("auth_svc", "project_svc", "analytics_svc", "logging_svc")
CONSUMERS = ("logging_svc", "analytics_svc")
OWN_DATABASES = {"ANALYTICS": "gateway_analytics_bench_cluster",
                 "LOGS": "gateway_logs_bench_cluster"}
SHARED_DATABASES = {"AUTH": "gateway_auth_bench", "PROJECT": "gateway_project_bench"}
DIRECT = "postgresql://gateway:gateway@127.0.0.1:5432"
PGBOUNCER = "postgresql://gateway:gateway@127.0.0.1:6432"
KEYS = 12  # API keys rotated by wrk: twelve rate-limit buckets, spread over the masters


def available() -> bool:
    """Whether `make cluster` is up (the bench's Makefile target starts it)."""
    return cluster_running()


def environment(base: dict[str, str], vhost: str, ports: dict[str, int],
                status_port: int) -> dict[str, str]:
    """The single-node bench environment moved onto the clusters: broker nodes, Redis Cluster
    for both roles, every database through PgBouncer and migrated over the direct URL."""
    env = {name: value for name, value in base.items()
           if not name.endswith(("_DATABASE_URL", "_MIGRATION_URL"))
           and name not in ("AMQP_URL", "REDIS_URL", "CACHE_REDIS_URL")}
    for prefix, database in {**SHARED_DATABASES, **OWN_DATABASES}.items():
        env[f"{prefix}_DATABASE_URL"] = f"{PGBOUNCER}/{database}"
        env[f"{prefix}_MIGRATION_URL"] = f"{DIRECT}/{database}"
    env = cluster_env(env)
    env["AMQP_URL"] = ",".join(f"{node}{vhost}" for node in env["AMQP_URL"].split(","))
    env.update({
        "GATEWAY_PORT": str(ports["gateway"]), "GATEWAY_STATUS_PORT": str(status_port),
        "AUTH_HTTP_PORT": str(ports["auth_svc"]), "PROJECT_HTTP_PORT": str(ports["project_svc"]),
        "ANALYTICS_HTTP_PORT": str(ports["analytics_svc"]),
        "LOGGING_HTTP_PORT": str(ports["logging_svc"]),
    })
    return env


def own_database_urls() -> list[str]:
    """The cluster stack's consumer databases, to be recreated per run (direct URLs)."""
    return [f"{DIRECT}/{database}" for database in OWN_DATABASES.values()]


def reset_broker(vhost: str) -> None:
    recreate_vhost(vhost)


def drained(vhost: str, within_s: float = 300) -> float:
    """Seconds until the cluster vhost's queues are empty (the paused consumers' backlog)."""
    started = time.monotonic()
    while time.monotonic() - started < within_s:
        queues = from_any_node(f"/queues/{vhost}?columns=name,messages")
        if all(not queue.get("messages") for queue in queues):
            break
        time.sleep(1)
    return time.monotonic() - started


def metric_sum(metrics_url: str, name: str, label: str | None = None) -> float:
    """The sum of a counter's samples on a Prometheus text page, optionally of one label
    value (e.g. role="limiter")."""
    with urllib.request.urlopen(metrics_url, timeout=10) as response:
        text = response.read().decode()
    total = 0.0
    for match in re.finditer(rf"^{re.escape(name)}(\{{[^}}]*\}})? ([0-9.e+-]+)$", text,
                             re.MULTILINE):
        if label is None or (match.group(1) and label in match.group(1)):
            total += float(match.group(2))
    return total


class LimiterTrips:
    """The limiter's Redis writes and commands per decision over a window of a gateway."""

    def __init__(self, metrics_url: str) -> None:
        self._url = metrics_url
        self._start = self._read()

    def _read(self) -> tuple[float, float, float]:
        return (metric_sum(self._url, "gateway_redis_writes_total", 'role="limiter"'),
                metric_sum(self._url, "gateway_redis_commands_total", 'role="limiter"'),
                metric_sum(self._url, "gateway_rate_limit_decisions_total"))

    def result(self) -> tuple[float, float]:
        """(writes per decision, commands per write) since this was made."""
        end = self._read()
        writes, commands, decisions = (b - a for a, b in zip(self._start, end, strict=True))
        return (writes / decisions if decisions else 0.0,
                commands / writes if writes else 0.0)


def rotation_script(keys: list[str]) -> Path:
    """A wrk script sending each request with the next of the API `keys` (round robin)."""
    quoted = ",\n".join(f'  "{key}"' for key in keys)
    path = Path(tempfile.mkdtemp(prefix="gateway-bench-")) / "rotate_keys.lua"
    path.write_text(
        f"local keys = {{\n{quoted}\n}}\n"
        "local n = 0\n"
        "request = function()\n"
        "  n = n + 1\n"
        '  wrk.headers["X-API-Key"] = keys[(n % #keys) + 1]\n'
        "  return wrk.format()\n"
        "end\n")
    return path
