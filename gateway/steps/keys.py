"""Typed keys of the values that steps leave on the request for later steps."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from contracts.identity import Caller

REQUEST_ID = web.RequestKey("request_id", str)
# time.perf_counter() when the request entered the gateway
STARTED = web.RequestKey("started", float)
# absolute Unix ms after which nobody waits for the answer
DEADLINE_MS = web.RequestKey("deadline_ms", int)
# the authenticated identity, when there is one
CALLER = web.RequestKey("caller", Caller)
# the validated (or, without a schema, parsed) JSON body and query
BODY = web.RequestKey("body", object)
QUERY = web.RequestKey("query", dict[str, Any])
PARAMS = web.RequestKey("params", dict[str, Any])
CLIENT_IP = web.RequestKey("client_ip", str)
# a credential that failed in steps 4/5: refused at the access gate, after the rate limiter
# has counted the request under the client's address
AUTH_ERROR = web.RequestKey("auth_error", Exception)
# headers that every response to this request carries, errors and streamed responses
# included (request id, rate limit, CORS); added when the response is prepared
RESPONSE_HEADERS = web.RequestKey("response_headers", dict[str, str])
# the valid API key of the request ({id, projectId, ownerId, ...}), when there is one
API_KEY = web.RequestKey("api_key", dict[str, Any])
IDENTITY = web.RequestKey("identity", object)  # contracts.identity.Identity
# the active route config matching the request (gateway.route_configs.RouteConfig), if any
ROUTE_CONFIG = web.RequestKey("route_config", object)
# set by the response cache: the proxy hands back whole bodies up to this many bytes (to be
# stored); larger ones stream as usual
BUFFER_UP_TO = web.RequestKey("buffer_up_to", int)
