"""The `stats` event (docs/api.md section 11): requests per second, error rate and latency
percentiles over the last 60 s of the traffic one view may see, computed by the relay from the
events it receives (never by polling analytics). One-second slots, so the window slides by
dropping whole slots; latencies go into the shared fixed-bin histogram (contracts.histogram),
so a view's memory is bounded by 60 slots of at most a few hundred counters."""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from contracts.histogram import bin_of, quantiles

WINDOW_S = 60


@dataclass
class _Slot:
    second: int
    requests: int = 0
    errors: int = 0
    low: float = math.inf
    high: float = -math.inf
    bins: dict[int, int] = field(default_factory=dict)


class WindowStats:
    """The last WINDOW_S seconds of one view."""

    def __init__(self) -> None:
        self._slots: deque[_Slot] = deque()

    def add(self, second: int, status: int, latency: float) -> None:
        """`second` is the relay's clock, which only moves forward (a step back of the
        clock counts in the newest slot)."""
        if not self._slots or self._slots[-1].second < second:
            self._slots.append(_Slot(second))
        slot = self._slots[-1]
        slot.requests += 1
        slot.errors += status >= 400
        slot.low = min(slot.low, latency)
        slot.high = max(slot.high, latency)
        key = bin_of(latency)
        slot.bins[key] = slot.bins.get(key, 0) + 1

    def snapshot(self, now_second: int) -> dict[str, Any]:
        while self._slots and self._slots[0].second <= now_second - WINDOW_S:
            self._slots.popleft()
        requests = sum(slot.requests for slot in self._slots)
        errors = sum(slot.errors for slot in self._slots)
        bins: dict[int, int] = {}
        for slot in self._slots:
            for key, count in slot.bins.items():
                bins[key] = bins.get(key, 0) + count
        low = min((slot.low for slot in self._slots), default=0.0)
        high = max((slot.high for slot in self._slots), default=0.0)
        p50, p95, p99 = quantiles(bins, (0.5, 0.95, 0.99), low=low, high=high)
        return {"rps": round(requests / WINDOW_S, 2),
                "errorRate": round(100 * errors / requests, 2) if requests else 0,
                "p50": round(p50, 2), "p95": round(p95, 2), "p99": round(p99, 2),
                "window": WINDOW_S}
