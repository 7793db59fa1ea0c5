"""Step 3: one structured line per request (carrying the request id bound in step 2), and the
request count and latency metrics per route template and status."""

from __future__ import annotations

import time

import structlog
from aiohttp import web
from prometheus_client import Histogram

from contracts.errors import ApiError
from gateway.router import matched_template
from gateway.steps.keys import STARTED

log = structlog.get_logger("gateway.access")

REQUEST_SECONDS = Histogram(
    "gateway_request_seconds", "Time from request to response, by route template and status",
    ["route", "status"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)


@web.middleware
async def access_log(request: web.Request, handler: web.Handler) -> web.StreamResponse:
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except (ApiError, web.HTTPException) as exc:
        status = exc.status
        raise
    finally:
        elapsed = time.perf_counter() - request[STARTED]
        REQUEST_SECONDS.labels(matched_template(request), str(status)).observe(elapsed)
        log.info("request", method=request.method, path=request.path, status=status,
                 duration_ms=round(elapsed * 1000, 2), remote=request.remote)
