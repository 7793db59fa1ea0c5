"""Step 12: every failure becomes the one JSON envelope (API.md section 2).

In aiohttp a middleware catches what the steps inside it raise, so this step sits just inside
the request context and wraps all the others; its number is its place in the original order.
"""

from __future__ import annotations

import structlog
from aiohttp import web

from contracts.errors import (
    ApiError,
    BadRequest,
    InternalError,
    NotFound,
    PayloadTooLarge,
)
from contracts.errors import envelope as error_envelope
from gateway.responses import json_response
from gateway.steps.keys import REQUEST_ID

log = structlog.get_logger(__name__)


@web.middleware
async def error_handler(request: web.Request, handler: web.Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as exc:
        error = exc
    except web.HTTPException as exc:
        if exc.status < 400:
            raise  # redirects are answers, not errors
        error = _from_http_exception(exc)
    except Exception:
        log.exception("unhandled error", method=request.method, path=request.path)
        error = InternalError()
    return render(request, error)


def render(request: web.Request, error: ApiError) -> web.Response:
    body = error_envelope(error, request.get(REQUEST_ID))
    headers = dict(error.headers)
    if error.retry_after is not None and error.status == 429:
        headers["Retry-After"] = str(error.retry_after)
    return json_response(body, status=error.status, headers=headers)


def _from_http_exception(exc: web.HTTPException) -> ApiError:
    if exc.status in (404, 405):
        return NotFound("Route not found")
    if exc.status == 413:
        return PayloadTooLarge()
    if exc.status == 400:
        return BadRequest(exc.text or "Bad request")
    generic = ApiError(exc.reason)
    generic.status = exc.status
    generic.code = "BAD_REQUEST" if exc.status < 500 else "INTERNAL_ERROR"
    return generic
