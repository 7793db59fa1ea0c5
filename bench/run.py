"""`make bench`: throughput and latency of the gateway against baselines measured in the same
run, the logging rows (issue 20: log entries in PostgreSQL) and the analytics rows. Every
row is printed as soon as it is measured (stdout is line-buffered, each line flushed), with
its target and whether it is met beside it; a summary of the targets ends the run, and a
run stopped early (Ctrl-C, SIGTERM, a time limit) has printed every figure measured so far.

Throughput (wrk; BENCH_SECONDS each, BENCH_CONNECTIONS connections):
  (a) the upstream directly          (b) a bare aiohttp reverse proxy (bench/ref_proxy.py)
  (b') a bare reverse proxy on the gateway's own server and upstream client, nothing else
       (bench/own_client_proxy.py): what the pipeline costs is (c) against it
  (n) nginx (Debian package), one worker, as the ceiling (bench/nginx.py)
  (c) gateway, upstream route: JWT + rate limit + forward
  (ck) (c) with 12 API keys of the project in turn instead of the owner's JWT
  (d) gateway, cache-hit route       (e) gateway, RPC route (GET /api/v1/auth/profile)
  (b2) (b) as two processes on one port (SO_REUSEPORT), (b2') (b') likewise
  (c2) (c) on a gateway of its own with GATEWAY_WORKERS=2 (two processes on one port);
  (c*) (c) with the event consumers running (they are paused, SIGSTOP, for (c) to (c2));
  (e)'s overhead: what the gateway RPC route at 1 connection takes over a direct RPC call to
  the same operation, in BENCH_RPC_ROUNDS (default 5) rounds of BENCH_RPC_PAIRS (default
  1000) pairs of calls made back to back from one process (bench/rpc_pairs.py); a round's
  figure is the median of its pairs' differences, and the median of the rounds' figures is
  held against the target.
  cpu us: the CPU time the row's server processes (a supervisor's workers included) used
  per request over the timed run, read from /proc before and after it.

Logging (bench/logs.py; the logging service runs with LOG_STORE=postgresql on a bench
database of its own, gateway_logs_bench, recreated per run):
  - ingest: events/s from the gateway's publisher to stored log entries (and to analytics
    rollups), both consumers running, for max(10, BENCH_SECONDS) s; lost = published -
    stored, counted in the databases;
  - GET /api/v1/logs through the gateway over BENCH_LOG_ENTRIES (default 1,000,000) entries
    of 7 days, 20 developers, 10 projects, 3 % external (seeded per run straight into
    gateway_logs_bench_query with the store's own batch methods, then VACUUM ANALYZE; a
    progress line every 5 s), BENCH_LOG_SAMPLES (default 20) samples per row after one
    warm-up, p50 and p95, as an admin, the developer with many entries and the one with
    few: first page, page 5, the page the 50th nextCursor reaches (the 50 hops walked once;
    the 51st request alone is timed), statusCode=500, method=POST, projectId, the last 24
    hours (from), /logs/errors and by request id (limit 20 throughout);
  - dropping the oldest whole day partition (about BENCH_LOG_ENTRIES / 7 entries) the way
    retention does, and the first-page latency of an admin's and the busy developer's
    client before and while it runs;
  - the same query rows with LOG_STORE=mongodb on the local FerretDB over
    BENCH_MONGO_LOG_ENTRIES (default 100,000) entries (seeded per run into
    gateway_bench_logs), BENCH_MONGO_LOG_SAMPLES (default 3) samples, each request cut off
    after BENCH_MONGO_LOG_LIMIT_S (default 10) s ("> 10 s"; the rest of that row is then
    skipped and the next row waits until the service finished the abandoned query), the
    rows together within BENCH_MONGO_LOG_BUDGET_S (default 90) s, the rest listed as not
    run; then both side by side. BENCH_MONGO_LOGS=0 skips the MongoDB side.
  BENCH_LOGS=0 skips all logging rows.

Analytics (bench/analytics.py): events/s folded into rollups in the same ingest run, and
  summary / latency / top-endpoints over BENCH_ANALYTICS_REQUESTS (default 1,000,000)
  requests of 7 days and 20 tenants, 7-day and 1-hour ranges, admin and tenant, through the
  gateway (BENCH_ANALYTICS_SAMPLES, 20), beside the same answers computed from the raw log
  entries. BENCH_ANALYTICS=0 skips the query rows, BENCH_ANALYTICS_RAW=0 their raw side (by
  default one range and role, a tenant's last hour: about two minutes on the local FerretDB;
  BENCH_ANALYTICS_RAW=all reads all four, about nine).

Cluster (bench/cluster.py, issue 23; `make bench` starts `make cluster`): the same gateway and
  services on the local RabbitMQ cluster, Redis Clusters and PgBouncer beside the single-node
  stack, back to back, both stacks' consumers paused: the upstream route with 12 API keys
  in turn (wrk script), its throughput as a ratio of the single node's and the
  limiter's Redis writes (round trips) per request and commands per write on each; the RPC
  route's p50 at 1 connection and its overhead over a direct RPC call on each, in 3 rounds.
  Target: limiter writes per request < 1 on both (pipelined per node and tick); no non-2xx.
  BENCH_CLUSTER=0 skips them.

Webhooks (bench/webhooks.py, issue 25): BENCH_WEBHOOK_EVENTS (2,000) domain events published
  at once to one webhook and a loopback receiver: deliveries/s and lost (0); then
  BENCH_WEBHOOK_RATE (50) events/s for 10 s: p95 from an event to its first attempt (<= 1 s).
  BENCH_WEBHOOKS=0 skips them.

BENCH_ONLY=logs (or throughput, cluster, webhooks, analytics, alerts, decode; comma-separated)
runs only those parts.
Decode (bench/decode.py, first, before the stack starts; CPU only): decode_events of one message
of 500 request.completed events against orjson.loads of the same bytes, and encode_events
against orjson.dumps of the same events as dicts, ratios beside; <= 5 ms per 500 events;
BENCH_DECODE=0 skips them (`python bench/decode.py` runs them alone, without the stack).
Alerts (bench/alerts.py): GET /api/v1/alerts/events first page as an owner and an admin, and
acknowledge-by-id, over BENCH_ALERT_EVENTS (100,000) events in the PostgreSQL event store,
seeded once into gateway_bench_alerts; BENCH_ALERT_SAMPLES (20), at most BENCH_ALERT_BUDGET_S
(120) s a row; p95 <= 50 ms; BENCH_ALERTS=0 skips them.
BENCH_PROFILE=1 (or =cached) prints a py-spy profile of (c) (or (d)); BENCH_CPU=1 the cores
each process group kept busy during (b), (c), (c*) and (d).

Load comes from wrk on core 1, the servers are pinned to core 0 where possible (2 cores);
the two-process servers of (b2) and (c2) to cores 0 and 1 (so they share core 1 with wrk,
alike for both). Everything runs on loopback, bounded in time. Targets (issue 28): (c) >= 0.75
x (b') and its CPU per request <= 1.5 x (b')'s; (c2) >= 0.75 x (b2') and >= 1.7 x (c); (c*)
>= 0.85 x (b'); (d) >= 1.5 x (c); (e) median of the rounds' p50 - direct RPC p50 <= 1.0 ms;
the whole run within 15 minutes; log ingest >= 10,000 events/s with 0 lost, rollups >= 5,000
events/s with 0 lost; every GET /logs row p95 <= 100 ms (PostgreSQL); analytics p95 <= 50 ms
and >= 20 x faster than raw.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import alerts, analytics, cluster, decode, logs, nginx, webhooks  # noqa: E402 - after the path
from bench.logs import say  # noqa: E402
from tests.support import rabbit_api, recreate_database, recreate_vhost  # noqa: E402

ONLY = {part.strip() for part in os.environ.get("BENCH_ONLY", "").split(",") if part.strip()}


def part(name: str, switch: str | None = None) -> bool:
    """Whether a part of the bench runs: BENCH_ONLY names it (or is unset) and its own
    switch is not 0."""
    return (not ONLY or name in ONLY) and (switch is None or os.environ.get(switch) != "0")


WITH_THROUGHPUT = part("throughput")
WITH_LOGS = part("logs", "BENCH_LOGS")
WITH_MONGO_LOGS = WITH_LOGS and os.environ.get("BENCH_MONGO_LOGS") != "0"
LOG_ENTRIES = int(os.environ.get("BENCH_LOG_ENTRIES", "1000000"))
LOG_SAMPLES = int(os.environ.get("BENCH_LOG_SAMPLES", "20"))
MONGO_LOG_ENTRIES = int(os.environ.get("BENCH_MONGO_LOG_ENTRIES", "100000"))
MONGO_LOG_SAMPLES = int(os.environ.get("BENCH_MONGO_LOG_SAMPLES", "3"))
MONGO_LOG_LIMIT_S = float(os.environ.get("BENCH_MONGO_LOG_LIMIT_S", "10"))
# the MongoDB rows' time budget: FerretDB takes 15 to 35 s per row here (the cut-off and the
# wait for the abandoned query), which alone took 11 minutes of a 15-minute bench
MONGO_LOG_BUDGET_S = float(os.environ.get("BENCH_MONGO_LOG_BUDGET_S", "90"))
PG = "postgresql://gateway:gateway@127.0.0.1:5432"
LOGS_DATABASE_URL = f"{PG}/gateway_logs_bench"  # the stack's log store, recreated per run
LOG_QUERY_URL = f"{PG}/gateway_logs_bench_query"  # the query rows' entries, seeded per run
MONGO_LOG_DB = "gateway_bench_logs"  # the MongoDB side's entries, seeded per run
ANALYTICS_REQUESTS = int(os.environ.get("BENCH_ANALYTICS_REQUESTS", "1000000"))
ANALYTICS_SAMPLES = int(os.environ.get("BENCH_ANALYTICS_SAMPLES", "20"))
WITH_ANALYTICS = part("analytics", "BENCH_ANALYTICS")
WITH_ALERTS = part("alerts", "BENCH_ALERTS")
WITH_DECODE = part("decode", "BENCH_DECODE")
WITH_CLUSTER = part("cluster", "BENCH_CLUSTER")
WITH_WEBHOOKS = part("webhooks", "BENCH_WEBHOOKS")
WITH_RAW = os.environ.get("BENCH_ANALYTICS_RAW", "1") != "0"
# the raw side reads every matching entry from FerretDB: about two minutes per range and role
# here, nine for all four; by default one (the last hour, a tenant), BENCH_ANALYTICS_RAW=all
# reads all four
ALL_RAW = os.environ.get("BENCH_ANALYTICS_RAW") == "all"
# seeded once, kept for later runs (re-seeded when a day old)
ANALYTICS_QUERY_URL = f"{PG}/gateway_analytics_bench_query"
ANALYTICS_RAW_DB = "gateway_bench_analytics_raw"

DURATION_S = int(os.environ.get("BENCH_SECONDS", "10"))
CONNECTIONS = int(os.environ.get("BENCH_CONNECTIONS", "50"))
RPC_ROUNDS = max(1, int(os.environ.get("BENCH_RPC_ROUNDS", "5")))
RPC_PAIRS = max(10, int(os.environ.get("BENCH_RPC_PAIRS", "1000")))
VHOST = "gw-bench"
SERVICES = ("auth_svc", "project_svc", "analytics_svc", "logging_svc")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def api(method: str, url: str, body: object = None, token: str | None = None) -> dict:
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(url, method=method, headers=headers,
                                     data=None if body is None else json.dumps(body).encode())
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read() or b"null")


def pinned(cores: int | str) -> list[str]:
    """The command prefix that keeps a process on `cores` (taskset's list: 0, or "0,1")."""
    return ["taskset", "-c", str(cores)] if shutil.which("taskset") else []


class Processes:
    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.running: list[subprocess.Popen] = []

    def start(self, name: str, command: list[str], env: dict[str, str],
              cwd: Path = ROOT) -> subprocess.Popen:
        log = open(self.log_dir / f"{name}.log", "ab")
        process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT,
                                   cwd=cwd)
        self.running.append(process)
        return process

    def stop(self) -> None:
        for process in self.running:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.running:
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()


