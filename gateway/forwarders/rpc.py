"""Forward a platform route to its service over RPC, within the request's deadline."""

from __future__ import annotations

from aiohttp import web

from contracts.messages import RpcRequest
from contracts.names import SERVICES
from contracts.routes import Route
from gateway.responses import json_response
from gateway.state import state_of
from gateway.steps.keys import BODY, CALLER, DEADLINE_MS, PARAMS, QUERY, REQUEST_ID


def rpc_handler(route: Route) -> web.Handler:
    assert route.service is not None
    queue = SERVICES[route.service].rpc_queue

    async def forward(request: web.Request) -> web.StreamResponse:
        state = state_of(request)
        call = RpcRequest(
            body=request.get(BODY), query=request.get(QUERY, {}),
            params=request.get(PARAMS, {}), caller=request.get(CALLER),
            request_id=request[REQUEST_ID], client_ip=state.client_address.of(request))
        result = await state.rpc.call(queue, route.operation, call,
                                      deadline_ms=request[DEADLINE_MS])
        if result.status == 204:
            return web.Response(status=204)
        return json_response(result.body, status=result.status)

    return forward
