"""Step 3: one structured line per request, carrying the request id bound in step 2."""

from __future__ import annotations

import time

import structlog
from aiohttp import web

from contracts.errors import ApiError
from gateway.steps.keys import STARTED

log = structlog.get_logger("gateway.access")


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
        log.info(
            "request",
            method=request.method,
            path=request.path,
            status=status,
            duration_ms=round((time.perf_counter() - request[STARTED]) * 1000, 2),
            remote=request.remote,
        )