def listening_sockets(port: int) -> int | None:
    """How many sockets listen on `port` on this host (each SO_REUSEPORT socket counts);
    None where /proc/net/tcp cannot be read."""
    try:
        lines = Path("/proc/net/tcp").read_text().splitlines()[1:]
    except OSError:
        return None
    return sum(1 for line in lines
               if line.split()[3] == "0A" and int(line.split()[1].rsplit(":", 1)[1], 16) == port)


def wait_for(url: str, within_s: float = 60, listeners: int = 1) -> None:
    """Until `url` answers and, with listeners > 1, that many processes listen on its port
    (SO_REUSEPORT: an answer shows only that one of them is up)."""
    port = urllib.parse.urlsplit(url).port
    until = time.monotonic() + within_s
    while time.monotonic() < until:
        try:
            urllib.request.urlopen(url, timeout=2).read()
            sockets = listening_sockets(port) if listeners > 1 else None
            if sockets is None or sockets >= listeners:
                return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.2)
    raise SystemExit(f"bench: {url} did not come up"
                     f"{f' in {listeners} processes' if listeners > 1 else ''}")


UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def queues_drained(within_s: float = 300) -> float:
    """Seconds until the bench vhost's queues are empty (the paused consumers' backlog), so
    later rows do not share the cores with it."""
    started = time.monotonic()
    while time.monotonic() - started < within_s:
        queues = rabbit_api("GET", f"/queues/{VHOST}?columns=name,messages")
        if all(not queue.get("messages") for queue in queues):  # type: ignore[union-attr]
            break
        time.sleep(1)
    return time.monotonic() - started

