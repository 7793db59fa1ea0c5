"""The one policy of periodic tasks: the wait, the jitter, a failure that never ends the loop,
the first and the last run."""

from __future__ import annotations

import asyncio

import pytest

from contracts.periodic import PERIODIC_FAILURES, Periodic, PeriodicRunner


async def nothing() -> None:
    return None


def test_the_wait_is_the_interval_plus_at_most_the_jitter():
    periodic = Periodic("t", nothing, 10.0, jitter=0.2)
    waits = [periodic.delay() for _ in range(500)]
    assert all(10.0 <= wait <= 12.0 for wait in waits)
    assert max(waits) - min(waits) > 0.5  # replicas do not run in step


def test_an_aligned_wait_ends_on_a_multiple_of_the_interval():
    periodic = Periodic("t", nothing, 30.0, jitter=0.0, aligned=True)
    assert periodic.delay(now=1000.0) == pytest.approx(20.0)  # 1000 + 20 = 1020 = 34 * 30
    assert periodic.delay(now=1020.0) == pytest.approx(30.0)


@pytest.mark.parametrize("interval, jitter", [(0, 0.1), (-1, 0.1), (1, 1.0), (1, -0.1)])
def test_a_senseless_policy_is_refused(interval: float, jitter: float):
    with pytest.raises(ValueError, match="t:"):
        Periodic("t", nothing, interval, jitter=jitter)


async def until(check, within_s: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + within_s
    while not check():
        assert asyncio.get_running_loop().time() < deadline, "never happened"
        await asyncio.sleep(0.01)


async def test_a_failing_run_is_counted_and_the_loop_goes_on():
    runs: list[int] = []

    async def fails_twice() -> None:
        runs.append(len(runs))
        if len(runs) <= 2:
            raise RuntimeError("boom")

    failed_before = PERIODIC_FAILURES.labels("flaky")._value.get()
    runner = PeriodicRunner(Periodic("flaky", fails_twice, 0.01, jitter=0.0))
    runner.start()
    await until(lambda: len(runs) >= 4)
    await runner.stop()
    assert PERIODIC_FAILURES.labels("flaky")._value.get() - failed_before == 2


async def test_first_run_at_start_and_last_run_at_stop():
    runs: list[str] = []

    async def record() -> None:
        runs.append("run")

    runner = PeriodicRunner(Periodic("edges", record, 3600.0, immediately=True, at_stop=True))
    runner.start()
    await until(lambda: runs == ["run"])  # at once, not after an hour
    await runner.stop()
    assert runs == ["run", "run"]  # and once more when the process stops


async def test_without_at_stop_nothing_runs_at_stop():
    runs: list[str] = []

    async def record() -> None:
        runs.append("run")

    runner = PeriodicRunner(Periodic("quiet", record, 3600.0))
    runner.start()
    await asyncio.sleep(0.05)
    await runner.stop()
    assert runs == []
