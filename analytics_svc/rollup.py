"""Folding events into rollup cells, in memory: what one consumed message adds to the rollup
tables (analytics_svc.store writes it in one transaction).

Each event is added to one cell per slice it belongs to: each distinct viewer of it, its
project and any project, at each resolution whose retention still holds its bucket (a cell
that would be deleted at once is left out); traffic cells also by day. Events of one message
mostly share their buckets, so a message of hundreds of events becomes a few dozen rows.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TypeVar

from analytics_svc.buckets import DAY, RESOLUTIONS
from contracts.histogram import bin_of
from contracts.messages import RequestCompleted
from contracts.tenancy import ALL_TRAFFIC

UNMATCHED = "(unmatched)"  # the one endpoint of every request no route template matched
ANY_PROJECT = "*"


# (viewer, project, resolution in seconds, bucket start in Unix seconds): a plain tuple, as
# one is built per event and slice.
Slice = tuple[str, str, int, int]
_Key = TypeVar("_Key")  # a count table's key: a slice with an endpoint, a user or a key


@dataclass(slots=True)
class TrafficCell:
    requests: int = 0
    by_class: list[int] = field(default_factory=lambda: [0, 0, 0, 0, 0])  # 1xx..5xx
    latency_sum: float = 0.0
    latency_min: float = float("inf")
    latency_max: float = float("-inf")
    bins: dict[int, int] = field(default_factory=dict)  # histogram bin -> requests

    def add(self, status_class: int, latency: float, latency_bin: int) -> None:
        self.requests += 1
        self.by_class[status_class] += 1
        self.latency_sum += latency
        if latency < self.latency_min:
            self.latency_min = latency
        if latency > self.latency_max:
            self.latency_max = latency
        self.bins[latency_bin] = self.bins.get(latency_bin, 0) + 1


@dataclass(slots=True)
class CountCell:
    """Requests of one endpoint, user or key in one slice: with the latency sum (endpoints)
    and the latest request's time (users, keys)."""

    requests: int = 0
    latency_sum: float = 0.0
    last_seen: float = 0.0  # Unix seconds

    def add(self, latency: float, seen: float) -> None:
        self.requests += 1
        self.latency_sum += latency
        if seen > self.last_seen:
            self.last_seen = seen


@dataclass
class Rollup:
    traffic: dict[Slice, TrafficCell] = field(default_factory=dict)
    endpoints: dict[tuple[Slice, str, str], CountCell] = field(default_factory=dict)
    users: dict[tuple[Slice, str], CountCell] = field(default_factory=dict)
    keys: dict[tuple[Slice, str], CountCell] = field(default_factory=dict)

    @classmethod
    def of(cls, events: Iterable[RequestCompleted], now: datetime) -> Rollup:
        rollup = cls()
        now_s = now.timestamp()
        horizons = [(r.seconds, now_s - r.retention.total_seconds()) for r in RESOLUTIONS]
        day_horizon = now_s - DAY.retention.total_seconds()
        for event in events:
            rollup._add(event, horizons, day_horizon)
        return rollup

    @property
    def empty(self) -> bool:
        return not self.traffic

    def _add(self, event: RequestCompleted, horizons: list[tuple[int, float]],
             day_horizon: float) -> None:
        seen = event.moment.timestamp()
        buckets = []
        for width, horizon in horizons:
            bucket = int(seen // width) * width
            if bucket >= horizon:
                buckets.append((width, bucket))
        day = int(seen // DAY.seconds) * DAY.seconds
        if day < day_horizon:
            day = -1
        latency = event.latency
        latency_bin = bin_of(latency)
        status_class = min(max(event.status_code // 100, 1), 5) - 1
        method, route = event.method, event.route or UNMATCHED
        user, key = event.user_id, event.api_key_id
        viewers = {ALL_TRAFFIC}
        for person in (user, event.owner_id):
            if person is not None:
                viewers.add(person)
        projects = (ANY_PROJECT,) if event.project_id is None else (ANY_PROJECT,
                                                                     event.project_id)
        traffic, endpoints, users, keys = self.traffic, self.endpoints, self.users, self.keys
        for viewer in viewers:
            for project in projects:
                for width, bucket in buckets:
                    where = (viewer, project, width, bucket)
                    cell = traffic.get(where)
                    if cell is None:
                        cell = traffic[where] = TrafficCell()
                    cell.add(status_class, latency, latency_bin)
                    _count(endpoints, (where, method, route), latency, seen)
                    if user is not None:
                        _count(users, (where, user), latency, seen)
                    if key is not None:
                        _count(keys, (where, key), latency, seen)
                if day >= 0:  # day buckets: the traffic table only
                    where = (viewer, project, DAY.seconds, day)
                    cell = traffic.get(where)
                    if cell is None:
                        cell = traffic[where] = TrafficCell()
                    cell.add(status_class, latency, latency_bin)


def _count(table: dict[_Key, CountCell], key: _Key, latency: float, seen: float) -> None:
    cell = table.get(key)
    if cell is None:
        cell = table[key] = CountCell()
    cell.add(latency, seen)
