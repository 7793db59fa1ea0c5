"""`/livez` and `/readyz` of every process (docs/api.md section 10).

Live: the process answers; nothing else is asked, so an orchestrator restarts only a process
that is stuck, never one whose dependency is down.

Ready: the process should be sent new work. Not after SIGTERM (it drains: still serving, so a
load balancer has `SHUTDOWN_DRAIN_S` to notice before the listener closes), nor while a
dependency it cannot work without fails to answer. Each check is cheap and bounded by
CHECK_TIMEOUT_S, so `/readyz` answers fast even when a dependency hangs; concurrent probes
share one run of the checks, so a burst of probes costs one round trip per dependency.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from contracts.schemas.health import Live, Probe, Ready

# Far above a healthy round trip to Redis or the broker, and below the probe timeout of any
# load balancer (1 s and more), which must get an answer rather than time out itself.
CHECK_TIMEOUT_S = 0.5

LIVE = Live(status="ok")
STARTING = Ready(status="starting", checks=[])
DRAINING = Ready(status="draining", checks=[])

# awaits an answer from a dependency; raises when it has none
Check = Callable[[], Awaitable[object]]


class NotReady(Exception):
    """A check's failure whose message may be shown (exception messages of client libraries
    are not: they can name hosts and credentials, so only their class name is)."""


class Readiness:
    def __init__(self, timeout_s: float = CHECK_TIMEOUT_S, *, started: bool = True) -> None:
        """`started=False`: not ready until `mark_started()`, for a process whose port
        answers before all its parts run."""
        self.started = started
        self.draining = False
        self._timeout_s = timeout_s
        self._checks: dict[str, Check] = {}
        self._running: asyncio.Future[Ready] | None = None

    def require(self, name: str, check: Check) -> None:
        """Ready only while `check` answers within the timeout."""
        if name in self._checks:
            raise ValueError(f"readiness check {name!r} registered twice")
        self._checks[name] = check

    def mark_started(self) -> None:
        self.started = True

    def drain(self) -> None:
        """From now on not ready, whatever the checks say (SIGTERM)."""
        self.draining = True

    async def state(self) -> Ready:
        if self.draining:
            return DRAINING
        if not self.started:
            return STARTING
        if self._running is None or self._running.done():
            self._running = asyncio.ensure_future(self._check_all())
        # shielded: a probe that hangs up does not cancel the run other probes wait for
        ready = await asyncio.shield(self._running)
        return DRAINING if self.draining else ready

    async def _check_all(self) -> Ready:
        probes = await asyncio.gather(*(self._probe(name, check)
                                        for name, check in self._checks.items()))
        healthy = all(probe.status == "ok" for probe in probes)
        return Ready(status="ok" if healthy else "unavailable", checks=list(probes))

    async def _probe(self, name: str, check: Check) -> Probe:
        started = time.perf_counter()
        try:
            await asyncio.wait_for(check(), self._timeout_s)
        except TimeoutError:
            return Probe(name=name, status="error", error="timed out")
        except NotReady as exc:
            return Probe(name=name, status="error", error=str(exc))
        except Exception as exc:
            return Probe(name=name, status="error", error=type(exc).__name__)
        latency = round((time.perf_counter() - started) * 1000, 2)
        return Probe(name=name, status="ok", latency=latency)


def connected(closed: Callable[[], bool]) -> Check:
    """A check of a connection's state, no round trip: fails while `closed()` is true (a
    robust broker connection is closed while it reconnects)."""

    async def check() -> None:
        if closed():
            raise NotReady("connection closed")

    return check


def status_of(ready: Ready) -> int:
    return 200 if ready.status == "ok" else 503
