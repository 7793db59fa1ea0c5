"""The analytics service's RPC operations (docs/api.md section 8): each answer is assembled from a
few reads of bucket rows (analytics_svc.store), never from raw log entries."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from pydantic import MISSING

from analytics_svc.buckets import TimeRange
from analytics_svc.rollup import ANY_PROJECT
from analytics_svc.store import RollupStore, Scope
from contracts import operations as op
from contracts.broker import RpcCaller
from contracts.histogram import quantiles
from contracts.operations import Call
from contracts.rpc import handles
from contracts.schemas.analytics import (
    AnalyticsQuery,
    EndpointUse,
    ErrorRate,
    KeyUse,
    Latency,
    RequestCount,
    Summary,
    UserUse,
)
from contracts.tenancy import analytics_view, ensure_project_visible
from contracts.timeutil import to_iso
from contracts.validation import or_none


class AnalyticsAnswers:
    """The seven answers of docs/api.md section 8 for one scope (view, project, range)."""

    def __init__(self, store: RollupStore) -> None:
        self._store = store

    async def summary(self, scope: Scope) -> Summary:
        totals, bins, users, endpoints = await asyncio.gather(
            self._store.totals(scope), self._store.latency_bins(scope),
            self._store.distinct_users(scope), self._store.distinct_endpoints(scope))
        (p95,) = quantiles(bins, (0.95,), low=totals.latency_min, high=totals.latency_max)
        errors = totals.errors
        return Summary(
            total_requests=totals.requests, avg_latency=totals.average_latency,
            min_latency=totals.latency_min, max_latency=totals.latency_max,
            p95_latency=round(p95, 2), error_rate=totals.percent(errors),
            error_count=errors, total_errors=errors,
            status_breakdown={f"{index + 1}xx": count
                              for index, count in enumerate(totals.by_class) if count},
            unique_users=users, unique_endpoints=endpoints)

    async def requests_over_time(self, scope: Scope, interval: str) -> list[RequestCount]:
        counts = await self._store.over_time(scope, interval)
        return [RequestCount(date=to_iso(start), count=count) for start, count in counts]

    async def error_rate(self, scope: Scope) -> ErrorRate:
        totals = await self._store.totals(scope)
        return ErrorRate(total=totals.requests, errors4xx=totals.client_errors,
                         errors5xx=totals.server_errors, total_errors=totals.errors,
                         error_rate=totals.percent(totals.errors))

    async def latency(self, scope: Scope) -> Latency:
        totals, bins = await asyncio.gather(self._store.totals(scope),
                                            self._store.latency_bins(scope))
        p50, p95, p99 = quantiles(bins, (0.5, 0.95, 0.99), low=totals.latency_min,
                                  high=totals.latency_max)
        return Latency(p50=round(p50, 2), p95=round(p95, 2), p99=round(p99, 2),
                       avg=totals.average_latency, min=totals.latency_min,
                       max=totals.latency_max)

    async def top_endpoints(self, scope: Scope, limit: int) -> list[EndpointUse]:
        rows = await self._store.top_endpoints(scope, limit)
        return [EndpointUse(method=row.name[0], path=row.name[1], count=row.requests,
                            avg_latency=round(row.latency_sum / row.requests, 2))
                for row in rows]

    async def top_users(self, scope: Scope, limit: int) -> list[UserUse]:
        rows = await self._store.top_users(scope, limit)
        return [UserUse(user_id=row.name[0], count=row.requests,
                        last_active=_iso_or_none(row.last_seen)) for row in rows]

    async def api_key_usage(self, scope: Scope, limit: int) -> list[KeyUse]:
        rows = await self._store.top_keys(scope, limit)
        return [KeyUse(api_key_id=row.name[0], count=row.requests,
                       last_used=_iso_or_none(row.last_seen)) for row in rows]


def _iso_or_none(moment: datetime | None) -> str | None:
    """A stored moment as its answer field reads it (what `Moment` would make of it)."""
    return None if moment is None else to_iso(moment)


# all seven take the same query
AnalyticsCall = Call[None, AnalyticsQuery, None]


class AnalyticsHandlers:
    """The RPC layer: who is asking and about what (a scope), then the answer."""

    def __init__(self, store: RollupStore, rpc: RpcCaller) -> None:
        self._answers = AnalyticsAnswers(store)
        self._rpc = rpc

    @handles(op.ANALYTICS_SUMMARY)
    async def summary(self, call: AnalyticsCall) -> Summary:
        return await self._answers.summary(await self._scope(call))

    @handles(op.ANALYTICS_REQUESTS_OVER_TIME)
    async def requests_over_time(self, call: AnalyticsCall) -> list[RequestCount]:
        return await self._answers.requests_over_time(await self._scope(call),
                                                      call.query.interval)

    @handles(op.ANALYTICS_ERROR_RATE)
    async def error_rate(self, call: AnalyticsCall) -> ErrorRate:
        return await self._answers.error_rate(await self._scope(call))

    @handles(op.ANALYTICS_LATENCY)
    async def latency(self, call: AnalyticsCall) -> Latency:
        return await self._answers.latency(await self._scope(call))

    @handles(op.ANALYTICS_TOP_ENDPOINTS)
    async def top_endpoints(self, call: AnalyticsCall) -> list[EndpointUse]:
        return await self._answers.top_endpoints(await self._scope(call), call.query.limit)

    @handles(op.ANALYTICS_TOP_USERS)
    async def top_users(self, call: AnalyticsCall) -> list[UserUse]:
        return await self._answers.top_users(await self._scope(call), call.query.limit)

    @handles(op.ANALYTICS_API_KEY_USAGE)
    async def api_key_usage(self, call: AnalyticsCall) -> list[KeyUse]:
        return await self._answers.api_key_usage(await self._scope(call), call.query.limit)

    async def _scope(self, call: AnalyticsCall) -> Scope:
        """The caller's view (docs/api.md section 1.3), narrowed to a visible project, over the
        aligned range of `from`/`to`."""
        caller = call.authenticated
        query = call.query
        project = ANY_PROJECT
        if query.project_id is not MISSING:
            project = str(query.project_id)
            await ensure_project_visible(self._rpc, caller, project, call.request_id)
        span = TimeRange.inclusive(or_none(query.since), or_none(query.to), datetime.now(UTC))
        return Scope(analytics_view(caller), project, span)
