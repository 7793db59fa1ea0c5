"""The alert engine (docs/api.md section 9.1): every ALERT_INTERVAL_MS it evaluates every
enabled rule over the rule owner's view of the rollups in the rule's window, and on a breach
outside the cool-down stores an event and publishes `alert.triggered`.

Once per breach, however many analytics replicas run:
- only the holder of a lease in Redis evaluates; it renews the lease every tick, and a lease
  lasts three intervals, so when its holder dies another replica takes over within three
  intervals (at once when the holder stops cleanly and releases it);
- ticks are aligned to multiples of the interval and an event's id is derived from its rule
  and tick, so a holder that lost the lease while paused and a new holder evaluating the
  same tick store one event between them.

The window is read from the rollups as the range [now - window, now] aligned to 10 s (one
rollup step at most is added at its start), never from raw log entries.
"""

from __future__ import annotations

import contextlib
import uuid
from datetime import UTC, datetime, timedelta

from prometheus_client import Counter

from analytics_svc.alert_store import AlertRule, AlertStore
from analytics_svc.alerting import (
    breached,
    measure,
    message_of,
    needs_histogram,
    severity_of,
)
from analytics_svc.buckets import TimeRange
from analytics_svc.rollup import ANY_PROJECT
from analytics_svc.store import RollupStore, Scope
from contracts.broker import Publisher
from contracts.logging import get_logger
from contracts.messages import AlertTriggered
from contracts.periodic import Periodic
from contracts.redis_clients import RedisClient
from contracts.tenancy import ALL_TRAFFIC

log = get_logger(__name__)

ALERTS_TRIGGERED = Counter("alerts_triggered_total", "Alert events stored and published",
                           ["severity"])
LEASE_KEY = "analytics:alert-engine:lease"

# Acquire when free, renew when ours: one round trip, atomic.
_HOLD = """
if redis.call('get', KEYS[1]) == ARGV[1] then
    return redis.call('pexpire', KEYS[1], ARGV[2])
end
if redis.call('set', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 1 end
return 0
"""
_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end
return 0
"""


class Lease:
    """A Redis key held by one process at a time, for `ttl_ms` after each `hold()`."""

    def __init__(self, redis: RedisClient, key: str, ttl_ms: int) -> None:
        self._redis = redis
        self._key = key
        self._ttl_ms = ttl_ms
        self.holder = uuid.uuid4().hex

    async def hold(self) -> bool:
        return bool(await self._redis.eval(_HOLD, 1, self._key, self.holder, self._ttl_ms))

    async def release(self) -> None:
        await self._redis.eval(_RELEASE, 1, self._key, self.holder)


class AlertEngine:
    def __init__(self, alerts: AlertStore, rollups: RollupStore, publisher: Publisher,
                 lease: Lease, interval_ms: int) -> None:
        self._alerts = alerts
        self._rollups = rollups
        self._publisher = publisher
        self._lease = lease
        self._interval_ms = interval_ms

    def periodic(self) -> Periodic:
        """The tick, on multiples of the interval: the same instants in every replica."""
        return Periodic("alert-engine", self.tick, self._interval_ms / 1000, aligned=True)

    async def close(self) -> None:
        """Hand the lease over at once (a replica need not wait for it to run out)."""
        with contextlib.suppress(Exception):
            await self._lease.release()

    async def tick(self, now: datetime | None = None) -> list[AlertTriggered]:
        """One evaluation of every enabled rule, if this process holds the lease."""
        if not await self._lease.hold():
            return []
        now = now or datetime.now(UTC)
        slot = int(now.timestamp() * 1000) // self._interval_ms
        fired = []
        for rule in await self._alerts.enabled_rules():
            try:
                event = await self.evaluate(rule, now, slot)
            except Exception:
                log.exception("alert rule evaluation failed", rule_id=rule.id)
                continue
            if event is not None:
                fired.append(event)
        return fired

    async def evaluate(self, rule: AlertRule, now: datetime, slot: int) -> AlertTriggered | None:
        span = TimeRange.inclusive(now - timedelta(seconds=rule.window_s), now, now)
        scope = Scope(ALL_TRAFFIC if rule.owner_is_admin else rule.user_id,
                      rule.project_id or ANY_PROJECT, span)
        totals = await self._rollups.totals(scope)
        bins = await self._rollups.latency_bins(scope) if needs_histogram(rule.metric) else {}
        value = measure(rule.metric, totals, bins, rule.window_s)
        if not breached(value, rule.operator, rule.threshold):
            return None
        last = await self._alerts.last_event_at(rule.id)
        if last is not None and last >= now - timedelta(seconds=rule.cool_down_s):
            return None
        severity = severity_of(rule.metric, value, rule.threshold, rule.severity)
        event = await self._alerts.store_event(
            rule, slot, value=value, severity=severity, at=now,
            message=message_of(severity, rule.name, rule.metric, value, rule.threshold))
        if event is not None:
            self._publisher.publish(event)
            ALERTS_TRIGGERED.labels(severity).inc()
            log.info("alert triggered", rule_id=rule.id, metric=rule.metric, value=value)
        return event
