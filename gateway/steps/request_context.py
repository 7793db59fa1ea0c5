"""Step 2: a fresh request id and start time for every request; the id on every response.

Any incoming X-Request-Id is ignored (API.md section 1.2): ids are ours, so a client cannot
make two requests share one in the logs.
"""

from __future__ import annotations

import time
import uuid

import structlog
from aiohttp import web

from contracts.timeutil import now_ms
from gateway.state import STATE
from gateway.steps.keys import DEADLINE_MS, REQUEST_ID, RESPONSE_HEADERS, STARTED


@web.middleware
async def request_context(request: web.Request, handler: web.Handler) -> web.StreamResponse:
    request_id = str(uuid.uuid4())
    request[REQUEST_ID] = request_id
    request[STARTED] = time.perf_counter()
    # one time budget for every internal call this request makes (key check, forwarding)
    request[DEADLINE_MS] = now_ms() + request.app[STATE].settings.rpc_timeout_ms
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(request_id=request_id)
    request[RESPONSE_HEADERS] = {"X-Request-Id": request_id}
    return await handler(request)


async def add_response_headers(request: web.Request, response: web.StreamResponse) -> None:
    """on_response_prepare: the moment before headers leave, for whole and streamed
    responses alike."""
    extra = request.get(RESPONSE_HEADERS)
    if extra:
        response.headers.update(extra)