# BENCH_CPU=1: where the machine's CPU goes during a row, by process group (cmdline match)
CPU_GROUPS = (("gateway", "-m gateway"), ("upstream", "bench/upstream.py"),
              ("ref proxy", "bench/ref_proxy.py"),
              ("own-client proxy", "bench/own_client_proxy.py"), ("nginx", "nginx"),
              ("logging_svc", "-m logging_svc"),
              ("analytics_svc", "-m analytics_svc"), ("auth/project svc", "_svc"),
              ("redis", "redis-server"), ("rabbitmq", "beam.smp"), ("ferretdb", "ferretdb"),
              ("postgres", "postgres"), ("wrk", "wrk"))
WITH_CPU = os.environ.get("BENCH_CPU") == "1"


def process_table() -> dict[int, tuple[int, float]]:
    """Every process now: its parent's id and the CPU seconds it used so far (/proc)."""
    tick = os.sysconf("SC_CLK_TCK")
    table: dict[int, tuple[int, float]] = {}
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        table[int(entry)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / tick)
    return table


def cpu_seconds() -> dict[str, float]:
    """CPU seconds used so far by every process, summed by group."""
    used: dict[str, float] = {}
    for pid, (_parent, seconds) in process_table().items():
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        group = next((name for name, pattern in CPU_GROUPS if pattern in cmdline), "other")
        used[group] = used.get(group, 0.0) + seconds
    return used


def with_cpu(label: str, measure) -> dict[str, float]:
    """Runs `measure()` (a wrk row); with BENCH_CPU=1 prints the cores each group kept busy."""
    if not WITH_CPU:
        return measure()
    before, started = cpu_seconds(), time.monotonic()
    result = measure()
    after, elapsed = cpu_seconds(), time.monotonic() - started
    busy = sorted(((after.get(g, 0) - before.get(g, 0)) / elapsed, g) for g in after)
    say(f"cpu during {label}: " + ", ".join(
        f"{g} {cores:.2f}" for cores, g in reversed(busy) if cores >= 0.01))
    return result


def process_tree_cpu(pids: list[int]) -> float:
    """CPU seconds used so far by `pids` and every process below them (a supervisor's
    workers), from /proc."""
    table = process_table()
    total = 0.0
    for pid, (_parent, seconds) in table.items():
        ancestor = pid
        while ancestor > 1 and ancestor not in pids:
            ancestor = table.get(ancestor, (0, 0.0))[0]
        if ancestor in pids:
            total += seconds
    return total


