"""Step 12: every failure becomes the one JSON envelope (docs/api.md section 2).

The pipeline (gateway/pipeline.py) turns what any step or handler raises into this answer;
the number is this step's place in the original order.
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

log = structlog.get_logger(__name__)


def error_response(request: web.Request, request_id: str | None,
                   exc: Exception) -> web.Response:
    """The envelope for what a step or handler raised (an error, not a redirect); called in
    its `except` block."""
    if isinstance(exc, ApiError):
        error = exc
    elif isinstance(exc, web.HTTPException):
        error = _from_http_exception(exc)
    else:
        log.exception("unhandled error", method=request.method, path=request.path)
        error = InternalError()
    return render(error, request_id)


def render(error: ApiError, request_id: str | None) -> web.Response:
    body = error_envelope(error, request_id)
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
