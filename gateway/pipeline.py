"""The gateway's pipeline, in order. This list is the one place that says what runs when.

Numbers follow DESIGN.md section 6. aiohttp runs middlewares outermost first:
- the event emitter (11) wraps everything so it sees every final response, errors included;
- the error handler (12) must catch what every inner step raises;
- steps 4 and 5 only resolve credentials; the access gate refuses bad ones after the rate
  limiter (7) has counted the request (API.md section 13.1);
- the forwarder (10) is the route's handler. Step 1 (Swagger UI, OpenAPI) is a set of routes
  (gateway/docs.py) served through these steps.

Step 6 (route config resolver) is `gateway.router.route_config_of`, an in-memory lookup
memoised on the request, because steps 4, 7 and 10 all need its answer.
"""

from __future__ import annotations

from aiohttp import web

from gateway.steps.access_log import access_log
from gateway.steps.api_key_validator import api_key_validator
from gateway.steps.authenticator import access_gate, authenticator
from gateway.steps.cors import cors
from gateway.steps.error_handler import error_handler
from gateway.steps.event_emitter import event_emitter
from gateway.steps.path_guard import path_guard
from gateway.steps.rate_limiter import rate_limiter
from gateway.steps.request_context import request_context
from gateway.steps.response_cache import response_cache
from gateway.steps.validator import validator

MIDDLEWARES: tuple[web.Middleware, ...] = (
    request_context,  # 2  X-Request-Id and start time
    cors,  # -  CORS headers; preflights answered here (API.md section 1.2)
    event_emitter,  # 11 request.completed for every response, published off the path
    error_handler,  # 12 the error envelope, around everything below
    path_guard,  # -  no dot segments or encoded slashes, before anything is matched
    access_log,  # 3  one structured line per request
    authenticator,  # 4  Bearer JWT -> caller identity (refusal deferred to the gate)
    api_key_validator,  # 5  X-API-Key -> key of a project (refusal deferred to the gate)
    rate_limiter,  # 7  sliding window per identity and route template
    access_gate,  # 4' refuse bad credentials; role gate
    validator,  # 8  JSON body, query and path ids against the route's schemas
    response_cache,  # 9  GET responses of routes with cacheTTL > 0, single flight
)
