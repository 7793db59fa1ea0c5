"""Registers every route of the table on the aiohttp router, and finds what a request matched:
its table entry and the route config that applies to it (step 6)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from aiohttp import web
from aiohttp.typedefs import Handler

from contracts import operations as op
from contracts.operations import Operation
from contracts.routes import Route
from gateway.console import PATHS as CONSOLE_PATHS
from gateway.console import PREFIX as CONSOLE_PREFIX
from gateway.console import html_to_console
from gateway.forwarders.rpc import rpc_handler
from gateway.oauth_page import PATHS as SIGNED_IN_PAGE_PATHS
from gateway.route_configs import RouteConfig, RouteConfigTable
from gateway.sign_in_binding import binding_checked, binding_started, code_checked

ROUTE_OF = web.AppKey("route_of", dict)
# wrappers of particular routes: a sign-in stays in the browser that began it; a mailed link
# opened in a browser goes to the console's page
WRAPPERS = {op.OAUTH_INITIATE: binding_started, op.OAUTH_CALLBACK: binding_checked,
            op.OAUTH_EXCHANGE: code_checked,
            op.AUTH_VERIFY_EMAIL: html_to_console("verify-email")}


def add_routes(
    app: web.Application, routes: Iterable[Route], local: Mapping[Operation, Handler]
) -> None:
    """`local` maps the operations the gateway serves itself to their handlers."""
    route_of: dict[object, Route] = {}
    for route in routes:
        if route.service is None:
            handler = local.get(route.operation)
            if handler is None:
                raise LookupError(f"no gateway handler for {route.template}")
        else:
            handler = rpc_handler(route)
        if route.operation in WRAPPERS:
            handler = WRAPPERS[route.operation](handler)
        registered = app.router.add_route(route.method, route.aiohttp_path, handler)
        route_of[registered] = route
    app[ROUTE_OF] = route_of


CATCH_ALL = "upstream_catch_all"

# Traffic that is neither rate limited nor logged (docs/api.md sections 7.1 and 13.1): CORS
# preflights, the Socket.IO transport, GET /health, /livez and /readyz (probes every few
# seconds would fill the logs and the address tier of a load balancer) and the static files
# of the API docs, of the console, of the monitor page and of the page a provider sign-in
# lands on (a browser loads several per page view).
EXEMPT_PREFIXES = ("/socket.io/", "/api-docs/", "/monitor/", CONSOLE_PREFIX)
EXEMPT_PATHS = frozenset({"/api-docs", "/monitor"}) | SIGNED_IN_PAGE_PATHS | CONSOLE_PATHS
PROBE_PATHS = frozenset({"/health", "/livez", "/readyz"})  # exempt for GET and HEAD


def is_preflight(request: web.Request) -> bool:
    """A real CORS preflight; any other OPTIONS counts like any request."""
    return request.method == "OPTIONS" and "Origin" in request.headers and \
        "Access-Control-Request-Method" in request.headers


def is_exempt(request: web.Request) -> bool:
    if request.method == "OPTIONS":
        return is_preflight(request)
    path = request.path
    if path in PROBE_PATHS:
        return request.method in ("GET", "HEAD")
    return path in EXEMPT_PATHS or path.startswith(EXEMPT_PREFIXES)


def matched(request: web.Request, configs: RouteConfigTable
            ) -> tuple[Route | None, RouteConfig | None]:
    """The table entry the request matched (None: a 404 is coming, or a route config's
    request on the catch-all) and the active route config that applies (in memory).

    A config never reaches past its kind: an upstream config only applies to requests no
    platform or gateway route answers (so no template can shadow `/api/v1/...`, `/health`
    or `/api-docs`), a service config only to a platform route (elsewhere it is inert)."""
    aiohttp_route = getattr(request.match_info, "route", None)
    route = request.app[ROUTE_OF].get(aiohttp_route)
    config = configs.match(request.method, request.path)
    if config is not None:
        if config.upstream_url is not None:
            if getattr(aiohttp_route, "name", None) != CATCH_ALL:
                config = None
        elif route is None:
            config = None
    return route, config
