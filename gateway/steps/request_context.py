"""Step 2: a fresh request id, start time and deadline for every request, in its context; the
id on every response.

Any incoming X-Request-Id is ignored (docs/api.md section 1.2): ids are ours, so a client cannot
make two requests share one in the logs.
"""

from __future__ import annotations

import random
import time

import structlog
from aiohttp import web

from contracts.routes import Route
from contracts.timeutil import now_ms
from gateway.context import CONTEXT, RequestContext
from gateway.route_configs import RouteConfig
from gateway.state import GatewayState


def new_request_id() -> str:
    """A UUID v4 from the process's PRNG: ids must be unique, not secret, and os.urandom
    costs a system call per request (`random` is reseeded in forked workers)."""
    bits = random.getrandbits(128) & ~(0xF000 << 64) & ~(0xC000 << 48)
    digits = f"{bits | (0x4000 << 64) | (0x8000 << 48):032x}"
    return f"{digits[:8]}-{digits[8:12]}-{digits[12:16]}-{digits[16:20]}-{digits[20:]}"


def begin(request: web.Request, state: GatewayState, route: Route | None,
          config: RouteConfig | None, template: str) -> RequestContext:
    request_id = new_request_id()
    context = RequestContext(
        request_id=request_id, started=time.perf_counter(),
        # one time budget for every internal call this request makes
        deadline_ms=now_ms() + state.settings.rpc_timeout_ms,
        client_ip=state.client_address.of(request), route=route, config=config,
        template=template, response_headers={"X-Request-Id": request_id}, state=state)
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
