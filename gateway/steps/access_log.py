"""Step 3: one structured line per request (carrying the request id bound in step 2), and the
request count and latency metrics per route template and status."""

from __future__ import annotations

import logging

import structlog
from aiohttp import web
from prometheus_client import Histogram

from gateway.context import RequestContext

log = structlog.get_logger("gateway.access")

REQUEST_SECONDS = Histogram(
    "gateway_request_seconds", "Time from request to response, by route template and status",
    ["route", "status"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
# label children bound once per template and status, not looked up per request (bounded:
# templates are route configs and table entries, plus `unmatched`)
_LATENCY_OF: dict[tuple[str, int], Histogram] = {}


def access_log(context: RequestContext, request: web.Request, status: int) -> None:
    elapsed = context.elapsed_s()
    child = _LATENCY_OF.get((context.template, status))
    if child is None:
        child = _LATENCY_OF[context.template, status] = REQUEST_SECONDS.labels(
            context.template, str(status))
    child.observe(elapsed)
    # the level is fixed at start: below INFO the line is not even built (its fields cost a
    # few µs per request, for a line nobody writes)
    if log.is_enabled_for(logging.INFO):
        log.info("request", method=request.method, path=request.path, status=status,
                 duration_ms=round(elapsed * 1000, 2), remote=request.remote)
