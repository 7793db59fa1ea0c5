"""Folding events into rollup cells, in memory: what one consumed message adds to the rollup
tables (analytics_svc.store writes it in one transaction).

Each event is added once to a 10 s cell per slice it belongs to; minute and hour cells are
then built by merging 10 s cells, so the per-event work does not grow with the number of
resolutions. A cell of a bucket older than its resolution's retention is left out (it would
be deleted anyway).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import NamedTuple

from analytics_svc.buckets import FINEST, RESOLUTIONS
from analytics_svc.histogram import bin_of
from contracts.messages import RequestCompleted
from contracts.tenancy import ALL_TRAFFIC

UNMATCHED = "(unmatched)"  # the one endpoint of every request no route template matched
ANY_PROJECT = "*"


class Slice(NamedTuple):
    viewer: str
    project: str
    resolution: int
    bucket: int  # Unix seconds of the bucket's start


@dataclass(slots=True)
class TrafficCell:
    requests: int = 0
    by_class: list[int] = field(default_factory=lambda: [0, 0, 0, 0, 0])  # 1xx..5xx
    latency_sum: float = 0.0
    latency_min: float = math.inf
    latency_max: float = -math.inf
    bins: Counter[int] = field(default_factory=Counter)

    def add(self, status_class: int, latency: float, latency_bin: int) -> None:
        self.requests += 1
        self.by_class[status_class] += 1
        self.latency_sum += latency
        self.latency_min = min(self.latency_min, latency)
        self.latency_max = max(self.latency_max, latency)
        self.bins[latency_bin] += 1

    def merge(self, other: TrafficCell) -> None:
        self.requests += other.requests
        for index, count in enumerate(other.by_class):
            self.by_class[index] += count
        self.latency_sum += other.latency_sum
        self.latency_min = min(self.latency_min, other.latency_min)
        self.latency_max = max(self.latency_max, other.latency_max)
        self.bins.update(other.bins)


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
        self.last_seen = max(self.last_seen, seen)

    def merge(self, other: CountCell) -> None:
        self.requests += other.requests
        self.latency_sum += other.latency_sum
        self.last_seen = max(self.last_seen, other.last_seen)


@dataclass
class Rollup:
    traffic: dict[Slice, TrafficCell] = field(default_factory=dict)
    endpoints: dict[tuple[Slice, str, str], CountCell] = field(default_factory=dict)
    users: dict[tuple[Slice, str], CountCell] = field(default_factory=dict)
    keys: dict[tuple[Slice, str], CountCell] = field(default_factory=dict)

    @classmethod
    def of(cls, events: Iterable[RequestCompleted], now: datetime) -> Rollup:
        finest = cls()
        for event in events:
            finest._add(event)
        rollup = cls()
        now_s = now.timestamp()
        for resolution in RESOLUTIONS:
            horizon = now_s - resolution.retention.total_seconds()
            rollup._merge_into(finest, resolution.seconds, horizon)
        return rollup

    @property
    def empty(self) -> bool:
        return not self.traffic

    def _add(self, event: RequestCompleted) -> None:
        seen = event.moment.timestamp()
        bucket = int(seen // FINEST.seconds) * FINEST.seconds
        latency = event.latency
        latency_bin = bin_of(latency)
        status_class = min(max(event.status_code // 100, 1), 5) - 1
        endpoint = (event.method, event.route or UNMATCHED)
        viewers = {ALL_TRAFFIC}
        for person in (event.user_id, event.owner_id):
            if person is not None:
                viewers.add(person)
        projects = (ANY_PROJECT,) if event.project_id is None else (ANY_PROJECT,
                                                                     event.project_id)
        for viewer in viewers:
            for project in projects:
                where = Slice(viewer, project, FINEST.seconds, bucket)
                cell = self.traffic.get(where)
                if cell is None:
                    cell = self.traffic[where] = TrafficCell()
                cell.add(status_class, latency, latency_bin)
                _count(self.endpoints, (where, *endpoint), latency, seen)
                if event.user_id is not None:
                    _count(self.users, (where, event.user_id), latency, seen)
                if event.api_key_id is not None:
                    _count(self.keys, (where, event.api_key_id), latency, seen)

    def _merge_into(self, finest: Rollup, resolution: int, horizon: float) -> None:
        def coarse(where: Slice) -> Slice | None:
            bucket = where.bucket // resolution * resolution
            if bucket < horizon:
                return None
            return Slice(where.viewer, where.project, resolution, bucket)

        for where, cell in finest.traffic.items():
            target = coarse(where)
            if target is not None:
                self.traffic.setdefault(target, TrafficCell()).merge(cell)
        for table, source in ((self.endpoints, finest.endpoints), (self.users, finest.users),
                              (self.keys, finest.keys)):
            for (where, *rest), cell in source.items():
                target = coarse(where)
                if target is not None:
                    table.setdefault((target, *rest), CountCell()).merge(cell)


def _count(table: dict, key: tuple, latency: float, seen: float) -> None:
    cell = table.get(key)
    if cell is None:
        cell = table[key] = CountCell()
    cell.add(latency, seen)
