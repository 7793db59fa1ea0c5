"""The scaled-out stack of `make run-cluster` (`infra/stack.py --cluster --replicas 2`) as a
module fixture: test_cluster_stack.py checks what a user sees on it, test_cluster_chaos.py
what they see while a broker node or a gateway goes away under load."""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.cluster.rabbitmq_nodes import NODES, recreate_vhost
from tests.e2e.conftest import Stack
from tests.e2e.helpers import Upstream
from tests.support import get_json

ROOT = Path(__file__).parents[2]
VHOST = f"{os.environ.get('TEST_VHOST', 'gw-test')}-stack"
PGBOUNCER_PORT = 6432
ALERT_INTERVAL_MS = 1000
STARTED_WITHIN_S = 60.0  # ten processes starting on two cores, migrations included


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
    recreate_vhost(VHOST)
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
