"""The gateway's pipeline, in order. This module is the one place that says what runs when.

Numbers follow docs/architecture.md section 6. Like Kong and APISIX, the gateway does not walk every
step for every request: `plan_for` decides once per route (and per route config applying
to it) which steps apply, in this order, and the one handler every route runs through
(`install`) calls just those as plain functions; a step returns something to wait for only
when it must wait (a key lookup, the limiter's Redis round trip, reading a body). Plans are
memoised and derived again whenever the route config snapshot changes.

 2  request context: request id, start time, deadline, client address (RequestContext)
 -  a real CORS preflight is answered at once, neither counted nor logged
 2' trace (not for the exempt traffic): the caller's W3C traceparent read (or a new trace
    started) and the gateway's span opened, its trace id bound for every log line of the
    request, before anything logs; it ends after step 11, with the answer's status
 -  CORS headers
 6  route config resolver: in memory, before the plan is chosen (gateway.router.matched)
 -  path guard: no dot segments or encoded slashes, before anything looks at the path
 -  monitor transport (exempt traffic only): Socket.IO long-polling refused (400) unless
    MONITOR_ALLOW_POLLING, before the Socket.IO server sees the request
 -  loop guard: a request whose `Via` names this deployment came round (508), refused
    before it costs a credential lookup or a limiter round trip
 4  authenticator: Bearer JWT -> identity; only on routes that take one (public platform
    routes ignore the header); a bad token is remembered, not refused yet. Requests for an
    upstream config or for no route at all read a token optionally: a valid one identifies
    the caller (their 404s are theirs), a bad one is ignored unless the config requires auth
 5  API key: X-API-Key -> key of a project; a bad key is remembered, not refused yet
 7  rate limiter: sliding window per identity and route template (docs/api.md section 13.1);
    it counts requests with bad credentials under their address, so it runs before ...
 4' ... the access gate: bad credentials refused, then the route's role gate, the alert
    bridge's secret, or an authRequired upstream's key/owner check
 8  validator: JSON body, query and path ids against the platform route's schemas
 9  response cache: around the handler, on GET routes whose config has cacheTTL > 0
10  forwarder: the route's handler (RPC to a service, or the upstream proxy)
 3  access log line and latency metric, for every answer
11  `request.completed` event, for every answer except the exempt traffic
12  error envelope: whatever a step or handler raises becomes the one JSON error answer
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web
from aiohttp.typedefs import Handler

from contracts.readiness import Readiness
from contracts.routes import Route
from gateway.context import RequestContext
from gateway.health import READINESS
from gateway.library_internals import RouteHandler, set_route_handler
from gateway.route_configs import RouteConfig
from gateway.router import is_exempt, is_preflight, matched
from gateway.state import STATE
from gateway.steps.access_log import access_log
from gateway.steps.api_key_validator import api_key_validator
from gateway.steps.authenticator import (
    MINIMUM_ROLES,
    authenticate,
    authenticate_optionally,
    refuse_bad_credentials,
    role_gate,
    upstream_gate,
)
from gateway.steps.cors import cors, preflight_answer
from gateway.steps.error_handler import error_response
from gateway.steps.event_emitter import event_emitter
from gateway.steps.loop_guard import loop_guard
from gateway.steps.monitor_transport import monitor_transport
from gateway.steps.path_guard import path_guard
from gateway.steps.rate_limiter import rate_limiter
from gateway.steps.request_context import begin
from gateway.steps.response_cache import response_cache
from gateway.steps.trace_context import close_trace, open_trace
from gateway.steps.validator import validator_for

Step = Callable[[RequestContext, web.Request], Awaitable[None] | None]


@dataclass(frozen=True, slots=True)
class Plan:
    template: str  # method and matched template, or `unmatched`
    counted: bool  # rate limited, and reported as `request.completed`
    steps: tuple[Step, ...]
    cached: bool  # step 9 around the handler


def plan_for(route: Route | None, config: RouteConfig | None, *, exempt: bool) -> Plan:
    """The steps that apply to requests that matched `route` (a platform table entry) and
    `config` (the route config applying to them), in the pipeline's order."""
    upstream = config if config is not None and config.upstream_url is not None else None
    method = route.method if route is not None else config.method if config else None
    path = config.path if config is not None else route.path if route is not None else None
    template = f"{method} {path}" if path is not None else "unmatched"
    steps: list[Step] = [path_guard]
    if exempt:  # the docs, the monitor page, the Socket.IO transport, health and probes
        steps.append(monitor_transport)  # no long-polling unless allowed
        if route is not None:
            steps.append(validator_for(route))
        return Plan(template, False, tuple(steps), False)
    steps.append(loop_guard)
    if route is not None and route.access in MINIMUM_ROLES:
        steps.append(authenticate)  # 4
    elif route is None:
        # an upstream config's request, or one nothing answers (a 404 is coming): a valid
        # token still says whose request it is, for their tier, logs, analytics and monitor
        steps.append(authenticate_optionally)  # 4
    steps += [api_key_validator, rate_limiter, refuse_bad_credentials]  # 5, 7, 4'
    if route is not None:
        gate = role_gate(route)
        if gate is not None:
            steps.append(gate)  # 4'
        steps.append(validator_for(route))  # 8
    elif upstream is not None and upstream.auth_required:
        steps.append(upstream_gate)  # 4'
    cached = config is not None and config.method == "GET" and bool(config.cache_ttl)
    return Plan(template, True, tuple(steps), cached)


