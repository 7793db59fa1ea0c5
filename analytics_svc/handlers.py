"""The analytics service's RPC operations (docs/api.md section 8): each answer is assembled from a
few reads of bucket rows (analytics_svc.store), never from raw log entries."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from analytics_svc.buckets import TimeRange
from analytics_svc.rollup import ANY_PROJECT
from analytics_svc.store import Ranked, RollupStore, Scope
from contracts.histogram import quantiles
from contracts.messages import RpcRequest
from contracts.rpc import RpcClient, operation
from contracts.tenancy import analytics_view, ensure_project_visible
from contracts.timeutil import parse_iso, to_iso


class AnalyticsAnswers:
    """The seven answers of docs/api.md section 8 for one scope (view, project, range)."""

    def __init__(self, store: RollupStore) -> None:
        self._store = store

    async def summary(self, scope: Scope) -> dict[str, Any]:
        totals, bins, users, endpoints = await asyncio.gather(
            self._store.totals(scope), self._store.latency_bins(scope),
            self._store.distinct_users(scope), self._store.distinct_endpoints(scope))
        (p95,) = quantiles(bins, (0.95,), low=totals.latency_min, high=totals.latency_max)
        errors = totals.errors
        return {
            "totalRequests": totals.requests, "avgLatency": totals.average_latency,
            "minLatency": totals.latency_min, "maxLatency": totals.latency_max,
            "p95Latency": round(p95, 2), "errorRate": totals.percent(errors),
            "errorCount": errors, "totalErrors": errors,
            "statusBreakdown": {f"{index + 1}xx": count
                                for index, count in enumerate(totals.by_class) if count},
            "uniqueUsers": users, "uniqueEndpoints": endpoints,
        }

    async def requests_over_time(self, scope: Scope, interval: str) -> list[dict[str, Any]]:
        counts = await self._store.over_time(scope, interval)
        return [{"date": to_iso(start), "count": count} for start, count in counts]

    async def error_rate(self, scope: Scope) -> dict[str, Any]:
        totals = await self._store.totals(scope)
        return {"total": totals.requests, "errors4xx": totals.client_errors,
                "errors5xx": totals.server_errors, "totalErrors": totals.errors,
                "errorRate": totals.percent(totals.errors)}

    async def latency(self, scope: Scope) -> dict[str, Any]:
        totals, bins = await asyncio.gather(self._store.totals(scope),
                                            self._store.latency_bins(scope))
        p50, p95, p99 = quantiles(bins, (0.5, 0.95, 0.99), low=totals.latency_min,
                                  high=totals.latency_max)
        return {"p50": round(p50, 2), "p95": round(p95, 2), "p99": round(p99, 2),
                "avg": totals.average_latency, "min": totals.latency_min,
                "max": totals.latency_max}

    async def top_endpoints(self, scope: Scope, limit: int) -> list[dict[str, Any]]:
        rows = await self._store.top_endpoints(scope, limit)
        return [{"method": row.name[0], "path": row.name[1], "count": row.requests,
                 "avgLatency": round(row.latency_sum / row.requests, 2)} for row in rows]

    async def top_users(self, scope: Scope, limit: int) -> list[dict[str, Any]]:
        rows = await self._store.top_users(scope, limit)
        return [{"userId": row.name[0], "count": row.requests, "lastActive": _moment(row)}
                for row in rows]

    async def api_key_usage(self, scope: Scope, limit: int) -> list[dict[str, Any]]:
        rows = await self._store.top_keys(scope, limit)
        return [{"apiKeyId": row.name[0], "count": row.requests, "lastUsed": _moment(row)}
                for row in rows]


class AnalyticsHandlers:
    """The RPC layer: who is asking and about what (a scope), then the answer."""

    def __init__(self, store: RollupStore, rpc: RpcClient) -> None:
        self._answers = AnalyticsAnswers(store)
        self._rpc = rpc

    @operation("analytics.summary")
    async def summary(self, request: RpcRequest) -> dict[str, Any]:
        return await self._answers.summary(await self._scope(request))

    @operation("analytics.requests_over_time")
    async def requests_over_time(self, request: RpcRequest) -> list[dict[str, Any]]:
        return await self._answers.requests_over_time(
            await self._scope(request), request.query.get("interval", "day"))

    @operation("analytics.error_rate")
    async def error_rate(self, request: RpcRequest) -> dict[str, Any]:
        return await self._answers.error_rate(await self._scope(request))

    @operation("analytics.latency")
    async def latency(self, request: RpcRequest) -> dict[str, Any]:
        return await self._answers.latency(await self._scope(request))

    @operation("analytics.top_endpoints")
    async def top_endpoints(self, request: RpcRequest) -> list[dict[str, Any]]:
        return await self._answers.top_endpoints(await self._scope(request),
                                                 request.query.get("limit", 10))

    @operation("analytics.top_users")
    async def top_users(self, request: RpcRequest) -> list[dict[str, Any]]:
        return await self._answers.top_users(await self._scope(request),
                                             request.query.get("limit", 10))

    @operation("analytics.api_key_usage")
    async def api_key_usage(self, request: RpcRequest) -> list[dict[str, Any]]:
        return await self._answers.api_key_usage(await self._scope(request),
                                                 request.query.get("limit", 10))

    async def _scope(self, request: RpcRequest) -> Scope:
        """The caller's view (docs/api.md section 1.3), narrowed to a visible project, over the
        aligned range of `from`/`to`."""
        caller = request.authenticated
        query = request.query
        project = ANY_PROJECT
        if query.get("projectId") is not None:
            project = str(query["projectId"])
            await ensure_project_visible(self._rpc, caller, project, request.request_id)
        since, until = query.get("from"), query.get("to")
        span = TimeRange.inclusive(parse_iso(since) if since else None,
                                   parse_iso(until) if until else None, datetime.now(UTC))
        return Scope(analytics_view(caller), project, span)


def _moment(row: Ranked) -> str | None:
    return to_iso(row.last_seen) if row.last_seen is not None else None
