"""What the gateway knows about one request, in one typed object (the ground floor: the steps,
the router and the forwarders read it; it imports none of them).

The pipeline creates it when a request arrives (gateway/pipeline.py) and keeps it on the
request under one key. Each step fills in its slots; the `request.completed` event, the
access log line and the forwarders read them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiohttp import web

from contracts.errors import ApiError
from contracts.identity import Caller, Identity
from contracts.routes import Route
from contracts.spans import Span
from gateway.api_keys import ValidKey
from gateway.route_configs import RouteConfig

if TYPE_CHECKING:  # the state imports what the context does: no cycle at run time
    from gateway.state import GatewayState


@dataclass(frozen=True, slots=True)
class Who:
    """Who the caller is, for every step that keys on it (rate limiter, response cache):
    `apikey`, `user` or `ip`, with the id."""
    kind: str
    id: str

    def __str__(self) -> str:
        return f"{self.kind}:{self.id}"


@dataclass(slots=True)
class RequestContext:
    request_id: str
    # time.perf_counter() when the request entered the gateway
    started: float
    # absolute Unix ms after which nobody waits for the answer (key check, forwarding)
    deadline_ms: int
    client_ip: str
    # the platform table's entry the request matched, and the active route config that
    # applies to it (docs/api.md section 6.4); both None for an unmatched request
    route: Route | None
    config: RouteConfig | None
    # method and matched template, e.g. `GET /api/v1/projects/:id`, or `unmatched`: the
    # rate-limit bucket and the metrics label (computed once per plan)
    template: str
    # headers every response to this request carries, errors and streamed responses
    # included (request id, rate limit, CORS); added when the response is prepared
    response_headers: dict[str, str]
    # the gateway's state, looked up once per request (through request.app it is three
    # calls each time a step needs it)
    state: GatewayState
    # credentials: a valid Bearer token, a valid API key; a bad one is remembered and
    # refused at the access gate, after the rate limiter has counted the request
    identity: Identity | None = None
    api_key: ValidKey | None = None
    auth_error: ApiError | None = None
    # validated (or, without a schema, parsed) body, query and path parameters
    body: Any = None
    query: dict[str, Any] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    # set by the response cache: the proxy hands back whole bodies up to this many bytes
    buffer_up_to: int = 0
    # the gateway's span of this request (gateway.steps.trace_context): its ids are what
    # the request's log entry, log lines, RPCs and upstream call carry; None for the
    # exempt traffic, which is not traced
    span: Span | None = None

    @property
    def caller(self) -> Caller | None:
        return self.identity.caller if self.identity is not None else None

    @property
    def matched_path(self) -> str | None:
        """The template the request matched: its route config's, else the platform
        route's (docs/api.md section 13.1); None when it matched neither."""
        if self.config is not None:
            return self.config.path
        return self.route.path if self.route is not None else None

    def who(self) -> Who:
        """The one answer to "who is calling" (docs/api.md section 13.1), first that applies: a
        valid API key of the matched route config's project (a key gives nothing on any other
        route), a valid Bearer token, the client address."""
        key = self.api_key
        if key is not None and self.config is not None and \
                key.project_id == self.config.project_id:
            return Who("apikey", key.id)
        if self.identity is not None:
            return Who("user", self.identity.user_id)
        return Who("ip", self.client_ip)

    def elapsed_s(self) -> float:
        return time.perf_counter() - self.started


CONTEXT = web.RequestKey("gateway_context", RequestContext)


def context_of(request: web.Request) -> RequestContext:
    return request[CONTEXT]
