"""`make bench`: throughput and latency of the gateway against baselines measured in the same
run, printed as one table.

  (a) the upstream directly          (b) a bare aiohttp reverse proxy (bench/ref_proxy.py)
  (c) gateway, upstream route: JWT + rate limit + forward
  (d) gateway, cache-hit route       (e) gateway, RPC route (GET /api/v1/auth/profile)
  (b2) (b) as two processes on one port (SO_REUSEPORT)
  (c2) (c) on a gateway of its own with GATEWAY_WORKERS=2 (two processes on one port);
  (e)'s overhead: the gateway RPC route's p50 at 1 connection minus the p50 of a direct RPC
  call to the same operation, measured in BENCH_RPC_ROUNDS (default 5) rounds, each pairing
  one of each; the median of the rounds' differences is held against the target;
  then the logging rows (bench/logs.py): events/s from the gateway's publisher to stored log
  entries, and GET /api/v1/logs p95 over BENCH_LOG_ENTRIES (default 100,000) stored entries.
  The issue's figure is at 1,000,000: on the local FerretDB every log query reads the whole
  collection, so at that size each request takes about a minute (and FerretDB ~3.6 GB of
  memory); set BENCH_LOG_ENTRIES=1000000 BENCH_LOG_SAMPLES=1 to see it. BENCH_LOGS=0 skips
  the logging rows;
  then the analytics rows (bench/analytics.py): events/s folded into rollups in the same
  ingest run (the logging consumer running too), and summary / latency / top-endpoints over
  BENCH_ANALYTICS_REQUESTS (default 1,000,000) requests of 7 days and 20 tenants, 7-day and
  1-hour ranges, admin and tenant, through the gateway, beside the same answers computed
  from the raw log entries. BENCH_ANALYTICS=0 skips the query rows, BENCH_ANALYTICS_RAW=0
  their raw side (a few minutes on the local server).

Load comes from wrk on core 1, the servers are pinned to core 0 where possible (2 cores);
the two-process servers of (b2) and (c2) to cores 0 and 1 (so they share core 1 with wrk,
alike for both). Everything runs on loopback, bounded in time. Targets: (c) >= 0.6 x (b);
(c2) >= 0.6 x (b2); (d) >= 1.5 x (c); (e) median of the rounds' p50 - direct RPC p50
<= 1.5 ms; ingest >= 5,000 events/s with 0 lost (logs and rollups); GET /logs p95
<= 100 ms; analytics p95 <= 50 ms and >= 20 x faster than raw.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
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

from bench import analytics, logs  # noqa: E402 - after the path
from tests.support import rabbit_api, recreate_database, recreate_vhost  # noqa: E402

LOG_ENTRIES = int(os.environ.get("BENCH_LOG_ENTRIES", "100000"))
LOG_SAMPLES = int(os.environ.get("BENCH_LOG_SAMPLES", "3"))
WITH_LOGS = os.environ.get("BENCH_LOGS", "1") != "0"
LOG_QUERY_DB = "gateway_bench_logs"  # seeded once, kept for later runs
ANALYTICS_REQUESTS = int(os.environ.get("BENCH_ANALYTICS_REQUESTS", "1000000"))
ANALYTICS_SAMPLES = int(os.environ.get("BENCH_ANALYTICS_SAMPLES", "20"))
WITH_ANALYTICS = os.environ.get("BENCH_ANALYTICS", "1") != "0"
WITH_RAW = os.environ.get("BENCH_ANALYTICS_RAW", "1") != "0"
# seeded once, kept for later runs (re-seeded when a day old)
ANALYTICS_QUERY_URL = "postgresql://gateway:gateway@127.0.0.1:5432/gateway_analytics_bench_query"
ANALYTICS_RAW_DB = "gateway_bench_analytics_raw"

DURATION_S = int(os.environ.get("BENCH_SECONDS", "10"))
CONNECTIONS = int(os.environ.get("BENCH_CONNECTIONS", "50"))
RPC_ROUNDS = max(1, int(os.environ.get("BENCH_RPC_ROUNDS", "5")))
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

    def start(self, name: str, command: list[str], env: dict[str, str]) -> subprocess.Popen:
        log = open(self.log_dir / f"{name}.log", "ab")
        process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT,
                                   cwd=ROOT)
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
              ("ref proxy", "bench/ref_proxy.py"), ("logging_svc", "-m logging_svc"),
              ("analytics_svc", "-m analytics_svc"), ("auth/project svc", "_svc"),
              ("redis", "redis-server"), ("rabbitmq", "beam.smp"), ("ferretdb", "ferretdb"),
              ("postgres", "postgres"), ("wrk", "wrk"))
WITH_CPU = os.environ.get("BENCH_CPU") == "1"


def cpu_seconds() -> dict[str, float]:
    """CPU seconds used so far by every process, summed by group."""
    tick = os.sysconf("SC_CLK_TCK")
    used: dict[str, float] = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        group = next((name for name, pattern in CPU_GROUPS if pattern in cmdline), "other")
        used[group] = used.get(group, 0.0) + (int(fields[11]) + int(fields[12])) / tick
    return used


def with_cpu(label: str, measure) -> dict[str, float]:
    """Runs `measure()` (a wrk row); with BENCH_CPU=1 prints the cores each group kept busy."""
    if not WITH_CPU:
        return measure()
    before, started = cpu_seconds(), time.monotonic()
    result = measure()
    after, elapsed = cpu_seconds(), time.monotonic() - started
    busy = sorted(((after.get(g, 0) - before.get(g, 0)) / elapsed, g) for g in after)
    print(f"cpu during {label}: " + ", ".join(
        f"{g} {cores:.2f}" for cores, g in reversed(busy) if cores >= 0.01))
    return result


def wrk(url: str, token: str | None = None, connections: int = CONNECTIONS,
        duration_s: int = DURATION_S) -> dict[str, float]:
    command = [*pinned(1), "wrk", "-t1", f"-c{connections}", "--latency"]
    if token:
        command += ["-H", f"Authorization: Bearer {token}"]
    # warm-up with the same credentials (it used to drop the header: 2 s of 401s)
    subprocess.run([*command, "-d2s", url], capture_output=True, timeout=60)
    output = subprocess.run([*command, f"-d{duration_s}s", url], capture_output=True, text=True,
                            timeout=duration_s + 60).stdout
    result = {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))}
    for label, key in (("50%", "p50"), ("99%", "p99")):
        value, unit = re.search(rf"{re.escape(label)}\s+([\d.]+)(us|ms|s)", output).groups()
        result[key] = float(value) * UNITS[unit]
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    result["errors"] = int(non2xx.group(1)) if non2xx else 0
    return result


async def direct_rpc_p50(env: dict[str, str], caller: dict, calls: int = 2000) -> float:
    from contracts.amqp import connect
    from contracts.rpc import RpcClient

    connection = await connect(env["AMQP_URL"], name="bench-direct-rpc")
    client = RpcClient(connection, default_timeout_ms=5000)
    await client.start()
    from contracts.identity import Caller
    from contracts.messages import RpcRequest

    params = RpcRequest(caller=Caller.from_wire(caller), request_id="bench")
    timings = []
    for _ in range(calls):
        started = time.perf_counter()
        await client.call("rpc.auth", "auth.profile", params)
        timings.append((time.perf_counter() - started) * 1000)
    await client.close()
    await connection.close()
    return statistics.median(timings[calls // 10:])


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
    print(f"\nprofile of {url}, top self time:")
    for frame, count in sorted(self_time.items(), key=lambda kv: -kv[1])[:15]:
        print(f"  {100 * count / total:5.1f}%  {frame}")
    print("top inclusive (project code):")
    for frame, count in sorted(inclusive.items(), key=lambda kv: -kv[1])[:15]:
        print(f"  {100 * count / total:5.1f}%  {frame}")


def main() -> int:
    if not shutil.which("wrk"):
        raise SystemExit("bench: wrk is missing (Debian package wrk; `make bench` installs it)")
    python = sys.executable
    ports = {name: free_port()
             for name in ("upstream", "ref", "ref2", "gateway", "gateway2", *SERVICES)}
    env = {
        **os.environ, "APP_ENV": "test", "LOG_LEVEL": "WARNING",
        "AMQP_URL": f"amqp://guest:guest@127.0.0.1:5672/{VHOST}",
        "REDIS_URL": "redis://127.0.0.1:6379/12", "MONGO_DB": "gateway_bench",
        "CACHE_REDIS_URL": "redis://127.0.0.1:6380/12",
        "AUTH_DATABASE_URL": "postgresql://gateway:gateway@127.0.0.1:5432/gateway_auth_bench",
        "PROJECT_DATABASE_URL":
            "postgresql://gateway:gateway@127.0.0.1:5432/gateway_project_bench",
        "ANALYTICS_DATABASE_URL":
            "postgresql://gateway:gateway@127.0.0.1:5432/gateway_analytics_bench",
        "GATEWAY_PORT": str(ports["gateway"]), "UPSTREAM_ALLOW_PRIVATE": "127.0.0.0/8",
        "GATEWAY_STATUS_PORT": str(free_port()),
        "RATE_LIMIT_USER": "1000000000", "RATE_LIMIT_IP": "1000000000",
        "RATE_LIMIT_API_KEY": "1000000000",
        "AUTH_HTTP_PORT": str(ports["auth_svc"]), "PROJECT_HTTP_PORT": str(ports["project_svc"]),
        "ANALYTICS_HTTP_PORT": str(ports["analytics_svc"]),
        "LOGGING_HTTP_PORT": str(ports["logging_svc"]),
        # GET /logs over a million entries on the local server takes far longer than 5 s
        "RPC_TIMEOUT_MS": "120000",
    }
    recreate_vhost(VHOST)
    asyncio.run(recreate_database(env["AUTH_DATABASE_URL"]))
    asyncio.run(recreate_database(env["PROJECT_DATABASE_URL"]))
    asyncio.run(recreate_database(env["ANALYTICS_DATABASE_URL"]))
    import redis

    for url in (env["REDIS_URL"], env["CACHE_REDIS_URL"]):
        redis.Redis.from_url(url).flushdb()
    import pymongo

    pymongo.MongoClient(env.get("MONGO_URL", "mongodb://127.0.0.1:27017")).drop_database(
        env["MONGO_DB"])

    log_dir = Path(tempfile.mkdtemp(prefix="gateway-bench-"))
    processes = Processes(log_dir)
    upstream = f"http://127.0.0.1:{ports['upstream']}"
    gateway = f"http://127.0.0.1:{ports['gateway']}"
    ref2 = f"http://127.0.0.1:{ports['ref2']}"
    gateway2 = f"http://127.0.0.1:{ports['gateway2']}"
    try:
        processes.start("upstream", [*pinned(0), python, "bench/upstream.py",
                                     str(ports["upstream"])], env)
        processes.start("ref", [*pinned(0), python, "bench/ref_proxy.py", str(ports["ref"]),
                                upstream], env)
        for n in range(2):  # (b2)
            processes.start(f"ref2-{n}", [*pinned("0,1"), python, "bench/ref_proxy.py",
                                          str(ports["ref2"]), upstream, "--reuse-port"], env)
        started = {service: processes.start(service, [python, "-m", service], env)
                   for service in SERVICES}
        gateway_process = processes.start("gateway", [*pinned(0), python, "-m", "gateway"],
                                          env)
        # (c2): a gateway of its own, two workers on its own port (and status port)
        processes.start("gateway2", [*pinned("0,1"), python, "-m", "gateway"], {
            **env, "GATEWAY_WORKERS": "2", "GATEWAY_PORT": str(ports["gateway2"]),
            "GATEWAY_STATUS_PORT": str(free_port())})
        wait_for(upstream + "/item")
        wait_for(f"http://127.0.0.1:{ports['ref']}/item")
        wait_for(ref2 + "/item", listeners=2)
        wait_for(gateway + "/health", within_s=90)
        wait_for(gateway2 + "/health", within_s=90, listeners=2)

        email = f"bench-{os.getpid()}@example.com"
        session = api("POST", gateway + "/api/v1/auth/register",
                      {"email": email, "password": "Passw0rdX", "name": "Bench"})
        token = session["accessToken"]
        project = api("POST", gateway + "/api/v1/projects", {"name": "bench"}, token)
        for path, ttl in (("/bench/item", None), ("/bench/cached", 3600)):
            api("POST", f"{gateway}/api/v1/projects/{project['id']}/routes", {
                "path": path, "method": "GET", "upstreamUrl": upstream, "authRequired": True,
                "cacheTTL": ttl}, token)
        time.sleep(1.5)  # route configs reach the gateway by event

        mongo_url = env.get("MONGO_URL", "mongodb://127.0.0.1:27017")
        logging_metrics = f"http://127.0.0.1:{ports['logging_svc']}/metrics"
        analytics_metrics = f"http://127.0.0.1:{ports['analytics_svc']}/metrics"
        ingest = None
        lost: dict[str, int] = {}
        if WITH_LOGS:
            folded_before = asyncio.run(analytics.folded_in_database(
                env["ANALYTICS_DATABASE_URL"]))
            ingest = asyncio.run(logs.ingest(env["AMQP_URL"], [
                logs.Sink("logging", lambda: logs.stored_by_service(logging_metrics)),
                logs.Sink("analytics", lambda: analytics.folded_by_service(analytics_metrics)),
            ], max(10, DURATION_S)))
            lost["logging"] = ingest.published - asyncio.run(
                logs.stored_in_database(mongo_url, env["MONGO_DB"]))
            lost["analytics"] = ingest.published - (asyncio.run(analytics.folded_in_database(
                env["ANALYTICS_DATABASE_URL"])) - folded_before)

        # The request path on its own, like (b): the asynchronous consumers (and the
        # databases they write to) are paused while wrk runs, their events wait in their
        # queues and are consumed afterwards (the ingest rows measure them). (c*) is (c)
        # with them running, on the same two cores.
        consumers = [started["logging_svc"], started["analytics_svc"]]
        with_consumers = with_cpu("(c*)", lambda: wrk(gateway + "/bench/item", token))
        for consumer in consumers:
            consumer.send_signal(signal.SIGSTOP)
        if os.environ.get("BENCH_PROFILE"):
            # BENCH_PROFILE=cached profiles (d) instead of (c)
            path = "/bench/cached" if os.environ["BENCH_PROFILE"] == "cached" else "/bench/item"
            profile_gateway(gateway_process.pid, gateway + path, token)
        rows = [
            ("(a) upstream directly", wrk(upstream + "/item")),
            ("(b) bare reference proxy", with_cpu("(b)", lambda: wrk(
                f"http://127.0.0.1:{ports['ref']}/item"))),
            ("(c) gateway, upstream route", with_cpu("(c)", lambda: wrk(
                gateway + "/bench/item", token))),
            ("(d) gateway, cache hit", with_cpu("(d)", lambda: wrk(
                gateway + "/bench/cached", token))),
            ("(e) gateway, RPC route", wrk(gateway + "/api/v1/auth/profile", token)),
            ("(b2) ref. proxy, 2 processes", wrk(ref2 + "/item")),
            ("(c2) upstream route, 2 workers", wrk(gateway2 + "/bench/item", token)),
            ("(c*) (c), consumers running", with_consumers),
        ]
        for consumer in consumers:
            consumer.send_signal(signal.SIGCONT)
        drained_s = queues_drained()
        caller = {"userId": session["user"]["id"], "email": email, "role": "DEVELOPER"}
        # (e)'s overhead, round by round: (direct RPC p50, gateway RPC route p50 at 1 conn.)
        rpc_rounds = []
        for _ in range(RPC_ROUNDS):
            rpc_p50 = asyncio.run(direct_rpc_p50(env, caller))
            rpc_route_c1 = wrk(gateway + "/api/v1/auth/profile", token, connections=1,
                               duration_s=max(3, DURATION_S // 2))
            rpc_rounds.append((rpc_p50, rpc_route_c1["p50"]))
        queries: list[tuple[str, dict[str, float]]] = []
        seeded_s = 0.0
        if WITH_LOGS:
            # The query rows read their own seeded database: a logging service for it.
            old = started["logging_svc"]
            old.send_signal(signal.SIGTERM)
            old.wait(30)
            seeded_s = logs.seed(mongo_url, LOG_QUERY_DB, LOG_ENTRIES)
            processes.start("logging_svc", [python, "-m", "logging_svc"],
                            {**env, "MONGO_DB": LOG_QUERY_DB})
            wait_for(logging_metrics)
            from contracts.settings import DEV_SECRETS

            who = logs.tokens(DEV_SECRETS["ACCESS_TOKEN_SECRET"])
            for role in ("tenant", "admin"):
                for query in ("", "&statusCode=500"):
                    url = f"{gateway}/api/v1/logs?page=1&limit=20{query}"
                    queries.append((f"GET /logs {role}{' statusCode' if query else ''}",
                                    logs.query_latencies(url, who[role], LOG_SAMPLES)))
        answers: list[tuple[analytics.Case, dict[str, float]]] = []
        raw: dict[str, float] = {}
        seeding = ""
        if WITH_ANALYTICS:
            old = started["analytics_svc"]
            old.send_signal(signal.SIGTERM)
            old.wait(30)
            end, rollup_s, raw_s = analytics.run_seed(
                ANALYTICS_QUERY_URL, mongo_url, ANALYTICS_RAW_DB, ANALYTICS_REQUESTS,
                datetime.now(UTC))
            if rollup_s or raw_s:
                seeding = f" (seeded now: rollups {rollup_s:.0f} s, raw entries {raw_s:.0f} s)"
            processes.start("analytics_svc", [python, "-m", "analytics_svc"],
                            {**env, "ANALYTICS_DATABASE_URL": ANALYTICS_QUERY_URL})
            wait_for(analytics_metrics)
            from contracts.settings import DEV_SECRETS

            who = logs.tokens(DEV_SECRETS["ACCESS_TOKEN_SECRET"])
            cases = analytics.cases(end)
            for case in cases:
                answers.append((case, analytics.rollup_latencies(
                    gateway, case, who[case.role], ANALYTICS_SAMPLES)))
            if WITH_RAW:
                raw = analytics.raw_latencies(mongo_url, ANALYTICS_RAW_DB, cases,
                                              analytics.VIEWERS)
    finally:
        processes.stop()

    result_of = {name.split()[0]: result for name, result in rows}
    reference = result_of["(b)"]["rps"]
    print(f"\nwrk -t1 -c{CONNECTIONS} -d{DURATION_S}s on core 1; servers on core 0 "
          "((b2), (c2): on cores 0-1); the event consumers paused except in (c*) (their "
          f"backlog drained in {drained_s:.0f} s afterwards)\n")
    print(f"{'target':32} {'req/s':>10} {'p50 ms':>8} {'p99 ms':>8} {'x (b)':>7} {'non-2xx':>8}")
    for name, result in rows:
        print(f"{name:32} {result['rps']:10.0f} {result['p50']:8.2f} {result['p99']:8.2f} "
              f"{result['rps'] / reference:7.2f} {result['errors']:8d}")
    c, d = result_of["(c)"]["rps"], result_of["(d)"]["rps"]
    b2, c2 = result_of["(b2)"]["rps"], result_of["(c2)"]["rps"]
    print(f"\ntwo processes: the proxy {b2 / reference:.2f} x (b), the gateway {c2 / c:.2f} x (c)")
    print(f"\n(e) overhead at 1 connection, {len(rpc_rounds)} rounds: gateway RPC route p50 - "
          "direct RPC auth.profile p50")
    overheads = []
    for n, (direct, routed) in enumerate(rpc_rounds, 1):
        overheads.append(routed - direct)
        print(f"  round {n}: {routed:.2f} - {direct:.2f} = {routed - direct:+.2f} ms")
    overhead = statistics.median(overheads)
    print(f"  median {overhead:+.2f} ms")
    checks = [
        (f"(c) >= 0.6 x (b): {c / reference:.2f}", c >= 0.6 * reference),
        (f"(c2) >= 0.6 x (b2): {c2 / b2:.2f}", c2 >= 0.6 * b2),
        (f"(d) >= 1.5 x (c): {d / c:.2f}", d >= 1.5 * c),
        (f"(e) overhead <= 1.5 ms: median of {len(overheads)} rounds {overhead:.2f} ms",
         overhead <= 1.5),
    ]
    if ingest is not None:
        print(f"\ningest: {ingest.published} events published in {ingest.publish_s:.1f} s"
              f" ({ingest.published / ingest.publish_s:.0f}/s offered), both consumers running")
        for name, sink in ingest.sinks.items():
            rate = sink.done / sink.elapsed_s if sink.elapsed_s else 0.0
            print(f"  {name:10} {sink.done} done at {rate:.0f}/s end to end; lost {lost[name]}")
            checks.append((f"{name} ingest >= 5000 events/s: {rate:.0f}/s", rate >= 5000))
            checks.append((f"{name} ingest lost 0: {lost[name]}", lost[name] == 0))
    if queries:
        print(f"\nGET /api/v1/logs first page (limit 20) over {LOG_ENTRIES} entries"
              f"{f' (seeded in {seeded_s:.0f} s)' if seeded_s else ''}, {LOG_SAMPLES} samples:")
        for name, result in queries:
            print(f"  {name:32} p50 {result['p50']:9.1f} ms  p95 {result['p95']:9.1f} ms")
        worst = max(result["p95"] for _, result in queries)
        checks.append((f"GET /logs p95 <= 100 ms: worst {worst:.0f} ms", worst <= 100))
    if answers:
        print(f"\nanalytics over {ANALYTICS_REQUESTS} requests, 7 days, 20 tenants{seeding};"
              f" through the gateway, {ANALYTICS_SAMPLES} samples; raw = every matching log"
              " entry read and computed once:")
        print(f"  {'question':32} {'p50 ms':>8} {'p95 ms':>8} {'raw ms':>10} {'raw/p95':>8}")
        for case, result in answers:
            slow = raw.get(case.label)
            ratio = f"{slow / result['p95']:8.0f}" if slow else f"{'-':>8}"
            print(f"  {case.label:32} {result['p50']:8.1f} {result['p95']:8.1f} "
                  f"{slow or 0:10.0f} {ratio}")
        worst = max(result["p95"] for _, result in answers)
        checks.append((f"analytics p95 <= 50 ms: worst {worst:.1f} ms", worst <= 50))
        if raw:
            least = min(raw[case.label] / result["p95"] for case, result in answers)
            checks.append((f"analytics >= 20 x raw: least {least:.0f} x", least >= 20))
    for text, ok in checks:
        print(f"  {'met ' if ok else 'MISSED'}  {text}")
    print(f"\nlogs: {log_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
