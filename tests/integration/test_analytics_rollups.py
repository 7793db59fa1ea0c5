"""The rollups against PostgreSQL: every answer equals the brute-force computation over the
same raw events (tests/analytics_oracle.py), whatever the range, view, project or batching."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic_core import to_jsonable_python

from analytics_svc.buckets import MINUTE, TimeRange
from analytics_svc.handlers import AnalyticsAnswers
from analytics_svc.pruning import Pruner
from analytics_svc.rollup import ANY_PROJECT
from analytics_svc.store import RollupStore, Scope
from contracts.tenancy import ALL_TRAFFIC
from contracts.timeutil import to_iso
from tests import analytics_oracle as oracle
from tests.factories import random_traffic, request_completed


def wire(answer: Any) -> Any:
    """An answer as the service writes it: wire names, JSON values."""
    return to_jsonable_python(answer, by_alias=True)


def scope(viewer: str | None, since: datetime | None, until: datetime | None,
          project: str | None = None, now: datetime | None = None) -> Scope:
    span = TimeRange.inclusive(since, until, now or datetime.now(UTC))
    return Scope(viewer or ALL_TRAFFIC, project or ANY_PROJECT, span)


async def fold_in_random_batches(store: RollupStore, events, rng) -> None:
    position = 0
    while position < len(events):
        size = rng.randint(1, 500)
        await store.fold(events[position:position + size])
        position += size


async def assert_all_answers(answers: AnalyticsAnswers, events, viewer: str | None,
                             since: datetime | None, until: datetime | None,
                             project: str | None = None) -> None:
    seen = oracle.within(oracle.visible(events, viewer, project), since, until)
    where = scope(viewer, since, until, project)
    context = (viewer, project, since, until, len(seen))
    oracle.assert_matches(wire(await answers.summary(where)), oracle.summary(seen))
    oracle.assert_matches(wire(await answers.error_rate(where)), oracle.error_rate(seen))
    oracle.assert_matches(wire(await answers.latency(where)), oracle.latency(seen))
    for interval in ("hour", "day"):
        assert wire(await answers.requests_over_time(where, interval)) == \
            oracle.requests_over_time(seen, interval), context
    for limit in (1, 3, 100):
        top = wire(await answers.top_endpoints(where, limit))
        expected = oracle.top_endpoints(seen, limit)
        assert [(r["method"], r["path"], r["count"]) for r in top] == \
            [(r["method"], r["path"], r["count"]) for r in expected], context
        for got, want in zip(top, expected, strict=True):
            assert abs(got["avgLatency"] - want["avgLatency"]) <= 0.01 + 1e-9, context
        assert wire(await answers.top_users(where, limit)) == oracle.top_users(seen, limit), \
            context
        assert wire(await answers.api_key_usage(where, limit)) == \
            oracle.api_key_usage(seen, limit), context


async def test_every_answer_equals_brute_force_over_random_traffic(analytics_pool):
    rng = random.Random(20261126)
    now = datetime.now(UTC)
    events = random_traffic(rng, 4000, end=now, span_s=30 * 3600)
    # a resend of some events inside other messages must not count twice
    await fold_in_random_batches(RollupStore(analytics_pool), events + events[:700], rng)
    answers = AnalyticsAnswers(RollupStore(analytics_pool))
    ranges = [(None, None), (now - timedelta(hours=1), now),
              (now - timedelta(hours=26, seconds=13), now - timedelta(hours=2, seconds=55))]
    for _ in range(4):
        start = now - timedelta(seconds=rng.random() * 30 * 3600)
        ranges.append((start, start + timedelta(seconds=rng.random() * 8 * 3600)))
    for since, until in ranges:
        for viewer in (None, "u0", "u2"):
            await assert_all_answers(answers, events, viewer, since, until)
    for viewer, project in ((None, "p1"), ("u1", "p1"), ("u3", "p0")):
        await assert_all_answers(answers, events, viewer, *ranges[2], project=project)


async def test_no_data_answers_zero_and_empty_lists(analytics_pool):
    answers = AnalyticsAnswers(RollupStore(analytics_pool))
    where = scope("nobody", None, None)
    assert wire(await answers.summary(where)) == {
        "totalRequests": 0, "avgLatency": 0, "minLatency": 0, "maxLatency": 0,
        "p95Latency": 0, "errorRate": 0, "errorCount": 0, "totalErrors": 0,
        "statusBreakdown": {}, "uniqueUsers": 0, "uniqueEndpoints": 0}
    assert wire(await answers.latency(where)) == {"p50": 0, "p95": 0, "p99": 0, "avg": 0,
                                                  "min": 0, "max": 0}
    assert wire(await answers.error_rate(where)) == {
        "total": 0, "errors4xx": 0, "errors5xx": 0, "totalErrors": 0, "errorRate": 0}
    assert wire(await answers.requests_over_time(where, "day")) == []
    assert wire(await answers.top_endpoints(where, 10)) == []
    assert wire(await answers.top_users(where, 10)) == []
    assert wire(await answers.api_key_usage(where, 10)) == []


async def test_range_bounds_align_to_ten_seconds_and_include_the_bucket_of_to(analytics_pool):
    store = RollupStore(analytics_pool)
    base = TimeRange.inclusive(datetime.now(UTC) - timedelta(hours=1), None,
                               datetime.now(UTC)).start
    assert base is not None
    offsets_ms = (0, 9_999, 10_000, 19_999, 20_000)
    await store.fold([request_completed(1, timestamp=to_iso(base + timedelta(milliseconds=ms)))
                      for ms in offsets_ms])

    async def count(since_ms: int, until_ms: int) -> int:
        where = scope(None, base + timedelta(milliseconds=since_ms),
                      base + timedelta(milliseconds=until_ms))
        return (await store.totals(where)).requests

    assert await count(0, 0) == 2  # [0, 10 s): the first two
    assert await count(5_000, 9_999) == 2  # from rounded down, to's bucket included
    assert await count(0, 10_000) == 4  # to on a boundary: that bucket is in
    assert await count(10_000, 19_999) == 2
    assert await count(10_001, 20_000) == 3  # from rounds down to 10 s
    assert await count(20_001, 25_000) == 1


async def test_ranges_older_than_the_ten_second_rows_align_to_minutes(analytics_pool):
    store = RollupStore(analytics_pool)
    now = datetime.now(UTC)
    minute = MINUTE.floor(now - timedelta(days=5))
    await store.fold([request_completed(i, timestamp=to_iso(minute + timedelta(seconds=s)))
                      for i, s in enumerate((5, 25, 65))], now=now)
    where = scope(None, minute + timedelta(seconds=30), minute + timedelta(seconds=40), now=now)
    # no 10 s rows are kept five days back: the range widens to its whole minute
    assert (await store.totals(where)).requests == 2
    everything = scope(None, minute - timedelta(days=1), now, now=now)
    assert (await store.totals(everything)).requests == 3


async def test_events_are_counted_once_per_distinct_id_in_a_view(analytics_pool):
    store = RollupStore(analytics_pool)
    # a developer calling their own project: userId == ownerId
    await store.fold([request_completed(1, user_id="dev", owner_id="dev", project_id="p"),
                      request_completed(2, user_id="other", owner_id="dev", project_id="p"),
                      request_completed(3, user_id="dev", owner_id=None)])
    totals = {viewer: (await store.totals(scope(viewer, None, None))).requests
              for viewer in ("dev", "other", None)}
    assert totals == {"dev": 3, "other": 1, None: 3}
    assert (await store.totals(scope("dev", None, None, project="p"))).requests == 2


async def test_folding_the_same_request_ids_again_adds_nothing(analytics_pool):
    store = RollupStore(analytics_pool)
    events = [request_completed(i) for i in range(100)]
    first = await store.fold(events)
    again = await store.fold(events[50:] + events[:10])
    assert (first.new, first.duplicates) == (100, 0)
    assert (again.new, again.duplicates) == (0, 60)
    assert (await store.totals(scope(None, None, None))).requests == 100


async def test_pruning_drops_expired_buckets_and_old_ledger_rows_only(analytics_pool):
    store = RollupStore(analytics_pool)
    now = datetime.now(UTC)
    three_days_ago = now - timedelta(days=3)
    # folded back then: its 10 s rows were written and have expired since (1 day)
    await store.fold([request_completed(i, timestamp=to_iso(three_days_ago))
                      for i in range(5)], now=three_days_ago)
    await store.fold([request_completed(9)], now=now)
    rows = "SELECT resolution, count(*) FROM traffic GROUP BY 1 ORDER BY 1"
    before = dict(await analytics_pool.fetch(rows))
    # two slices ('*' and u-1) per bucket (one day bucket when both days are the same)
    assert before[10] == before[60] == before[3600] == 4
    pruner = Pruner(analytics_pool, ledger_horizon=timedelta(hours=1))
    await pruner.prune(now=now)
    after = dict(await analytics_pool.fetch(rows))
    assert (after[10], after[60], after[3600], after[86_400]) == (2, 4, 4, before[86_400])
    assert await analytics_pool.fetchval("SELECT count(*) FROM folded_requests") == 6
    await pruner.prune(now=now + timedelta(hours=2))  # past the ledger horizon
    assert await analytics_pool.fetchval("SELECT count(*) FROM folded_requests") == 0
