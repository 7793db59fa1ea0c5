"""Time buckets: the three rollup resolutions, their retention, and how a query range is cut
into whole buckets of the coarsest resolutions that fit (O(buckets), exact over the range)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# Every bucket starts in [FAR_PAST, FAR_FUTURE): buckets are cut from the gateway's Unix
# clock. They stand in for unbounded ends, and a query bound is clamped to them (below).
FAR_PAST = EPOCH
FAR_FUTURE = datetime(9999, 1, 1, tzinfo=UTC)
# Bounds are clamped a day below FAR_PAST, not to it: a `to` in 1969 rounded up (by an hour
# at most) still ends by FAR_PAST and selects nothing, as it would unclamped.
_LOWEST_BOUND = FAR_PAST - timedelta(days=1)


@dataclass(frozen=True)
class Resolution:
    seconds: int
    retention: timedelta  # rows of older buckets are deleted (analytics_svc.pruning)

    def floor(self, moment: datetime) -> datetime:
        # timedelta arithmetic, exact: float seconds lose the microseconds of far years, and
        # int() of them rounds a moment before 1970 up
        step = timedelta(seconds=self.seconds)
        return EPOCH + (moment - EPOCH) // step * step

    def ceil(self, moment: datetime) -> datetime:
        start = self.floor(moment)
        return start if start == moment else start + timedelta(seconds=self.seconds)

    def keeps(self, bucket: datetime, now: datetime) -> bool:
        return bucket >= now - self.retention


# Finest first. 10 s buckets serve the alert engine's windows and the edges of ranges; minute
# and hour buckets serve longer ranges with few rows. The traffic table, whose rows carry the
# latency histograms (a few hundred counters each), also has day buckets, so a week is read
# from about 30 rows rather than 168.
TEN_SECONDS = Resolution(10, timedelta(days=1))
MINUTE = Resolution(60, timedelta(days=7))
HOUR = Resolution(3600, timedelta(days=400))
DAY = Resolution(86_400, timedelta(days=400))
RESOLUTIONS: tuple[Resolution, ...] = (TEN_SECONDS, MINUTE, HOUR)  # every rollup table
TRAFFIC_RESOLUTIONS: tuple[Resolution, ...] = (*RESOLUTIONS, DAY)  # the traffic table
FINEST = TEN_SECONDS


@dataclass(frozen=True)
class Piece:
    """Buckets of one resolution whose start is in [start, end)."""

    resolution: int
    start: datetime
    end: datetime


@dataclass(frozen=True)
class TimeRange:
    """The bucket-aligned range a query covers: [start, end), None for an unbounded end."""

    start: datetime | None
    end: datetime | None

    @classmethod
    def inclusive(cls, since: datetime | None, until: datetime | None,
                  now: datetime) -> TimeRange:
        """docs/api.md section 8: `from` rounded down, `to` rounded up (the bucket holding `to` is
        in). A bound older than the 10 s retention aligns to the finest resolution still kept
        there, so no bucket the range needs has been deleted. Any valid ISO moment is
        accepted (year 1 to 9999): see `clamp`."""
        since = clamp(since) if since is not None else None
        until = clamp(until) if until is not None else None
        start = _kept(since, now).floor(since) if since is not None else None
        if until is None:
            end = None
        else:
            resolution = _kept(until, now)
            end = resolution.floor(until) + timedelta(seconds=resolution.seconds)
        return cls(start, end)

    def pieces(self, resolutions: tuple[Resolution, ...] = RESOLUTIONS) -> list[Piece]:
        """Whole buckets of the coarsest of `resolutions` that fit, finer ones at the edges."""
        return _cover(self.start, self.end, resolutions, len(resolutions) - 1)


def clamp(moment: datetime) -> datetime:
    """A query bound moved into [_LOWEST_BOUND, FAR_FUTURE]. It selects the same buckets as
    before (none lie outside), and rounding it to any resolution, up to a day, stays inside
    datetime's range: 9999-12-31T23:59:59Z rounded up would be year 10000 (OverflowError)."""
    return min(max(moment, _LOWEST_BOUND), FAR_FUTURE)


def _kept(moment: datetime, now: datetime) -> Resolution:
    for resolution in RESOLUTIONS:
        if resolution.keeps(resolution.floor(moment), now):
            return resolution
    return RESOLUTIONS[-1]


def _cover(start: datetime | None, end: datetime | None,
           resolutions: tuple[Resolution, ...], level: int) -> list[Piece]:
    """Whole buckets of resolutions[level] in the middle, finer ones at the edges. `start` and
    `end` are aligned to the finest resolution the caller needs (TimeRange.inclusive)."""
    if start is not None and end is not None and start >= end:
        return []
    resolution = resolutions[level]
    if level == 0:
        return [Piece(resolution.seconds, start or FAR_PAST, end or FAR_FUTURE)]
    inner_start = resolution.ceil(start) if start is not None else None
    inner_end = resolution.floor(end) if end is not None else None
    if inner_start is not None and inner_end is not None and inner_start >= inner_end:
        return _cover(start, end, resolutions, level - 1)
    middle = Piece(resolution.seconds, inner_start or FAR_PAST, inner_end or FAR_FUTURE)
    left = _cover(start, inner_start, resolutions, level - 1) if start is not None else []
    right = _cover(inner_end, end, resolutions, level - 1) if end is not None else []
    return [*left, middle, *right]
