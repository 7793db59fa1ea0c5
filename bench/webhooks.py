"""The webhook rows of `make bench` (issue 25): domain events of one project published onto
`gw.events` (as the project service's outbox relay publishes them), one webhook subscribed,
a receiver on loopback answering 204, one project service process.

- burst: BENCH_WEBHOOK_EVENTS (default 2,000) events at once: deliveries per second from the
  first event published to the last delivery received, and events lost (published -
  received, distinct);
- steady: BENCH_WEBHOOK_RATE (default 50) events a second for 10 s, below capacity: p50 and
  p95 from an event's timestamp to its first attempt's arrival (in a burst that figure is
  the queue's length, not the pipeline's latency).

`rows(stack, session, checks, api)` runs them inside bench/run.py.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import threading
import time
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

from aiohttp import web

from bench.logs import say

EVENTS = int(os.environ.get("BENCH_WEBHOOK_EVENTS", "2000"))
STEADY_RATE = int(os.environ.get("BENCH_WEBHOOK_RATE", "50"))
STEADY_S = 10
WITHIN_S = float(os.environ.get("BENCH_WEBHOOK_WITHIN_S", "120"))
TARGET_P95_MS = 1000  # event to first attempt


class Arrivals:
    """What the receiver saw: the first arrival time of each event id, and repeats."""

    def __init__(self) -> None:
        self.first: dict[str, tuple[float, str]] = {}  # event id -> (arrival, event timestamp)
        self.repeats = 0
        self.lock = threading.Lock()

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        now = time.time()
        payload = json.loads(body)
        event_id = payload["data"]["benchEventId"]
        with self.lock:
            if event_id in self.first:
                self.repeats += 1
            else:
                self.first[event_id] = (now, payload["timestamp"])
        return web.Response(status=204)


def serve(arrivals: Arrivals) -> tuple[int, asyncio.AbstractEventLoop]:
    """The receiver in a thread of its own; its port and loop."""
    loop = asyncio.new_event_loop()
    ready: list[int] = []

    async def start() -> None:
        app = web.Application()
        app.router.add_post("/hook", arrivals.handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        ready.append(site._server.sockets[0].getsockname()[1])  # type: ignore[union-attr]

    threading.Thread(target=loop.run_forever, daemon=True).start()
    asyncio.run_coroutine_threadsafe(start(), loop).result(10)
    return ready[0], loop


async def publish(amqp_url: str, project_id: str, prefix: str, count: int,
                  rate: float | None = None) -> float:
    """`count` project.updated events of `project_id` (at `rate` a second, or at once),
    published with confirms; when the first went out (time.time())."""
    from contracts.amqp import connect
    from contracts.events import EventPublisher
    from contracts.messages import DomainEvent
    from contracts.timeutil import iso_now

    connection = await connect(amqp_url, name="bench-webhooks")
    publisher = EventPublisher(connection)
    await publisher.start()
    started = time.time()
    for n in range(count):
        publisher.publish(DomainEvent(
            event_id=f"bench-{uuid.uuid4()}", type="project.updated", timestamp=iso_now(),
            project_id=project_id, owner_id=None,
            data={"id": project_id, "benchEventId": f"{prefix}-{n}"}))
        if rate:
            await asyncio.sleep(started + (n + 1) / rate - time.time())
    await publisher.close(timeout=60)
    await connection.close()
    return started


def rows(stack: Any, session: dict[str, Any], checks: list[tuple[str, bool]],
         api: Callable[..., Any]) -> None:
    arrivals = Arrivals()
    port, _loop = serve(arrivals)
    token = session["accessToken"]
    project = api("POST", f"{stack.gateway}/api/v1/projects", {"name": "bench-hooks"}, token)
    api("POST", f"{stack.gateway}/api/v1/projects/{project['id']}/webhooks", {
        "name": "bench", "url": f"http://127.0.0.1:{port}/hook",
        "events": ["project.updated"]}, token)
    say("\nwebhooks: one webhook, a receiver on loopback answering 204, one project service "
        "process")
    amqp_url, project_id = stack.env["AMQP_URL"], project["id"]

    def arrived(prefix: str, count: int) -> dict[str, tuple[float, str]]:
        until = time.monotonic() + WITHIN_S
        while time.monotonic() < until:
            with arrivals.lock:
                mine = {k: v for k, v in arrivals.first.items() if k.startswith(prefix)}
            if len(mine) >= count:
                break
            time.sleep(0.2)
        return mine

    started = asyncio.run(publish(amqp_url, project_id, "burst", EVENTS))
    burst = arrived("burst-", EVENTS)
    lost = EVENTS - len(burst)
    last = max((arrival for arrival, _ in burst.values()), default=started)
    rate = len(burst) / (last - started) if last > started else 0.0
    say(f"  burst: {EVENTS} events at once: {len(burst)} delivered ({lost} lost, "
        f"{arrivals.repeats} repeated) at {rate:,.0f}/s   target 0 lost: "
        f"{'met' if lost == 0 else 'MISSED'}")

    steady_count = STEADY_RATE * STEADY_S
    asyncio.run(publish(amqp_url, project_id, "steady", steady_count, rate=STEADY_RATE))
    steady = arrived("steady-", steady_count)
    latencies = sorted((arrival - datetime.fromisoformat(stamp.replace("Z", "+00:00"))
                        .timestamp()) * 1000 for arrival, stamp in steady.values())
    p50 = statistics.median(latencies) if latencies else float("nan")
    p95 = latencies[int(0.95 * (len(latencies) - 1))] if latencies else float("nan")
    steady_lost = steady_count - len(steady)
    say(f"  steady: {STEADY_RATE} events/s for {STEADY_S} s: {len(steady)} delivered "
        f"({steady_lost} lost); event to first attempt p50 {p50:.0f} ms, p95 {p95:.0f} ms   "
        f"target p95 <= {TARGET_P95_MS} ms: {'met' if p95 <= TARGET_P95_MS else 'MISSED'}")
    checks.append((f"webhooks: {rate:,.0f} deliveries/s in a burst of {EVENTS} (no target)",
                   True))
    checks.append((f"webhooks lost 0: {lost + steady_lost}", lost + steady_lost == 0))
    checks.append((f"webhooks event to first attempt p95 <= {TARGET_P95_MS} ms at "
                   f"{STEADY_RATE}/s: {p95:.0f} ms", p95 <= TARGET_P95_MS))
