"""Latency histograms that merge by adding counters.

A latency goes into bin `key(latency)` of DDSketch's logarithmic mapping with 1 % relative
accuracy: bin k holds the values in (gamma^(k-1), gamma^k], gamma = 1.01 / 0.99, and stands for
the one value within 1 % of all of them. Bins are fixed for all time (they are stored), so the
histogram of a range is the sum of its buckets' histograms, and a quantile read from it is
within 1 % of the true value of that rank (docs/api.md section 8 allows 2 %; the rest is
headroom for rounding to two decimals).

Latencies below `SMALLEST_MS` count in the bin of `SMALLEST_MS`; a quantile is clamped into
the exact [min, max] kept beside the histogram, so an all-zero range still answers 0.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping

from ddsketch.mapping import LogarithmicMapping

RELATIVE_ACCURACY = 0.01
SMALLEST_MS = 1e-6  # 1 ns: anything smaller (0 included) is counted as this

_MAPPING = LogarithmicMapping(RELATIVE_ACCURACY)


def bin_of(latency_ms: float) -> int:
    return _MAPPING.key(max(latency_ms, SMALLEST_MS))


def bin_value(key: int) -> float:
    return _MAPPING.value(key)


def quantiles(bins: Mapping[int, int], qs: Iterable[float], *, low: float,
              high: float) -> list[float]:
    """The values at ranks q * (n - 1) (nearest rank below, as `sorted(v)[int(q*(n-1))]`),
    each from the bin holding that rank and clamped into [low, high]; 0 for each when empty."""
    total = sum(bins.values())
    wanted = list(qs)
    if total == 0:
        return [0.0 for _ in wanted]
    keys = sorted(bins)
    answers = []
    for q in wanted:
        rank = int(q * (total - 1))
        seen = 0
        for key in keys:
            seen += bins[key]
            if seen > rank:
                answers.append(min(max(bin_value(key), low), high))
                break
    return answers


def histogram(latencies: Iterable[float]) -> Counter[int]:
    return Counter(bin_of(latency) for latency in latencies)
