"""Registers every route of the table on the aiohttp router, with the handler that serves it."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from aiohttp import web

from contracts.routes import Route
from gateway.forwarders.rpc import rpc_handler


def add_routes(
    app: web.Application, routes: Iterable[Route], local: Mapping[str, web.Handler]
) -> None:
    """`local` maps the operations the gateway serves itself to their handlers."""
    for route in routes:
        if route.service is None:
            handler = local.get(route.operation)
            if handler is None:
                raise LookupError(f"no gateway handler for {route.template}")
        else:
            handler = rpc_handler(route)
        app.router.add_route(route.method, route.aiohttp_path, handler)
