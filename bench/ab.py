"""`make bench-ab`: is a change to the request path cheaper? (issue 28)

The CPU per proxied request of two gateways on one stack, measured in turns: the baseline is
the code of git ref BENCH_AB_BASE (default HEAD, checked out into a temporary worktree), the
candidate is the working tree. Both run side by side, pinned to core 0 like row (c), on the
bench's stack (upstream, services, Redis, RabbitMQ), with the same environment; wrk loads one,
then the other, BENCH_AB_ROUNDS times (default 8) for BENCH_AB_SECONDS (default 6) each.
BENCH_AB_ROUTE=cached measures a cache-hit route (row (d)) instead of the upstream route
(row (c)); BENCH_AB_CONNECTIONS (default 50) sets wrk's connections (1: latency alone).
Each round prints both sides' CPU per request and p50.

On these shared machines a single run's CPU per request moves by 20 % and more from one
minute to the next; pairs measured back to back move together, so the median of the pairs'
ratios says what the change did where single figures cannot.
"""

from __future__ import annotations

import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import run  # noqa: E402 - after the path

BASE = os.environ.get("BENCH_AB_BASE", "HEAD")
ROUNDS = int(os.environ.get("BENCH_AB_ROUNDS", "8"))
SECONDS = int(os.environ.get("BENCH_AB_SECONDS", "6"))
CACHED = os.environ.get("BENCH_AB_ROUTE", "upstream") == "cached"
CONNECTIONS = int(os.environ.get("BENCH_AB_CONNECTIONS", str(run.CONNECTIONS)))
PATH = "/bench/cached" if CACHED else "/bench/item"


def gateway(stack: run.Stack, name: str, code: Path) -> tuple[str, subprocess.Popen]:
    port = run.free_port()
    env = {**stack.env, "GATEWAY_PORT": str(port), "GATEWAY_STATUS_PORT": str(run.free_port())}
    # `-m` imports from the working directory first: each side runs its own code
    process = stack.processes.start(name, [*run.pinned(0), sys.executable, "-m", "gateway"], env,
                                    cwd=code)
    return f"http://127.0.0.1:{port}", process


def main() -> int:
    run.live_output()
    worktree = Path(tempfile.mkdtemp(prefix="bench-ab-")) / "base"
    subprocess.run(["git", "worktree", "add", "--detach", "-q", str(worktree), BASE], cwd=ROOT,
                   check=True)
    stack = run.Stack()
    try:
        stack.reset_state()
        stack.start()
        email = f"bench-ab-{os.getpid()}@example.com"
        token = run.api("POST", stack.gateway + "/api/v1/auth/register", {
            "email": email, "password": "Passw0rdX", "name": "Bench"})["accessToken"]
        project = run.api("POST", stack.gateway + "/api/v1/projects", {"name": "ab"}, token)
        run.api("POST", f"{stack.gateway}/api/v1/projects/{project['id']}/routes", {
            "path": PATH, "method": "GET", "upstreamUrl": stack.upstream,
            "authRequired": True, **({"cacheTTL": 3600} if CACHED else {})}, token)
        sides = {"base": gateway(stack, "gateway-base", worktree),
                 "candidate": gateway(stack, "gateway-candidate", ROOT)}
        for url, _ in sides.values():
            run.wait_for(url + "/health", within_s=90)
        time.sleep(1.5)  # the route config reaches both by event
        for consumer in ("logging_svc", "analytics_svc"):  # as in (c): the request path alone
            stack.started[consumer].send_signal(signal.SIGSTOP)
        run.say(f"CPU per request of GET {PATH}, {BASE} vs the working tree, {ROUNDS} rounds "
                f"of {SECONDS} s each at {CONNECTIONS} connections, in turns")
        ratios, latency = [], []
        for n in range(1, ROUNDS + 1):
            result = {name: run.wrk(url + PATH, token, connections=CONNECTIONS,
                                    duration_s=SECONDS, server=[process.pid])
                      for name, (url, process) in sides.items()}
            base, candidate = result["base"], result["candidate"]
            ratios.append(candidate["cpu_us"] / base["cpu_us"])
            latency.append(candidate["p50"] / base["p50"])
            run.say(f"  round {n}: base {base['cpu_us']:.0f} us, p50 {base['p50']:.2f} ms; "
                    f"candidate {candidate['cpu_us']:.0f} us, p50 {candidate['p50']:.2f} ms; "
                    f"cpu ratio {ratios[-1]:.3f}")
        run.say(f"median ratio (candidate / base): cpu {statistics.median(ratios):.3f}"
                f" (lowest {min(ratios):.3f}, highest {max(ratios):.3f}), p50 "
                f"{statistics.median(latency):.3f}")
    finally:
        for consumer in ("logging_svc", "analytics_svc"):
            if consumer in stack.started:
                stack.started[consumer].send_signal(signal.SIGCONT)
        stack.processes.stop()
        subprocess.run(["git", "worktree", "remove", "--force", str(worktree)], cwd=ROOT)
    return 0


if __name__ == "__main__":
    sys.exit(main())
