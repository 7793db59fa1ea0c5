"""The gateway's pipeline, in order. This list is the one place that says what runs when.

Numbers follow DESIGN.md section 6. aiohttp runs middlewares outermost first, so the error
handler (12), which must catch what every inner step raises, sits right inside the request
context (2) that gives its envelope a request id. The forwarder (10) is the route's handler.

Not yet here, delivered by their own issues (never stubbed as if done):
 1 Swagger UI + OpenAPI (gateway/docs.py) are routes, served through the steps below.
 5 API key validator · 6 route config resolver · 7 rate limiter ·
 9 response cache · 11 event emitter (all in the gateway issue).
"""

from __future__ import annotations

from aiohttp import web

from gateway.steps.access_log import access_log
from gateway.steps.authenticator import authenticator
from gateway.steps.error_handler import error_handler
from gateway.steps.request_context import request_context
from gateway.steps.validator import validator

MIDDLEWARES: tuple[web.Middleware, ...] = (
    request_context,  # 2  X-Request-Id and start time
    error_handler,  # 12 the error envelope, around everything below
    access_log,  # 3  one structured line per request
    authenticator,  # 4  Bearer JWT -> caller identity; role gate
    validator,  # 8  JSON body and query against the route's schemas
)
