"""Query ranges at the ends of the ISO range (issue 19, item 5): any bounds from year 1 to
9999 become bucket pieces without overflowing datetime, and select the same buckets as exact
arithmetic on unbounded integers would."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter, ValidationError

from analytics_svc.buckets import (
    EPOCH,
    FAR_FUTURE,
    FAR_PAST,
    RESOLUTIONS,
    TRAFFIC_RESOLUTIONS,
    Resolution,
    TimeRange,
)
from contracts.validation import JsonNumber, UtcDateTime

MOMENTS = st.datetimes(min_value=datetime.min, max_value=datetime.max, timezones=st.just(UTC))
BOUNDS = st.one_of(st.none(), MOMENTS, st.sampled_from([
    datetime(1, 1, 1, tzinfo=UTC), datetime.max.replace(tzinfo=UTC), FAR_PAST, FAR_FUTURE,
    FAR_PAST - timedelta(microseconds=1), FAR_FUTURE - timedelta(microseconds=1)]))
NOWS = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2200, 1, 1),
                    timezones=st.just(UTC))


def seconds(moment: datetime) -> int:
    """Unix seconds, rounded down (exact for any datetime: a timedelta, not a float)."""
    return (moment - EPOCH) // timedelta(seconds=1)


def kept(moment_s: int, now_s: int) -> Resolution:
    """The resolution inclusive() aligns a bound to, in integers (no datetime to overflow)."""
    for resolution in RESOLUTIONS:
        bucket = moment_s // resolution.seconds * resolution.seconds
        if bucket >= now_s - resolution.retention.total_seconds():
            return resolution
    return RESOLUTIONS[-1]


def exact(since: datetime | None, until: datetime | None, now: datetime) -> tuple[int, int]:
    """docs/api.md section 8's aligned range in Unix seconds, computed without any clamp."""
    start, end = seconds(FAR_PAST), seconds(FAR_FUTURE)
    if since is not None:
        step = kept(seconds(since), seconds(now)).seconds
        start = max(start, seconds(since) // step * step)
    if until is not None:
        step = kept(seconds(until), seconds(now)).seconds
        end = min(end, seconds(until) // step * step + step)
    return start, end


def selected(span: TimeRange) -> tuple[int, int]:
    """What the range selects of the buckets that can exist, [FAR_PAST, FAR_FUTURE)."""
    start = max(seconds(span.start or FAR_PAST), seconds(FAR_PAST))
    end = min(seconds(span.end or FAR_FUTURE), seconds(FAR_FUTURE))
    return start, end


def nothing(bounds: tuple[int, int]) -> tuple[int, int]:
    return bounds if bounds[0] < bounds[1] else (0, 0)


@settings(max_examples=500, deadline=None, database=None)
@given(since=BOUNDS, until=BOUNDS, now=NOWS)
def test_any_bounds_cut_into_pieces_that_select_the_exact_buckets(
        since: datetime | None, until: datetime | None, now: datetime):
    span = TimeRange.inclusive(since, until, now)
    assert nothing(selected(span)) == nothing(exact(since, until, now))
    for resolutions in (RESOLUTIONS, TRAFFIC_RESOLUTIONS):
        pieces = span.pieces(resolutions)
        for before, after in itertools.pairwise(pieces):
            assert before.end == after.start  # no gap, no overlap
        for piece in pieces:
            step = timedelta(seconds=piece.resolution)
            assert (piece.start - EPOCH) % step == timedelta(0) == (piece.end - EPOCH) % step


def test_the_issues_bounds_are_clamped_into_the_span_buckets_can_lie_in():
    now = datetime(2026, 11, 26, tzinfo=UTC)
    late = datetime(9999, 12, 31, 23, 59, 59, 999_000, tzinfo=UTC)
    assert TimeRange.inclusive(None, late, now).end == FAR_FUTURE + timedelta(seconds=10)
    assert TimeRange.inclusive(late - timedelta(seconds=4), None, now).start == FAR_FUTURE
    whole = TimeRange.inclusive(datetime(1, 1, 1, tzinfo=UTC), late, now)
    assert whole.start <= FAR_PAST and whole.end >= FAR_FUTURE
    before_1970 = TimeRange.inclusive(None, datetime(1969, 12, 31, 23, 59, 59, tzinfo=UTC), now)
    assert before_1970.end <= FAR_PAST  # selects nothing, as unclamped


def test_dates_of_other_scripts_digits_are_refused():
    field = TypeAdapter(UtcDateTime)
    assert field.validate_python("9999-12-31T23:59:59.999999999Z") == datetime(
        9999, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC)
    for text in ("2026-01-01T00:00:00.\u0661Z", "\u0662\u0660\u0662\u0666-01-01T00:00:00Z"):
        with pytest.raises(ValidationError):
            field.validate_python(text)


@settings(max_examples=300, deadline=None, database=None)
@given(value=st.integers(-2**70, 2**70))
def test_json_integers_outside_int64_become_doubles(value: int):
    loaded = TypeAdapter(JsonNumber).validate_python(value)
    if -2**63 <= value < 2**63:
        assert loaded == value and isinstance(loaded, int)
    else:
        assert loaded == float(value) and isinstance(loaded, float)


def test_iso_moments_have_four_digit_years():
    from contracts.timeutil import to_iso

    assert to_iso(datetime(1, 1, 1, tzinfo=UTC)) == "0001-01-01T00:00:00.000Z"
    assert to_iso(datetime(999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)) == \
        "0999-12-31T23:59:59.999Z"
