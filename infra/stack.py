"""Run the whole stack in the foreground: the five processes (and the development SMTP sink),
their output prefixed and merged.

`--replicas N` runs N of each (`make run-cluster`: two): replica k (from 0) serves the
gateway port + k (a load balancer's backends), and every other port of its process + 10 k
(status and service ports; 0, any free port, stays 0). `--cluster` points every process at
the local clusters of `make cluster` and at PostgreSQL through PgBouncer, for each variable
the environment does not set already.

Ctrl-C or SIGTERM stops every process it started (SIGTERM, then SIGKILL after a grace period),
and so does any one of them exiting: a half-running stack is worse than a stopped one.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from collections.abc import Mapping
from dataclasses import dataclass

# (name, command, colour, port variables with their defaults); the SMTP sink stands in for a
# mail server in the development profile and runs once, whatever the replicas.
Spec = tuple[str, tuple[str, ...], str, dict[str, int]]
PROCESSES: tuple[Spec, ...] = (
    ("auth_svc", ("-m", "auth_svc"), "36", {"AUTH_HTTP_PORT": 4001}),
    ("project_svc", ("-m", "project_svc"), "35", {"PROJECT_HTTP_PORT": 4002}),
    ("analytics_svc", ("-m", "analytics_svc"), "34", {"ANALYTICS_HTTP_PORT": 4003}),
    ("logging_svc", ("-m", "logging_svc"), "33", {"LOGGING_HTTP_PORT": 4004}),
    ("gateway", ("-m", "gateway"), "32", {"GATEWAY_PORT": 3000, "GATEWAY_STATUS_PORT": 4000}),
)
SMTP_SINK: Spec = ("smtp-sink", ("infra/smtp_sink.py",), "37", {})
# Replica k listens on the public port + k: consecutive ports are what an operator lists as a
# load balancer's backends. The other ports step by 10, clear of the next service's port.
PUBLIC_PORTS = frozenset({"GATEWAY_PORT"})
PORT_STEP = 10
GRACE_S = 20.0  # SHUTDOWN_DRAIN_S (5) + SHUTDOWN_GRACE_S (10), and a margin for the last flush

# infra/cluster/rabbitmq.sh and redis.sh (README), PgBouncer of infra/up.sh
CLUSTER_ENV = {
    "AMQP_URL": ",".join(f"amqp://guest:guest@127.0.0.1:{port}/" for port in (5681, 5682, 5683)),
    "REDIS_CLUSTER_NODES": "127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003",
    "CACHE_REDIS_CLUSTER_NODES": "127.0.0.1:7101,127.0.0.1:7102,127.0.0.1:7103",
    "DATABASE_POOL_MODE": "transaction",
}
DIRECT_POSTGRES = "postgresql://gateway:gateway@127.0.0.1:5432"
PGBOUNCER = "postgresql://gateway:gateway@127.0.0.1:6432"
DATABASES = {"AUTH": "gateway_auth", "PROJECT": "gateway_project",
             "ANALYTICS": "gateway_analytics", "LOGS": "gateway_logs"}


@dataclass(frozen=True)
class Child:
    name: str
    command: tuple[str, ...]
    colour: str
    env: Mapping[str, str]


def cluster_env(environ: Mapping[str, str]) -> dict[str, str]:
    """`environ` with the clusters' settings wherever it has none of its own. The services
    query through PgBouncer (transaction pooling) and migrate over a direct URL: a migration's
    session advisory lock would not hold across PgBouncer's transactions."""
    env = {**CLUSTER_ENV, **environ}
    for prefix, database in DATABASES.items():
        env.setdefault(f"{prefix}_DATABASE_URL", f"{PGBOUNCER}/{database}")
        env.setdefault(f"{prefix}_MIGRATION_URL", f"{DIRECT_POSTGRES}/{database}")
    return env


def children(environ: Mapping[str, str], replicas: int = 1) -> list[Child]:
    """What the stack runs: the SMTP sink, then `replicas` of each process on ports of its
    own (named `<process>-<k>` from 1 when there are several)."""
    sink_name, sink_command, sink_colour, _ = SMTP_SINK
    started = [Child(sink_name, sink_command, sink_colour, dict(environ))]
    for name, command, colour, ports in PROCESSES:
        for k in range(replicas):
            env = dict(environ)
            for variable, default in ports.items():
                base = int(environ.get(variable, default))
                step = 1 if variable in PUBLIC_PORTS else PORT_STEP
                env[variable] = str(base + k * step if base else 0)
            label = name if replicas == 1 else f"{name}-{k + 1}"
            started.append(Child(label, command, colour, env))
    return started


async def pump(name: str, colour: str, stream: asyncio.StreamReader, width: int) -> None:
    prefix = (f"\x1b[{colour}m{name:<{width}}|\x1b[0m " if sys.stdout.isatty()
              else f"{name:<{width}}| ")
    while line := await stream.readline():
        sys.stdout.write(prefix + line.decode(errors="replace"))
        sys.stdout.flush()


async def run(started: list[Child]) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    width = max(len(child.name) for child in started)
    processes: dict[str, asyncio.subprocess.Process] = {}
    pumps = []
    for spec in started:
        child = await asyncio.create_subprocess_exec(
            sys.executable, *spec.command,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
            env=dict(spec.env), start_new_session=True,  # Ctrl-C reaches us, not them
        )
        processes[spec.name] = child
        assert child.stdout is not None
        pumps.append(asyncio.create_task(pump(spec.name, spec.colour, child.stdout, width)))

    exits = {asyncio.create_task(child.wait()): name for name, child in processes.items()}
    stopper = asyncio.create_task(stop.wait())
    done, _ = await asyncio.wait({stopper, *exits}, return_when=asyncio.FIRST_COMPLETED)
    status = 0
    for task in done:
        if task in exits:
            print(f"stack: {exits[task]} exited with {task.result()}; stopping the others",
                  flush=True)
            status = 1

    for child in processes.values():
        if child.returncode is None:
            child.send_signal(signal.SIGTERM)
    try:
        await asyncio.wait_for(asyncio.gather(*(c.wait() for c in processes.values())), GRACE_S)
    except TimeoutError:
        for name, child in processes.items():
            if child.returncode is None:
                print(f"stack: {name} did not stop in {GRACE_S:.0f} s; killing it", flush=True)
                child.kill()
        await asyncio.gather(*(c.wait() for c in processes.values()))
    await asyncio.gather(*pumps, return_exceptions=True)
    print("stack: all processes stopped", flush=True)
    return status


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--replicas", type=int, default=1,
                        help="processes of each kind (gateway ports +1, other ports +10 each)")
    parser.add_argument("--cluster", action="store_true",
                        help="use the clusters of `make cluster` and PgBouncer")
    options = parser.parse_args(argv)
    if options.replicas < 1:
        parser.error("--replicas must be at least 1")
    environ = cluster_env(os.environ) if options.cluster else dict(os.environ)
    return asyncio.run(run(children(environ, options.replicas)))


if __name__ == "__main__":
    sys.exit(main())
