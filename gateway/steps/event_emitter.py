"""Step 11: one `request.completed` event for every response, errors, 401s and 429s included
(fields of API.md section 7.1).

Publishing only appends to the publisher's buffer; a background task sends batches with
publisher confirms, so the response never waits for the broker.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from http import HTTPStatus

from aiohttp import web

from contracts.messages import RequestCompleted, RequestError
from contracts.timeutil import to_iso
from gateway.router import matched_path, route_config_of
from gateway.state import state_of
from gateway.steps.keys import API_KEY, CALLER, REQUEST_ID, STARTED


@web.middleware
async def event_emitter(request: web.Request, handler: web.Handler) -> web.StreamResponse:
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:  # redirects and the like pass through as exceptions
        status = exc.status
        raise
    finally:
        state_of(request).publisher.publish(completed_event(request, status))


def completed_event(request: web.Request, status: int) -> RequestCompleted:
    started = request[STARTED]
    config = route_config_of(request)
    caller = request.get(CALLER)
    key = request.get(API_KEY)
    # Attributed to the key's project, else to the matched route config's (API.md 7.1).
    project_id = key["projectId"] if key else config.project_id if config else None
    owner_id = key["ownerId"] if key else config.owner_id if config else None
    error = None
    if status >= 400:
        try:
            reason = HTTPStatus(status).phrase
        except ValueError:
            reason = "Error"
        error = RequestError("CLIENT_ERROR" if status < 500 else "INTERNAL", reason)
    elapsed = time.perf_counter() - started
    return RequestCompleted(
        request_id=request[REQUEST_ID],
        timestamp=to_iso(datetime.fromtimestamp(time.time() - elapsed, UTC)),
        method=request.method,
        path=request.path_qs,
        route=matched_path(request),
        status_code=status,
        latency=round(elapsed * 1000, 3),
        ip=state_of(request).client_address.of(request),
        user_id=caller.user_id if caller else None,
        api_key_id=key["id"] if key else None,
        project_id=project_id,
        owner_id=owner_id,
        user_agent=request.headers.get("User-Agent", ""),
        content_length=request.content_length or 0,
        error=error,
    )
