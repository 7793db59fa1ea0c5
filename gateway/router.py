"""Registers every route of the table on the aiohttp router, and finds a request's table entry."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from aiohttp import web
from aiohttp.abc import AbstractMatchInfo

from contracts.routes import Route
from gateway.forwarders.rpc import rpc_handler
from gateway.route_configs import RouteConfig
from gateway.state import STATE
from gateway.steps.keys import ROUTE_CONFIG

ROUTE_OF = web.AppKey("route_of", dict)


def add_routes(
    app: web.Application, routes: Iterable[Route], local: Mapping[str, web.Handler]
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
        registered = app.router.add_route(route.method, route.aiohttp_path, handler)
        route_of[registered] = route
    app[ROUTE_OF] = route_of


CATCH_ALL = "upstream_catch_all"

# Traffic that is neither rate limited nor logged (API.md sections 7.1 and 13.1): CORS
# preflights, the Socket.IO transport, GET /health and the static files of the API docs and
# of the monitor page (a browser loads several per page view).
EXEMPT_PREFIXES = ("/socket.io/", "/api-docs/", "/monitor/")
EXEMPT_PATHS = frozenset({"/api-docs", "/monitor"})


def is_exempt(request: web.Request) -> bool:
    if request.method == "OPTIONS":  # a real CORS preflight only; any other OPTIONS counts
        return "Origin" in request.headers and \
            "Access-Control-Request-Method" in request.headers
    path = request.path
    if path == "/health":
        return request.method in ("GET", "HEAD")
    return path in EXEMPT_PATHS or path.startswith(EXEMPT_PREFIXES)


def route_config_of(request: web.Request) -> RouteConfig | None:
    """Step 6: the active route config for this method and path (in memory, memoised).

    A config never reaches past its kind: an upstream config only applies to requests no
    platform or gateway route answers (so no template can shadow `/api/v1/...`, `/health`
    or `/api-docs`), a service config only to a platform route (elsewhere it is inert)."""
    if ROUTE_CONFIG not in request:
        config = request.app[STATE].route_configs.match(request.method, request.path)
        if config is not None:
            on_catch_all = getattr(request.match_info.route, "name", None) == CATCH_ALL
            if config.upstream_url is not None and not on_catch_all:
                config = None
            elif config.upstream_url is None and route_of(request) is None:
                config = None
        request[ROUTE_CONFIG] = config
    return request[ROUTE_CONFIG]  # type: ignore[return-value]


def matched_path(request: web.Request) -> str | None:
    """The template the request matched: its route config's, else the platform route's
    (API.md section 13.1); None when it matched neither."""
    config = route_config_of(request)
    if config is not None:
        return config.path
    route = route_of(request)
    return route.path if route is not None else None


def matched_template(request: web.Request) -> str:
    """Method and matched template, e.g. `GET /api/v1/projects/:id`, or `unmatched`: the
    rate-limit bucket and the metrics label."""
    path = matched_path(request)
    return f"{request.method} {path}" if path is not None else "unmatched"


def route_of(request: web.Request) -> Route | None:
    """The table entry the request matched; None when it matched nothing (a 404 is coming)."""
    match_info: AbstractMatchInfo = request.match_info
    return request.app[ROUTE_OF].get(getattr(match_info, "route", None))
