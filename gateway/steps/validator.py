"""Step 8: parse the JSON body and check body and query against the route's schemas.

Later steps and the forwarder read the cleaned values from the request, so what reaches a
service is exactly what the schema lets through (unknown fields dropped).
"""

from __future__ import annotations

from aiohttp import web

from contracts.validation import load, load_list
from gateway.body import read_json
from gateway.router import route_of
from gateway.steps.keys import BODY, PARAMS, QUERY

BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


@web.middleware
async def validator(request: web.Request, handler: web.Handler) -> web.StreamResponse:
    route = route_of(request)
    if route is not None:
        body = await read_json(request) if request.method in BODY_METHODS else None
        if route.body is not None and route.body_max_items is not None:
            body = load_list(route.body(), body, "body", route.body_max_items)
        elif route.body is not None:
            body = load(route.body(), body, "body")
        request[BODY] = body
        query = dict(request.query)
        if route.query is not None:
            query = load(route.query(), query, "query")
        request[QUERY] = query
        params = dict(request.match_info)
        if route.params is not None:
            params = load(route.params(), params, "params")
        request[PARAMS] = params
    return await handler(request)
