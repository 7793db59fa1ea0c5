"""The analytics answers of docs/api.md section 8 computed the slow way, from the raw events: the
reference the rollups are compared with (integration and end-to-end tests alike)."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from analytics_svc.buckets import HOUR, MINUTE, TEN_SECONDS, Resolution
from contracts.messages import RequestCompleted
from contracts.timeutil import to_iso

UNMATCHED = "(unmatched)"


def visible(events: Iterable[RequestCompleted], viewer: str | None,
            project: str | None = None) -> list[RequestCompleted]:
    """Events a caller sees (docs/api.md section 1.3): all for an admin (`viewer` None), else those
    whose userId or ownerId is the viewer; narrowed to one project when given."""
    return [e for e in events
            if (viewer is None or viewer in (e.user_id, e.owner_id))
            and (project is None or e.project_id == project)]


def within(events: Iterable[RequestCompleted], since: datetime | None,
           until: datetime | None, now: datetime | None = None) -> list[RequestCompleted]:
    """Events in the aligned inclusive range (docs/api.md section 8): `from` rounded down, `to`
    rounded up, each to 10 s, or to the minute or hour where no finer rows are kept any
    more (README: resolutions and their retention)."""
    now = now or datetime.now(UTC)
    start = _step(since, now).floor(since) if since is not None else None
    end = None
    if until is not None:
        step = _step(until, now)
        end = step.floor(until) + timedelta(seconds=step.seconds)
    return [e for e in events if (start is None or e.moment >= start)
            and (end is None or e.moment < end)]


def _step(moment: datetime, now: datetime) -> Resolution:
    for step in (TEN_SECONDS, MINUTE, HOUR):
        if step.floor(moment) >= now - step.retention:
            return step
    return HOUR


def quantile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[int(q * (len(ordered) - 1))] if ordered else 0.0


def _percent(part: int, whole: int) -> float:
    return round(100 * part / whole, 2) if whole else 0


def summary(events: Sequence[RequestCompleted]) -> dict[str, Any]:
    latencies = [e.latency for e in events]
    errors = sum(e.status_code >= 400 for e in events)
    classes = Counter(f"{e.status_code // 100}xx" for e in events)
    return {
        "totalRequests": len(events),
        "avgLatency": round(sum(latencies) / len(latencies), 2) if latencies else 0,
        "minLatency": min(latencies, default=0), "maxLatency": max(latencies, default=0),
        "p95Latency": quantile(latencies, 0.95),
        "errorRate": _percent(errors, len(events)), "errorCount": errors,
        "totalErrors": errors, "statusBreakdown": dict(classes),
        "uniqueUsers": len({e.user_id for e in events if e.user_id is not None}),
        "uniqueEndpoints": len({(e.method, e.route or UNMATCHED) for e in events}),
    }


def error_rate(events: Sequence[RequestCompleted]) -> dict[str, Any]:
    client = sum(400 <= e.status_code < 500 for e in events)
    server = sum(e.status_code >= 500 for e in events)
    return {"total": len(events), "errors4xx": client, "errors5xx": server,
            "totalErrors": client + server, "errorRate": _percent(client + server, len(events))}


def latency(events: Sequence[RequestCompleted]) -> dict[str, Any]:
    values = [e.latency for e in events]
    return {"p50": quantile(values, 0.5), "p95": quantile(values, 0.95),
            "p99": quantile(values, 0.99),
            "avg": round(sum(values) / len(values), 2) if values else 0,
            "min": min(values, default=0), "max": max(values, default=0)}


def requests_over_time(events: Sequence[RequestCompleted], interval: str) -> list[dict]:
    counts: Counter[datetime] = Counter()
    for e in events:
        moment = e.moment.replace(minute=0, second=0, microsecond=0)
        if interval == "day":
            moment = moment.replace(hour=0)
        counts[moment] += 1
    return [{"date": to_iso(moment), "count": counts[moment]} for moment in sorted(counts)]


def top_endpoints(events: Sequence[RequestCompleted], limit: int) -> list[dict]:
    groups: dict[tuple[str, str], list[float]] = defaultdict(list)
    for e in events:
        groups[(e.method, e.route or UNMATCHED)].append(e.latency)
    ranked = sorted(groups.items(), key=lambda item: (-len(item[1]), item[0]))[:limit]
    return [{"method": method, "path": path, "count": len(values),
             "avgLatency": round(sum(values) / len(values), 2)}
            for (method, path), values in ranked]


def _top_seen(events: Sequence[RequestCompleted], attribute: str, name: str, seen: str,
              limit: int) -> list[dict]:
    counts: Counter[str] = Counter()
    last: dict[str, datetime] = {}
    for e in events:
        who = getattr(e, attribute)
        if who is not None:
            counts[who] += 1
            last[who] = max(last.get(who, e.moment), e.moment)
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))[:limit]
    return [{name: who, "count": count, seen: to_iso(last[who])} for who, count in ranked]


def top_users(events: Sequence[RequestCompleted], limit: int) -> list[dict]:
    return _top_seen(events, "user_id", "userId", "lastActive", limit)


def api_key_usage(events: Sequence[RequestCompleted], limit: int) -> list[dict]:
    return _top_seen(events, "api_key_id", "apiKeyId", "lastUsed", limit)


# Fields that may come from histograms (docs/api.md section 8: within 2 % of the true value).
APPROXIMATE = {"p50", "p95", "p99", "p95Latency"}
# Rounded to 2 decimals from a float sum: the database adds in another order than Python, so
# a value on a rounding edge may land one hundredth away.
ROUNDED = {"avgLatency", "avg", "errorRate"}


def assert_matches(actual: dict[str, Any], expected: dict[str, Any]) -> None:
    """Equal, except percentiles (within 2 %, plus the 0.005 of rounding to 2 decimals) and
    rounded averages (within one hundredth)."""
    assert actual.keys() == expected.keys(), (actual, expected)
    for name, value in expected.items():
        if name in APPROXIMATE:
            assert abs(actual[name] - value) <= 0.02 * value + 0.005, (name, actual, expected)
        elif name in ROUNDED:
            assert abs(actual[name] - value) <= 0.01 + 1e-9, (name, actual, expected)
        else:
            assert actual[name] == value, (name, actual, expected)
