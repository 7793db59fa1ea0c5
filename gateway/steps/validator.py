"""Step 8: parse the JSON body and check body and query against the route's schemas.

Later steps and the forwarder read the cleaned values from the context in their wire form
(`RequestModel.wire()`), so what reaches a service is exactly what the model lets through
(unknown fields dropped, fields left out still left out).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from contracts.routes import Route
from contracts.validation import load, load_list
from gateway.body import read_json
from gateway.context import RequestContext

BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})

Step = Callable[[RequestContext, web.Request], Awaitable[None] | None]


def validator_for(route: Route) -> Step:
    """The validation step of one platform route: it waits for nothing unless the route's
    method carries a body."""

    def check_query_and_params(context: RequestContext, request: web.Request) -> None:
        query = dict(request.query)
        if route.query is not None:
            query = load(route.query, query, "query").wire()
        context.query = query
        params = dict(request.match_info)
        if route.params is not None:
            params = load(route.params, params, "params").wire()
        context.params = params

    if route.method not in BODY_METHODS:
        return check_query_and_params

    async def check_all(context: RequestContext, request: web.Request) -> None:
        body = await read_json(request)
        if route.body is not None and route.body_max_items is not None:
            body = [item.wire() for item in
                    load_list(route.body, body, "body", route.body_max_items)]
        elif route.body is not None:
            body = load(route.body, body, "body").wire()
        context.body = body
        check_query_and_params(context, request)

    return check_all