def box_busy_s() -> float:
    """CPU seconds all cores have been busy so far, every process and the kernel (/proc/stat:
    all but idle, iowait and steal, which is another machine's)."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:8]
    user, nice, system, _idle, _iowait, irq, softirq = map(int, fields)
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


def reaped_children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def wrk(url: str, token: str | None = None, connections: int = CONNECTIONS,
        duration_s: int = DURATION_S, script: Path | None = None,
        server: list[int] | None = None) -> dict[str, float]:
    """wrk's figures for `url`; `script` (a wrk Lua script) may set each request's headers.
    With `server` (its processes' ids) also the CPU time they used per request ("cpu_us"),
    over the timed run only (the warm-up excluded), and the whole machine's but wrk's
    ("box_us": Redis, the broker, the upstream, consumers and the kernel included). With
    every core busy, as in the two-process rows, throughput is bound by box_us: two rows'
    req/s cannot differ by more than their box_us do."""
    command = [*pinned(1), "wrk", "-t1", f"-c{connections}", "--latency"]
    if token:
        command += ["-H", f"Authorization: Bearer {token}"]
    if script is not None:
        command += ["-s", str(script)]
    # warm-up with the same credentials (it used to drop the header: 2 s of 401s)
    subprocess.run([*command, "-d2s", url], capture_output=True, timeout=60)
    cpu_before = process_tree_cpu(server) if server else 0.0
    box_before, wrk_before = box_busy_s(), reaped_children_cpu_s()
    output = subprocess.run([*command, f"-d{duration_s}s", url], capture_output=True, text=True,
                            timeout=duration_s + 60).stdout
    box_used = box_busy_s() - box_before - (reaped_children_cpu_s() - wrk_before)
    cpu_used = process_tree_cpu(server) - cpu_before if server else 0.0
    result = {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))}
    requests = int(re.search(r"(\d+) requests in", output).group(1))
    if server and requests:
        result["cpu_us"] = cpu_used / requests * 1e6
        result["box_us"] = box_used / requests * 1e6
    for label, key in (("50%", "p50"), ("99%", "p99")):
        value, unit = re.search(rf"{re.escape(label)}\s+([\d.]+)(us|ms|s)", output).groups()
        result[key] = float(value) * UNITS[unit]
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    result["errors"] = int(non2xx.group(1)) if non2xx else 0
    return result


def rpc_pairs(env: dict[str, str], gateway: str, token: str, caller: dict) -> dict[str, float]:
    """(e): bench/rpc_pairs.py's figures, in ms."""
    output = subprocess.run(
        [*pinned(1), sys.executable, "bench/rpc_pairs.py", env["AMQP_URL"], gateway, token,
         json.dumps(caller), str(RPC_PAIRS)], cwd=ROOT, capture_output=True, text=True,
        timeout=300, check=True).stdout
    return json.loads(output)


def profile_gateway(pid: int, url: str, token: str) -> None:
    """BENCH_PROFILE=1: sample the gateway with py-spy under load; print the top self-time
    frames and the top inclusive ones of our own code."""
    out = Path(tempfile.mkdtemp()) / "gateway.folded"
    spy = subprocess.Popen(["py-spy", "record", "--format", "raw", "-r", "200", "-d",
                            str(DURATION_S), "-o", str(out), "-p", str(pid), "--nonblocking"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wrk(url, token)
    spy.wait(60)
    self_time: dict[str, int] = {}
    inclusive: dict[str, int] = {}
    total = 0
    for line in out.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():  # py-spy now and then reads a frame's text from garbage
            continue
        frames = stack.split(";")
        total += int(count)
        self_time[frames[-1]] = self_time.get(frames[-1], 0) + int(count)
        for frame in set(frames):
            if ("gateway/" in frame or "contracts/" in frame) and "site-packages" not in frame:
                inclusive[frame] = inclusive.get(frame, 0) + int(count)
    print(f"\nprofile of {url} (py-spy's raw stacks in {out}), top self time:")
    for frame, count in sorted(self_time.items(), key=lambda kv: -kv[1])[:15]:
        print(f"  {100 * count / total:5.1f}%  {frame}")
    print("top inclusive (project code):")
    for frame, count in sorted(inclusive.items(), key=lambda kv: -kv[1])[:15]:
        print(f"  {100 * count / total:5.1f}%  {frame}")


def live_output() -> None:
    """Rows appear as they are measured, also when stdout is a file or a pipe; the stores'
    own info lines (partitions created...) stay out of the table; SIGTERM (a time limit)
    ends the run through `finally`, which stops the processes and prints the summary."""
    import logging

    import structlog

    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))


class Stack:
    """The bench's processes and where they listen."""

    def __init__(self) -> None:
        self.ports = {name: free_port()
                      for name in ("upstream", "ref", "ref2", "own", "own2", "nginx", "gateway",
                                   "gateway2", *SERVICES)}
        ports = self.ports
        self.env = {
            **os.environ, "APP_ENV": "test", "LOG_LEVEL": "WARNING",
            "AMQP_URL": f"amqp://guest:guest@127.0.0.1:5672/{VHOST}",
            "REDIS_URL": "redis://127.0.0.1:6379/12", "MONGO_DB": "gateway_bench",
            "CACHE_REDIS_URL": "redis://127.0.0.1:6380/12",
            "AUTH_DATABASE_URL": f"{PG}/gateway_auth_bench",
            "PROJECT_DATABASE_URL": f"{PG}/gateway_project_bench",
            "ANALYTICS_DATABASE_URL": f"{PG}/gateway_analytics_bench",
            "LOG_STORE": "postgresql", "LOGS_DATABASE_URL": LOGS_DATABASE_URL,
            "GATEWAY_PORT": str(ports["gateway"]), "UPSTREAM_ALLOW_PRIVATE": "127.0.0.0/8",
            "GATEWAY_STATUS_PORT": str(free_port()),
            "RATE_LIMIT_USER": "1000000000", "RATE_LIMIT_IP": "1000000000",
            "RATE_LIMIT_API_KEY": "1000000000",
            "AUTH_HTTP_PORT": str(ports["auth_svc"]),
            "PROJECT_HTTP_PORT": str(ports["project_svc"]),
            "ANALYTICS_HTTP_PORT": str(ports["analytics_svc"]),
            "LOGGING_HTTP_PORT": str(ports["logging_svc"]),
            # a slow query is measured, not cut off at the default 5 s (504): the MongoDB
            # side of the log rows and the analytics raw comparison need it
            "RPC_TIMEOUT_MS": "120000",
        }
        self.log_dir = Path(tempfile.mkdtemp(prefix="gateway-bench-"))
        self.processes = Processes(self.log_dir)
        self.started: dict[str, subprocess.Popen] = {}  # by name: "gateway", "own2-0"...
        self.upstream = f"http://127.0.0.1:{ports['upstream']}"
        self.ref = f"http://127.0.0.1:{ports['ref']}"
        self.ref2 = f"http://127.0.0.1:{ports['ref2']}"
        self.own = f"http://127.0.0.1:{ports['own']}"
        self.own2 = f"http://127.0.0.1:{ports['own2']}"
        self.nginx = f"http://127.0.0.1:{ports['nginx']}" if nginx.binary() else None
        self.gateway = f"http://127.0.0.1:{ports['gateway']}"
        self.gateway2 = f"http://127.0.0.1:{ports['gateway2']}"
        self.mongo_url = self.env.get("MONGO_URL", "mongodb://127.0.0.1:27017")
        self.cluster_env: dict[str, str] = {}  # start_cluster() fills these in
        self.cluster_gateway = ""
        self.logging_metrics = f"http://127.0.0.1:{ports['logging_svc']}/metrics"
        self.analytics_metrics = f"http://127.0.0.1:{ports['analytics_svc']}/metrics"

    def reset_state(self) -> None:
        recreate_vhost(VHOST)
        for name in ("AUTH_DATABASE_URL", "PROJECT_DATABASE_URL", "ANALYTICS_DATABASE_URL",
                     "LOGS_DATABASE_URL"):
            asyncio.run(recreate_database(self.env[name]))
        import redis

        for url in (self.env["REDIS_URL"], self.env["CACHE_REDIS_URL"]):
            redis.Redis.from_url(url).flushdb()
        import pymongo

        pymongo.MongoClient(self.mongo_url).drop_database(self.env["MONGO_DB"])

    def start(self) -> None:
        python, ports, env = sys.executable, self.ports, self.env

        def start(name: str, command: list[str], env: dict[str, str]) -> subprocess.Popen:
            self.started[name] = self.processes.start(name, command, env)
            return self.started[name]

        if WITH_THROUGHPUT or WITH_CLUSTER:
            start("upstream", [*pinned(0), python, "bench/upstream.py",
                               str(ports["upstream"])], env)
        if WITH_THROUGHPUT:
            start("ref", [*pinned(0), python, "bench/ref_proxy.py", str(ports["ref"]),
                          self.upstream], env)
            start("own", [*pinned(0), python, "bench/own_client_proxy.py", str(ports["own"]),
                          self.upstream], env)
            for n in range(2):  # (b2), (b2')
                start(f"ref2-{n}", [*pinned("0,1"), python, "bench/ref_proxy.py",
                                    str(ports["ref2"]), self.upstream, "--reuse-port"], env)
                start(f"own2-{n}", [*pinned("0,1"), python, "bench/own_client_proxy.py",
                                    str(ports["own2"]), self.upstream, "--reuse-port"], env)
            if self.nginx:
                start("nginx", [*pinned(0), *nginx.command(ports["nginx"], self.upstream.split(
                    "//", 1)[1])], env)
        for service in SERVICES:
            start(service, [python, "-m", service], env)
        start("gateway", [*pinned(0), python, "-m", "gateway"], env)
        if WITH_THROUGHPUT:
            # (c2): a gateway of its own, two workers on its own port (and status port)
            start("gateway2", [*pinned("0,1"), python, "-m", "gateway"], {
                **env, "GATEWAY_WORKERS": "2", "GATEWAY_PORT": str(ports["gateway2"]),
                "GATEWAY_STATUS_PORT": str(free_port())})
            wait_for(self.ref + "/item")
            wait_for(self.ref2 + "/item", listeners=2)
            wait_for(self.own + "/item")
            wait_for(self.own2 + "/item", listeners=2)
            if self.nginx:
                wait_for(self.nginx + "/item")
        if WITH_THROUGHPUT or WITH_CLUSTER:
            wait_for(self.upstream + "/item")
        wait_for(self.gateway + "/health", within_s=90)
        if WITH_THROUGHPUT:
            wait_for(self.gateway2 + "/health", within_s=90, listeners=2)

    def start_cluster(self) -> None:
        """The same gateway and services on the clusters of `make cluster` (bench/cluster.py),
        the gateway pinned like the single-node one."""
        ports = {name: free_port() for name in ("gateway", *SERVICES)}
        self.cluster_env = cluster.environment(self.env, VHOST, ports, free_port())
        cluster.reset_broker(VHOST)
        for url in cluster.own_database_urls():
            asyncio.run(recreate_database(url))
        python, start = sys.executable, self.processes.start
        for service in SERVICES:
            self.started[f"{service}@cluster"] = start(f"{service}-cluster",
                                                       [python, "-m", service], self.cluster_env)
        self.started["gateway@cluster"] = start("gateway-cluster",
                                                [*pinned(0), python, "-m", "gateway"],
                                                self.cluster_env)
        self.cluster_gateway = f"http://127.0.0.1:{ports['gateway']}"
        wait_for(self.cluster_gateway + "/health", within_s=120)

    def pids(self, *names: str) -> list[int]:
        """The process ids of `names` (a prefix such as "own2-" takes every one of them)."""
        return [process.pid for name, process in self.started.items()
                if any(name == wanted or (wanted.endswith("-") and name.startswith(wanted))
                       for wanted in names)]

    def restart(self, service: str, **overrides: str) -> None:
        """`service` again with `overrides` in its environment (none: the stack's own)."""
        old = self.started[service]
        old.send_signal(signal.SIGTERM)
        old.wait(30)
        self.started[service] = self.processes.start(
            service, [sys.executable, "-m", service], {**self.env, **overrides})
        port = self.ports[service]
        wait_for(f"http://127.0.0.1:{port}/metrics", within_s=90)

    def stop_service(self, service: str) -> None:
        old = self.started[service]
        old.send_signal(signal.SIGTERM)
        old.wait(30)


Checks = list[tuple[str, bool]]


def verdict(ok: bool) -> str:
    return "met" if ok else "MISSED"


def settle(counters: list, quiet_s: float = 3.0, within_s: float = 60) -> None:
    """Until none of `counters` moved for `quiet_s` (the set-up requests' events are counted
    before the ingest run, not during it)."""
    last, since = [read() for read in counters], time.monotonic()
    until = since + within_s
    while time.monotonic() < until and time.monotonic() - since < quiet_s:
        time.sleep(0.25)
        now = [read() for read in counters]
        if now != last:
            last, since = now, time.monotonic()


def ingest_rows(stack: Stack, checks: Checks) -> None:
    seconds = max(10, DURATION_S)
    settle([lambda: logs.stored_by_service(stack.logging_metrics),
            lambda: analytics.folded_by_service(stack.analytics_metrics)])
    say(f"\nlog ingest: the gateway's publisher for {seconds} s, the logging (LOG_STORE="
        f"postgresql, {LOGS_DATABASE_URL.rsplit('/', 1)[1]}) and analytics consumers running")
    folded_before = asyncio.run(analytics.folded_in_database(
        stack.env["ANALYTICS_DATABASE_URL"]))
    ingest = asyncio.run(logs.ingest(stack.env["AMQP_URL"], [
        logs.Sink("logging", lambda: logs.stored_by_service(stack.logging_metrics)),
        logs.Sink("analytics", lambda: analytics.folded_by_service(stack.analytics_metrics)),
    ], seconds))
    lost = {
        "logging": ingest.published - asyncio.run(logs.stored_in_database(LOGS_DATABASE_URL)),
        "analytics": ingest.published - (asyncio.run(analytics.folded_in_database(
            stack.env["ANALYTICS_DATABASE_URL"])) - folded_before),
    }
    say(f"  {ingest.published} events published in {ingest.publish_s:.1f} s"
        f" ({ingest.published / ingest.publish_s:.0f}/s offered)")
    targets = {"logging": logs.INGEST_TARGET, "analytics": 5000}
    for name, sink in ingest.sinks.items():
        rate = sink.done / sink.elapsed_s if sink.elapsed_s else 0.0
        ok = rate >= targets[name] and lost[name] == 0
        say(f"  {name:10} {sink.done} {'stored' if name == 'logging' else 'folded'} at "
            f"{rate:,.0f}/s end to end; lost {lost[name]}"
            f"   target >= {targets[name]:,}/s, 0 lost: {verdict(ok)}")
        checks.append((f"{name} ingest >= {targets[name]:,} events/s: {rate:,.0f}/s",
                       rate >= targets[name]))
        checks.append((f"{name} ingest lost 0: {lost[name]}", lost[name] == 0))


OWN_RATIO = "x (b')"  # a column heading (no quote of its kind inside an f-string on 3.11)
OWN2 = "(b2')"


def throughput_rows(stack: Stack, token: str, session: dict, checks: Checks) -> None:
    gateway, consumers = stack.gateway, [stack.started["logging_svc"],
                                         stack.started["analytics_svc"]]
    say(f"\nthroughput: wrk -t1 -c{CONNECTIONS} -d{DURATION_S}s on core 1; servers on core 0 "
        "((b2), (b2'), (c2): on cores 0-1); the event consumers paused (SIGSTOP) from (c) on, "
        "running (idle without traffic) in (a) to (n) and running in (c*); cpu: the server's "
        "processes' CPU time per request over the timed run, from /proc; box: every core's "
        "busy time per request but wrk's (the server, upstream, Redis, broker, consumers, "
        "databases, kernel)")
    say(f"  {'row':34} {'req/s':>8} {'p50 ms':>7} {'p99 ms':>7} {'x (b)':>6} {OWN_RATIO:>6} "
        f"{'cpu us':>7} {'box us':>7} {'non-2xx':>7}")
    results: dict[str, dict[str, float]] = {}

    def row(name: str, result: dict[str, float]) -> None:
        results[name.split()[0]] = result
        ratios = ""
        for reference in ("(b)", "(b')"):
            rps = results.get(reference, {}).get("rps")
            ratios += f" {result['rps'] / rps:6.2f}" if rps else f" {'-':>6}"
        cpu = "".join(f" {result[key]:7.0f}" if key in result else f" {'-':>7}"
                      for key in ("cpu_us", "box_us"))
        say(f"  {name:34} {result['rps']:8.0f} {result['p50']:7.2f} {result['p99']:7.2f}"
            f"{ratios}{cpu} {result['errors']:7d}")

    def measured(label: str, url: str, *names: str, **options) -> dict[str, float]:
        return with_cpu(label, lambda: wrk(url, server=stack.pids(*names), **options))

    row("(a) upstream directly", wrk(stack.upstream + "/item"))
    row("(b) bare aiohttp proxy", measured("(b)", stack.ref + "/item", "ref"))
    row("(b') bare proxy, gateway's client", measured("(b')", stack.own + "/item", "own"))
    if stack.nginx:
        row("(n) nginx, 1 worker (ceiling)", measured("(n)", stack.nginx + "/item", "nginx"))
    # The request path on its own, like (b): the asynchronous consumers (and the databases
    # they write to) are paused while wrk runs, their events wait in their queues and are
    # consumed afterwards (the ingest rows measure them). (c*) is (c) with them running.
    row("(c*) (c), consumers running", measured("(c*)", gateway + "/bench/item", "gateway",
                                               token=token))
    for consumer in consumers:
        consumer.send_signal(signal.SIGSTOP)
    try:
        if os.environ.get("BENCH_PROFILE"):
            # BENCH_PROFILE=cached profiles (d) instead of (c)
            path = "/bench/cached" if os.environ["BENCH_PROFILE"] == "cached" else "/bench/item"
            profile_gateway(stack.started["gateway"].pid, gateway + path, token)
        row("(c) gateway, upstream route", measured("(c)", gateway + "/bench/item", "gateway",
                                                    token=token))
        row(f"(ck) (c), {cluster.KEYS} API keys in turn", measured(
            "(ck)", gateway + "/bench/item", "gateway", script=session["keys_script"]))
        row("(d) gateway, cache hit", measured("(d)", gateway + "/bench/cached", "gateway",
                                               token=token))
        row("(e) gateway, RPC route", wrk(gateway + "/api/v1/auth/profile", token))
        row("(b2) aiohttp proxy, 2 processes", measured("(b2)", stack.ref2 + "/item", "ref2-"))
        row("(b2') (b'), 2 processes", measured("(b2')", stack.own2 + "/item", "own2-"))
        row("(c2) upstream route, 2 workers", measured("(c2)", stack.gateway2 + "/bench/item",
                                                       "gateway2", token=token))
    finally:
        for consumer in consumers:
            consumer.send_signal(signal.SIGCONT)
    rps = {name: result["rps"] for name, result in results.items()}
    cpu = {name: result.get("cpu_us", 0.0) for name, result in results.items()}
    b, own, c, d, own2, c2 = (rps[name] for name in ("(b)", "(b')", "(c)", "(d)", "(b2')",
                                                     "(c2)"))
    say(f"  two processes: (b2) {rps['(b2)'] / b:.2f} x (b), (b2') {own2 / own:.2f} x (b'), "
        f"the gateway {c2 / c:.2f} x (c); (c) {c / b:.2f} x the aiohttp proxy (b)")
    c_cpu, own_cpu = cpu["(c)"], cpu["(b')"]
    say(f"  cpu per request: (c) {c_cpu:.0f} us, (b') {own_cpu:.0f} us, "
        f"(b) {cpu['(b)']:.0f} us" + (f", nginx {cpu['(n)']:.0f} us" if "(n)" in cpu else ""))
    box = {name: result.get("box_us", 0.0) for name, result in results.items()}
    # With both cores busy, req/s is about the cores' busy time over box_us: against (b2'),
    # (c2) reaches about their box_us' ratio, however well the gateway itself scales (wrk's
    # share, not in box_us, shrinks as req/s does: the real ratio comes out a little higher).
    bound = box[OWN2] / box["(c2)"] if box.get("(c2)") else 0.0
    say("  the machine's CPU per request (box us): " + ", ".join(
        f"{name} {box[name]:.0f}" for name in ("(b')", "(c)", "(c*)", OWN2, "(c2)")
        if box.get(name)) + f"; at the cores' busy time (b2') had, (c2) would reach "
        f"~{bound:.2f} x (b2')")
    cpu_ratio = c_cpu / own_cpu if own_cpu else float("inf")
    for text, ok in ((f"(c) >= 0.75 x (b'): {c / own:.2f}", c >= 0.75 * own),
                     (f"(c) cpu per request <= 1.5 x (b')'s: {cpu_ratio:.2f} "
                      f"({c_cpu:.0f} vs {own_cpu:.0f} us)", cpu_ratio <= 1.5),
                     (f"(c2) >= 0.75 x (b2'): {c2 / own2:.2f}", c2 >= 0.75 * own2),
                     (f"(c2) 2 workers >= 1.7 x (c) 1 worker: {c2 / c:.2f}", c2 >= 1.7 * c),
                     (f"(c*) consumers running >= 0.85 x (b'): {rps['(c*)'] / own:.2f}",
                      rps["(c*)"] >= 0.85 * own),
                     (f"(d) >= 1.5 x (c): {d / c:.2f}", d >= 1.5 * c)):
        say(f"  {verdict(ok):6}  {text}")
        checks.append((text, ok))
    say(f"  (the paused consumers' backlog drained in {queues_drained():.0f} s)")

    caller = {"userId": session["user"]["id"], "email": session["email"], "role": "DEVELOPER"}
    say(f"\n(e) overhead at 1 connection, {RPC_ROUNDS} rounds of {RPC_PAIRS} pairs "
        "(bench/rpc_pairs.py: a direct RPC auth.profile call and the gateway's RPC route back "
        "to back, from one process on core 1): route p50, direct p50, the pairs' median "
        "difference")
    overheads = []
    for n in range(1, RPC_ROUNDS + 1):
        pairs = rpc_pairs(stack.env, gateway, token, caller)
        overheads.append(pairs["overhead_p50"])
        say(f"  round {n}: {pairs['route_p50']:.2f}, {pairs['direct_p50']:.2f}, "
            f"{pairs['overhead_p50']:+.2f} ms")
    overhead = statistics.median(overheads)
    text = f"(e) overhead <= 1.0 ms: median of {len(overheads)} rounds {overhead:.2f} ms"
    say(f"  median {overhead:+.2f} ms   target <= 1.0 ms: {verdict(overhead <= 1.0)}")
    checks.append((text, overhead <= 1.0))


def cluster_rows(stack: Stack, session: dict, checks: Checks) -> None:
    """Issue 23's rows: upstream route throughput and RPC route latency on the clusters beside
    the single-node stack, measured back to back, and the limiter's Redis round trips per
    request on each (bench/cluster.py)."""
    say("\ncluster: the same gateway and services on `make cluster` (RabbitMQ gw1-gw3, Redis "
        "Cluster 3 masters + 3 replicas, cache cluster 3 masters, PgBouncer transaction "
        "pooling) beside the single-node stack")
    if not cluster.available():
        say("  skipped: the clusters of `make cluster` are not running")
        checks.append(("cluster rows: `make cluster` not running", False))
        return
    stack.start_cluster()
    token = session["accessToken"]
    # the project's keys work on both: both stacks' project services read the same database
    script = session["keys_script"]
    sides = (("single node", stack.gateway, stack.env),
             ("clusters", stack.cluster_gateway, stack.cluster_env))
    consumers = [stack.started[name] for name in (
        "logging_svc", "analytics_svc", "logging_svc@cluster", "analytics_svc@cluster")]
    say(f"  wrk -t1 -c{CONNECTIONS} -d{DURATION_S}s, {cluster.KEYS} API keys of the project in "
        f"turn ({cluster.KEYS} rate-limit buckets); the event consumers of both stacks paused")
    say(f"  {'row':32} {'req/s':>10} {'p50 ms':>8} {'p99 ms':>8} {'x single':>8} "
        f"{'non-2xx':>8} {'limiter writes/req':>19} {'cmds/write':>11}")
    throughput: dict[str, dict[str, float]] = {}
    for consumer in consumers:
        consumer.send_signal(signal.SIGSTOP)
    try:
        for name, gateway, env in sides:
            trips = cluster.LimiterTrips(
                f"http://127.0.0.1:{env['GATEWAY_STATUS_PORT']}/metrics")
            result = throughput[name] = wrk(gateway + "/bench/item", script=script)
            per_request, per_write = trips.result()
            ratio = result["rps"] / throughput["single node"]["rps"]
            label = f"upstream route, {name}"
            say(f"  {label:32} {result['rps']:10.0f} {result['p50']:8.2f} {result['p99']:8.2f} "
                f"{ratio:8.2f} {result['errors']:8d} {per_request:19.3f} {per_write:11.1f}")
            checks.append((f"cluster: limiter writes per request on the {name} < 1 "
                           f"(pipelined): {per_request:.3f}", per_request < 1))
            checks.append((f"cluster: upstream route on the {name}, non-2xx 0: "
                           f"{result['errors']}", result["errors"] == 0))
        caller = {"userId": session["user"]["id"], "email": session["email"],
                  "role": "DEVELOPER"}
        rounds = min(3, RPC_ROUNDS)
        say(f"  RPC route (GET /api/v1/auth/profile) at 1 connection, {rounds} rounds of "
            f"{RPC_PAIRS} pairs (bench/rpc_pairs.py): route p50, direct RPC p50, overhead (ms)")
        routed: dict[str, list[float]] = {name: [] for name, _, _ in sides}
        overheads: dict[str, list[float]] = {name: [] for name, _, _ in sides}
        for n in range(1, rounds + 1):
            for name, gateway, env in sides:
                pairs = rpc_pairs(env, gateway, token, caller)
                routed[name].append(pairs["route_p50"])
                overheads[name].append(pairs["overhead_p50"])
                say(f"    round {n} {name:12} {pairs['route_p50']:6.2f} "
                    f"{pairs['direct_p50']:6.2f} {pairs['overhead_p50']:+6.2f}")
    finally:
        for consumer in consumers:
            consumer.send_signal(signal.SIGCONT)
    single, clustered = (statistics.median(routed[name]) for name, _, _ in sides)
    overhead = {name: statistics.median(overheads[name]) for name, _, _ in sides}
    rps = throughput["clusters"]["rps"] / throughput["single node"]["rps"]
    say(f"  clusters / single node: upstream route throughput {rps:.2f} x, RPC route p50 "
        f"{clustered / single:.2f} x ({clustered:.2f} vs {single:.2f} ms), RPC overhead "
        f"{overhead['clusters']:+.2f} vs {overhead['single node']:+.2f} ms")
    checks.append((f"cluster: upstream route {rps:.2f} x single node, RPC route p50 "
                   f"{clustered / single:.2f} x (no target)", True))
    say(f"  (the paused consumers' backlog drained in {queues_drained():.0f} s on the single "
        f"node; {cluster.drained(VHOST):.0f} s on the cluster)")


def log_query_rows(stack: Stack, tenancy: logs.Tenancy, checks: Checks) -> None:
    from contracts.settings import DEV_SECRETS

    secret = DEV_SECRETS["ACCESS_TOKEN_SECRET"]
    callers = logs.callers(secret, tenancy)
    say(f"\nGET /api/v1/logs, PostgreSQL store: seeding {LOG_ENTRIES:,} entries into "
        f"{LOG_QUERY_URL.rsplit('/', 1)[1]} (the logging service stopped meanwhile)")
    stack.stop_service("logging_svc")
    seeded = asyncio.run(logs.seed_postgres(LOG_QUERY_URL, tenancy, LOG_ENTRIES, LOG_SAMPLES))
    logs.describe(seeded, tenancy, "PostgreSQL")
    stack.restart("logging_svc", LOGS_DATABASE_URL=LOG_QUERY_URL)
    logs.print_header(
        f"\nGET /api/v1/logs over {LOG_ENTRIES:,} entries (LOG_STORE=postgresql), through the"
        f" gateway, limit 20, {LOG_SAMPLES} samples per row after one warm-up; matches = the"
        " answer's total (+: capped); cursor row: the 51st request alone is timed")
    rows = logs.run_queries(stack.gateway, callers, seeded.census, LOG_SAMPLES, 60,
                            warm_up=True, with_target=True)
    measured = [row for row in rows if row.p95 is not None or row.cut]
    missed = [row for row in measured if not row.met]
    worst = max((row.p95 or float("inf") for row in measured), default=0.0)
    checks.append((f"GET /logs p95 <= 100 ms, PostgreSQL, {LOG_ENTRIES:,} entries: "
                   f"{len(measured) - len(missed)}/{len(measured)} rows, worst {worst:.0f} ms"
                   + (" (" + "; ".join(f"{r.query} / {r.caller} {r.p95 or 0:.0f} ms"
                                       for r in missed) + ")" if missed else ""),
                   not missed))
    LOG_ROWS["postgresql"] = rows

    say(f"\npartition drop: retention of the oldest whole day of {LOG_QUERY_URL.rsplit('/', 1)[1]}"
        " (PostgresLogStore: partitions.drop_before, then upkeep deletes the day's ids in "
        "chunks) while an admin and the busy developer keep asking for first pages")
    drop = logs.partition_drop(stack.gateway, LOG_QUERY_URL, callers[:2])
    logs.print_drop(drop)
    checks.append((f"partition drop of {drop.entries:,} entries: DROP TABLE {drop.drop_ms:.0f} ms"
                   f", ids deleted in {drop.ids_ms / 1000:.1f} s (no target)", True))


LOG_ROWS: dict[str, list[logs.Row]] = {}


def mongo_log_rows(stack: Stack, tenancy: logs.Tenancy) -> None:
    from contracts.settings import DEV_SECRETS

    callers = logs.callers(DEV_SECRETS["ACCESS_TOKEN_SECRET"], tenancy)
    say(f"\nGET /api/v1/logs, MongoDB store (LOG_STORE=mongodb, the local FerretDB): seeding "
        f"{MONGO_LOG_ENTRIES:,} entries into {MONGO_LOG_DB}")
    stack.stop_service("logging_svc")
    seeded = asyncio.run(logs.seed_mongo(stack.mongo_url, MONGO_LOG_DB, tenancy,
                                         MONGO_LOG_ENTRIES, MONGO_LOG_SAMPLES))
    logs.describe(seeded, tenancy, "MongoDB")
    stack.restart("logging_svc", LOG_STORE="mongodb", MONGO_DB=MONGO_LOG_DB)
    handled_before = logs.rpc_handled(stack.logging_metrics)
    sent_before = logs.SENT[0]

    def after_cut() -> float:
        return logs.wait_idle(stack.logging_metrics, handled_before + logs.SENT[0] - sent_before)

    limit = MONGO_LOG_LIMIT_S
    logs.print_header(
        f"\nGET /api/v1/logs over {MONGO_LOG_ENTRIES:,} entries (LOG_STORE=mongodb, FerretDB),"
        f" {MONGO_LOG_SAMPLES} samples per row, no warm-up, each request cut off at "
        f"{limit:.0f} s (gateway RPC deadline raised to 120 s)")
    LOG_ROWS["mongodb"] = logs.run_queries(stack.gateway, callers, seeded.census,
                                           MONGO_LOG_SAMPLES, limit, warm_up=False,
                                           with_target=False, after_cut=after_cut,
                                           budget_s=MONGO_LOG_BUDGET_S)
    stack.restart("logging_svc")  # the stack's own again (PostgreSQL)


def print_log_comparison() -> None:
    pg, mongo = LOG_ROWS.get("postgresql"), LOG_ROWS.get("mongodb")
    if not pg or not mongo:
        return
    limit = MONGO_LOG_LIMIT_S
    say(f"\nGET /api/v1/logs side by side: PostgreSQL over {LOG_ENTRIES:,} entries vs MongoDB "
        f"(FerretDB) over {MONGO_LOG_ENTRIES:,} (ms)")
    say(f"  {'query':27} {'caller':16} {'pg p50':>9} {'pg p95':>9} {'mongo p50':>10} "
        f"{'mongo p95':>10}")
    for a, b in zip(pg, mongo, strict=True):
        say(f"  {a.query:27} {a.caller:16} {a.figure(a.p50, 60):>9} {a.figure(a.p95, 60):>9} "
            f"{b.figure(b.p50, limit):>10} {b.figure(b.p95, limit):>10}")


def analytics_rows(stack: Stack, checks: Checks) -> None:
    from contracts.settings import DEV_SECRETS

    stack.stop_service("analytics_svc")
    end, rollup_s, raw_s = analytics.run_seed(
        ANALYTICS_QUERY_URL, stack.mongo_url, ANALYTICS_RAW_DB, ANALYTICS_REQUESTS,
        datetime.now(UTC))
    seeding = f" (seeded now: rollups {rollup_s:.0f} s, raw entries {raw_s:.0f} s)" \
        if rollup_s or raw_s else ""
    stack.restart("analytics_svc", ANALYTICS_DATABASE_URL=ANALYTICS_QUERY_URL)
    who = logs.tokens(DEV_SECRETS["ACCESS_TOKEN_SECRET"])
    cases = analytics.cases(end)
    say(f"\nanalytics over {ANALYTICS_REQUESTS} requests, 7 days, 20 tenants{seeding}; through"
        f" the gateway, {ANALYTICS_SAMPLES} samples")
    say(f"  {'question':32} {'p50 ms':>8} {'p95 ms':>8}   target")
    answers = []
    for case in cases:
        result = analytics.rollup_latencies(stack.gateway, case, who[case.role],
                                            ANALYTICS_SAMPLES)
        answers.append((case, result))
        say(f"  {case.label:32} {result['p50']:8.1f} {result['p95']:8.1f}   p95 <= 50 ms "
            f"{verdict(result['p95'] <= 50)}")
    worst = max(result["p95"] for _, result in answers)
    checks.append((f"analytics p95 <= 50 ms: worst {worst:.1f} ms", worst <= 50))
    if not WITH_RAW:
        return
    say("\nanalytics, raw = every matching log entry read and computed once:")
    say(f"  {'question':32} {'raw ms':>10} {'raw/p95':>8}   target")
    raw_cases = cases if ALL_RAW else [case for case in cases
                                       if (case.span, case.role) == (cases[-1].span,
                                                                     cases[-1].role)]
    raw = analytics.raw_latencies(stack.mongo_url, ANALYTICS_RAW_DB, raw_cases,
                                  analytics.VIEWERS)
    answers = [(case, result) for case, result in answers if case.label in raw]
    for case, result in answers:
        ratio = raw[case.label] / result["p95"]
        say(f"  {case.label:32} {raw[case.label]:10.0f} {ratio:8.0f}   >= 20 x "
            f"{verdict(ratio >= 20)}")
    least = min(raw[case.label] / result["p95"] for case, result in answers)
    checks.append((f"analytics >= 20 x raw: least {least:.0f} x", least >= 20))


def guarded(name: str, run, *args) -> None:
    """One part of the bench; a failure is printed and the next part runs."""
    try:
        run(*args)
    except (KeyboardInterrupt, SystemExit):
        raise
    except Exception as exc:  # reported; the other parts still run
        import traceback

        say(f"\n{name}: FAILED: {exc!r}")
        traceback.print_exc(file=sys.stdout)
        FAILED.append(name)


FAILED: list[str] = []


def main() -> int:
    live_output()
    if (WITH_THROUGHPUT or WITH_CLUSTER) and not shutil.which("wrk"):
        raise SystemExit("bench: wrk is missing (Debian package wrk; `make bench` installs it)")
    stack = Stack()
    checks: Checks = []
    started = time.monotonic()
    parts = (("throughput", WITH_THROUGHPUT), ("cluster", WITH_CLUSTER),
             ("webhooks", WITH_WEBHOOKS), ("logs", WITH_LOGS),
             ("analytics", WITH_ANALYTICS),
             ("alerts", WITH_ALERTS), ("decode", WITH_DECODE))
    say(f"bench: {', '.join(name for name, on in parts if on)}; process logs in {stack.log_dir}")
    try:
        if WITH_DECODE:  # CPU only, while nothing else runs
            guarded("decode", decode.rows, checks)
        stack.reset_state()
        stack.start()
        gateway = stack.gateway
        email = f"bench-{os.getpid()}@example.com"
        session = api("POST", gateway + "/api/v1/auth/register",
                      {"email": email, "password": "Passw0rdX", "name": "Bench"})
        token, session["email"] = session["accessToken"], email
        if WITH_THROUGHPUT or WITH_CLUSTER:
            project = session["project"] = api("POST", gateway + "/api/v1/projects",
                                               {"name": "bench"}, token)
            session["keys_script"] = cluster.rotation_script([
                api("POST", f"{gateway}/api/v1/projects/{project['id']}/keys",
                    {"name": f"bench-{n:02d}"}, token)["key"] for n in range(cluster.KEYS)])
            for path, ttl in (("/bench/item", None), ("/bench/cached", 3600)):
                api("POST", f"{gateway}/api/v1/projects/{project['id']}/routes", {
                    "path": path, "method": "GET", "upstreamUrl": stack.upstream,
                    "authRequired": True, "cacheTTL": ttl}, token)
            time.sleep(1.5)  # route configs reach the gateway by event
        tenancy = None
        if WITH_LOGS:
            from contracts.settings import DEV_SECRETS

            tenancy = logs.create_projects(gateway, DEV_SECRETS["ACCESS_TOKEN_SECRET"])
            guarded("log ingest", ingest_rows, stack, checks)
        if WITH_THROUGHPUT:
            guarded("throughput", throughput_rows, stack, token, session, checks)
        if WITH_CLUSTER:
            guarded("cluster", cluster_rows, stack, session, checks)
        if WITH_WEBHOOKS:
            guarded("webhooks", webhooks.rows, stack, session, checks, api)
        if WITH_LOGS:
            guarded("log queries", log_query_rows, stack, tenancy, checks)
            if WITH_MONGO_LOGS:
                guarded("log queries (MongoDB)", mongo_log_rows, stack, tenancy)
                print_log_comparison()
        if WITH_ANALYTICS:
            guarded("analytics", analytics_rows, stack, checks)

        if WITH_ALERTS:
            guarded("alert events", alerts.rows, stack, checks)
    finally:
        stack.processes.stop()
        elapsed = time.monotonic() - started
        if not ONLY and not FAILED:  # the whole bench, as `make bench` runs it
            checks.append((f"the whole bench within 15 min: {elapsed / 60:.1f} min",
                           elapsed <= 15 * 60))
        say(f"\ntargets ({elapsed:.0f} s in all"
            f"{'; failed parts: ' + ', '.join(FAILED) if FAILED else ''}):")
        for text, ok in checks:
            say(f"  {verdict(ok):6}  {text}")
        say(f"\nprocess logs: {stack.log_dir}")
    return 1 if FAILED else 0


if __name__ == "__main__":
    sys.exit(main())
