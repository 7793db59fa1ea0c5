"""Pure pieces of the analytics service: histogram accuracy, range cutting, folding."""

from __future__ import annotations

import itertools
import random
from datetime import UTC, datetime, timedelta

import pytest

from analytics_svc.buckets import DAY, HOUR, MINUTE, TEN_SECONDS, TRAFFIC_RESOLUTIONS, TimeRange
from analytics_svc.rollup import ANY_PROJECT, UNMATCHED, Rollup
from contracts.histogram import histogram, quantiles
from contracts.tenancy import ALL_TRAFFIC
from contracts.timeutil import to_iso
from tests.analytics_oracle import quantile
from tests.factories import request_completed

NOW = datetime(2026, 11, 26, 12, 34, 56, 789_000, tzinfo=UTC)


@pytest.mark.parametrize("seed", range(5))
def test_quantiles_from_bins_are_within_one_percent(seed):
    rng = random.Random(seed)
    values = [rng.lognormvariate(rng.uniform(-2, 6), rng.uniform(0.1, 2.5))
              for _ in range(rng.randint(1, 5000))]
    bins = histogram(values)
    for q in (0.0, 0.01, 0.5, 0.9, 0.95, 0.99, 1.0):
        (estimate,) = quantiles(bins, (q,), low=min(values), high=max(values))
        exact = quantile(values, q)
        assert abs(estimate - exact) <= 0.01 * exact + 1e-12, (q, estimate, exact)


def test_merged_histograms_answer_like_one_histogram():
    rng = random.Random(3)
    parts = [[rng.expovariate(0.05) for _ in range(300)] for _ in range(7)]
    merged = sum((histogram(part) for part in parts), start=histogram([]))
    assert merged == histogram([v for part in parts for v in part])


def test_an_empty_histogram_answers_zero_and_zero_latency_stays_zero():
    assert quantiles({}, (0.5, 0.99), low=0, high=0) == [0.0, 0.0]
    assert quantiles(histogram([0.0, 0.0]), (0.5,), low=0.0, high=0.0) == [0.0]


def covered_seconds(span: TimeRange, *resolutions) -> list[tuple[datetime, datetime]]:
    pieces = sorted(span.pieces(*resolutions), key=lambda p: p.start)
    for before, after in itertools.pairwise(pieces):
        assert before.end == after.start  # no gap, no overlap
    for piece in pieces:
        assert piece.start == TEN_SECONDS.floor(piece.start)
    return [(pieces[0].start, pieces[-1].end)] if pieces else []


@pytest.mark.parametrize("seed", range(20))
def test_a_range_is_cut_into_aligned_pieces_that_cover_it_exactly(seed):
    rng = random.Random(seed)
    since = NOW - timedelta(seconds=rng.uniform(0, 20 * 3600))  # 10 s rows still kept
    until = since + timedelta(seconds=rng.uniform(0, 30 * 3600))
    span = TimeRange.inclusive(since, until, NOW)
    assert span.start == TEN_SECONDS.floor(since)
    assert span.end == TEN_SECONDS.floor(until) + timedelta(seconds=10)
    assert covered_seconds(span) == [(span.start, span.end)]
    assert covered_seconds(span, TRAFFIC_RESOLUTIONS) == [(span.start, span.end)]
    for piece in [*span.pieces(), *span.pieces(TRAFFIC_RESOLUTIONS)]:  # whole buckets
        resolution = {10: TEN_SECONDS, 60: MINUTE, 3600: HOUR, 86_400: DAY}[piece.resolution]
        assert resolution.floor(piece.start) == piece.start
        assert resolution.floor(piece.end) == piece.end
    # few rows however long the range: at most 5 + 59 + 5 + 59 edge buckets besides hours
    assert len(span.pieces()) <= 5


def test_a_long_range_reads_hours_in_the_middle_and_finer_rows_at_the_edges():
    span = TimeRange.inclusive(NOW - timedelta(days=6), NOW - timedelta(seconds=25), NOW)
    # six days back is past the 10 s rows' retention (1 day): that end aligns to the minute
    assert [p.resolution for p in span.pieces()] == [60, 3600, 60, 10]
    hours = [p for p in span.pieces() if p.resolution == 3600]
    assert hours[0].end - hours[0].start > timedelta(days=5)
    # the traffic table reads whole days in the middle
    widths = [p.resolution for p in span.pieces(TRAFFIC_RESOLUTIONS)]
    assert widths == [60, 3600, 86_400, 3600, 60, 10]
    # past the minute rows' retention (7 days) too: the hour
    week = TimeRange.inclusive(NOW - timedelta(days=7, minutes=5), None, NOW)
    assert week.start == HOUR.floor(NOW - timedelta(days=7, minutes=5))


def test_a_bound_older_than_the_ten_second_rows_aligns_to_the_minute():
    since = NOW - timedelta(days=5, seconds=17)
    span = TimeRange.inclusive(since, None, NOW)
    assert span.start == MINUTE.floor(since)
    assert all(piece.resolution != 10 for piece in span.pieces())


def test_folding_counts_a_request_once_per_distinct_viewer_and_project():
    event = request_completed(1, user_id="dev", owner_id="dev", project_id="p",
                              timestamp=to_iso(NOW))
    rollup = Rollup.of([event], NOW)
    slices = {(viewer, project) for viewer, project, _, _ in rollup.traffic}
    assert slices == {(ALL_TRAFFIC, ANY_PROJECT), (ALL_TRAFFIC, "p"), ("dev", ANY_PROJECT),
                      ("dev", "p")}
    assert len(rollup.traffic) == 4 * 4  # 10 s, minute, hour and day
    assert len(rollup.endpoints) == 4 * 3  # no day rows
    assert all(cell.requests == 1 for cell in rollup.traffic.values())


def test_coarse_cells_are_the_sums_of_their_ten_second_cells():
    rng = random.Random(1)
    events = [request_completed(i, timestamp=to_iso(NOW - timedelta(seconds=rng.uniform(
        0, 7200))), latency=rng.uniform(0, 100), route=rng.choice(["/a", None]))
        for i in range(500)]
    rollup = Rollup.of(events, NOW)
    for resolution in (10, 60, 3600, 86_400):
        cells = [c for s, c in rollup.traffic.items()
                 if s[2] == resolution and s[0] == ALL_TRAFFIC]
        assert sum(c.requests for c in cells) == 500
        assert sum(sum(c.bins.values()) for c in cells) == 500
        assert min(c.latency_min for c in cells) == min(e.latency for e in events)
    endpoints = {key[1:] for key in rollup.endpoints}
    assert endpoints == {("GET", "/a"), ("GET", UNMATCHED)}


def test_buckets_past_their_retention_are_not_folded():
    old = request_completed(1, timestamp=to_iso(NOW - timedelta(days=20)))
    rollup = Rollup.of([old], NOW)
    assert {resolution for _, _, resolution, _ in rollup.traffic} == {3600, 86_400}
    assert Rollup.of([request_completed(2, timestamp=to_iso(NOW - timedelta(days=500)))],
                     NOW).empty
