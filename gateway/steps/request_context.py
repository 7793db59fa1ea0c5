"""Step 2: a fresh request id, start time and deadline for every request, in its context; the
id on every response.

Any incoming X-Request-Id is ignored (API.md section 1.2): ids are ours, so a client cannot
make two requests share one in the logs.
"""

from __future__ import annotations

import time
import uuid

import structlog
from aiohttp import web

from contracts.routes import Route
from contracts.timeutil import now_ms
from gateway.context import CONTEXT, RequestContext
from gateway.route_configs import RouteConfig
from gateway.state import GatewayState


def begin(request: web.Request, state: GatewayState, route: Route | None,
          config: RouteConfig | None, template: str) -> RequestContext:
    request_id = str(uuid.uuid4())
    context = RequestContext(
        request_id=request_id, started=time.perf_counter(),
        # one time budget for every internal call this request makes
        deadline_ms=now_ms() + state.settings.rpc_timeout_ms,
        client_ip=state.client_address.of(request), route=route, config=config,
        template=template, response_headers={"X-Request-Id": request_id})
    request[CONTEXT] = context
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(request_id=request_id)
    return context


async def add_response_headers(request: web.Request, response: web.StreamResponse) -> None:
    """on_response_prepare: the moment before headers leave, for whole and streamed
    responses alike."""
    context = request.get(CONTEXT)
    if context is not None:
        response.headers.update(context.response_headers)
