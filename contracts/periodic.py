"""Periodic tasks: one policy for every job a process runs on a clock (the alert engine's tick,
pruning, log retention, key usage flushes).

The policy: wait the interval (on its multiples when `aligned`, the same instants in every
replica), plus a random jitter of up to `jitter` of it so replicas of a service do not hit a
database in step; run; an exception is logged and counted (`periodic_task_failures_total`)
and the next interval tries again: the loop never dies. `at_stop` runs the task once more
when the process stops (a flush of what is still buffered).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from prometheus_client import Counter

from contracts.logging import get_logger
from contracts.tasks import stop_task

log = get_logger(__name__)

PERIODIC_FAILURES = Counter("periodic_task_failures_total",
                            "Runs of a periodic task that raised", ["task"])
PERIODIC_RUNS = Counter("periodic_task_runs_total", "Runs of a periodic task", ["task"])


@dataclass(frozen=True)
class Periodic:
    name: str
    run: Callable[[], Awaitable[object]]
    interval_s: float
    jitter: float = 0.1  # the most added to a wait, as a share of the interval
    aligned: bool = False  # wait for the next multiple of the interval (wall clock)
    immediately: bool = False  # run once at start, before the first wait
    at_stop: bool = False  # run once more when the process stops

    def __post_init__(self) -> None:
        if self.interval_s <= 0 or not 0 <= self.jitter < 1:
            raise ValueError(f"{self.name}: an interval > 0 and a jitter in [0, 1)")

    def delay(self, now: float | None = None) -> float:
        """Seconds until the next run."""
        base = self.interval_s
        if self.aligned:
            base -= (time.time() if now is None else now) % self.interval_s
        return base + random.uniform(0, self.jitter * self.interval_s)

    async def run_once(self) -> bool:
        """One run under the policy; False when it raised (logged and counted)."""
        PERIODIC_RUNS.labels(self.name).inc()
        try:
            await self.run()
        except Exception:
            PERIODIC_FAILURES.labels(self.name).inc()
            log.exception("periodic task failed; the next interval tries again",
                          task=self.name)
            return False
        return True


class PeriodicRunner:
    """Runs one `Periodic` in a task of its own from `start()` until `stop()`."""

    def __init__(self, periodic: Periodic) -> None:
        self.periodic = periodic
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name=self.periodic.name)

    async def stop(self) -> None:
        await stop_task(self._task)
        self._task = None
        if self.periodic.at_stop:
            await self.periodic.run_once()

    async def _loop(self) -> None:
        if self.periodic.immediately:
            await self.periodic.run_once()
        while True:
            await asyncio.sleep(self.periodic.delay())
            await self.periodic.run_once()
