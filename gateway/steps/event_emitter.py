"""Step 11: one `request.completed` event for every response, errors, 401s and 429s included
(fields of docs/api.md section 7.1).

Publishing only appends to the publisher's buffer; a background task sends batches with
publisher confirms, so the response never waits for the broker.
"""

from __future__ import annotations

import time
from http import HTTPStatus
from urllib.parse import unquote_plus

from aiohttp import web

from contracts.messages import RequestCompleted, RequestError
from contracts.timeutil import iso_of_unix
from gateway.context import RequestContext

# Query parameters whose values are secrets (one-time links, tokens, keys): logged as REDACTED
# (docs/api.md section 7.1), so they never reach the logs, analytics or monitor clients.
SECRET_PARAMETERS = frozenset({
    "token", "access_token", "refresh_token", "id_token", "api_key", "apikey", "key",
    "password", "secret", "client_secret", "code", "state", "signature", "sig",
})


def redacted_path(request: web.Request) -> str:
    path_qs = request.path_qs
    path, question, query = path_qs.partition("?")
    if not question:
        return path_qs
    parts = []
    for pair in query.split("&"):
        name, equals, _value = pair.partition("=")
        if equals and unquote_plus(name).lower() in SECRET_PARAMETERS:
            pair = f"{name}=REDACTED"
        parts.append(pair)
    return f"{path}?{'&'.join(parts)}"


def completed_event(context: RequestContext, request: web.Request, status: int
                    ) -> RequestCompleted:
    config = context.config
    key = context.api_key
    identity = context.identity
    # Attributed to the matched route config's project, else to the key's (docs/api.md 7.1): a
    # key of another project must not move a request out of the route owner's view.
    project_id = config.project_id if config else key.project_id if key else None
    owner_id = config.owner_id if config else key.owner_id if key else None
    error = None
    if status >= 400:
        error = _ERROR_OF.get(status)
        if error is None:
            try:
                reason = HTTPStatus(status).phrase
            except ValueError:
                reason = "Error"
            error = _ERROR_OF[status] = RequestError(
                "CLIENT_ERROR" if status < 500 else "INTERNAL", reason)
    elapsed = context.elapsed_s()
    return RequestCompleted(
        request_id=context.request_id,
        timestamp=iso_of_unix(time.time() - elapsed),
        method=request.method,
        path=redacted_path(request),
        route=context.matched_path,
        status_code=status,
        latency=round(elapsed * 1000, 3),
        ip=context.client_ip,
        user_id=identity.user_id if identity else None,
        api_key_id=key.id if key else None,
        project_id=project_id,
        owner_id=owner_id,
        user_agent=request.headers.get("User-Agent", ""),
        content_length=request.content_length or 0,
        error=error,
        trace_id=context.span.context.trace_id if context.span is not None else None,
    )


_ERROR_OF: dict[int, RequestError] = {}


def event_emitter(context: RequestContext, request: web.Request, status: int) -> None:
    """Only appends to the publisher's buffer: the response never waits for the broker."""
    context.state.publisher.publish(completed_event(context, request, status))