class Plans:
    """Plans by aiohttp route and applying route config, derived again when the route
    config snapshot changes."""

    def __init__(self) -> None:
        self._memo: dict[tuple[object, int, bool], Plan] = {}
        self._version = -1

    def of(self, request: web.Request, route: Route | None, config: RouteConfig | None,
           version: int) -> Plan:
        if version != self._version:  # the configs the plans were derived from changed
            self._memo.clear()
            self._version = version
        exempt = is_exempt(request)
        # the snapshot holds every config while its version lasts: their ids are stable
        key = (getattr(request.match_info, "route", None), id(config), exempt)
        plan = self._memo.get(key)
        if plan is None:
            plan = self._memo[key] = plan_for(route, config, exempt=exempt)
        return plan


PLANS = web.AppKey("plans", Plans)


def install(app: web.Application) -> None:
    """Every route's handler runs inside the pipeline. Not an aiohttp middleware: its chain
    (and aiohttp's own current-app middleware that comes with it) adds coroutine frames that
    every resumption of every request walks through."""
    readiness = app[READINESS]
    for route in app.router.routes():
        set_route_handler(route, _through_pipeline(route.handler, readiness))


def _through_pipeline(handler: Handler, readiness: Readiness) -> RouteHandler:
    # While the process drains (SIGTERM), every answer closes its connection: a keep-alive
    # client reconnects, through the load balancer, to a process that stays, and no idle
    # connection is left for the listener's closing to cut under a request just sent.
    async def pipeline(request: web.Request) -> web.StreamResponse:
        app = request.app  # a property that walks the match info: once
        state = app[STATE]
        configs = state.route_configs
        route, config = matched(request, configs)  # 6
        plan = app[PLANS].of(request, route, config, configs.version)
        context = begin(request, state, route, config, plan.template)  # 2
        if is_preflight(request):
            return preflight_answer(request)
        traced = None
        status = 500
        try:  # from here every failure is answered in the envelope, logged and counted
            if plan.counted:
                traced = open_trace(context, request)  # 2'
            cors(context, request)
            for step in plan.steps:  # plain calls; await only what must be waited for
                waiting = step(context, request)
                if waiting is not None:
                    await waiting
            if plan.cached:
                response = await response_cache(context, request, handler)  # 9
            else:
                response = await handler(request)  # 10
            status = response.status
            if readiness.draining:
                response.force_close()
            return response
        except Exception as exc:
            if isinstance(exc, web.HTTPException) and exc.status < 400:
                status = exc.status
                raise  # redirects are answers, not errors
            response = error_response(request, context.request_id, exc)  # 12
            status = response.status
            if readiness.draining:
                response.force_close()
            return response
        finally:
            access_log(context, request, status)  # 3
            if plan.counted:
                event_emitter(context, request, status)  # 11
            if traced is not None:
                close_trace(context, traced, status)  # 2'

    return pipeline
