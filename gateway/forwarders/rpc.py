"""Forward a platform route to its service over RPC, within the request's deadline."""

from __future__ import annotations

from aiohttp import web
from aiohttp.typedefs import Handler

from contracts.messages import RpcRequest
from contracts.names import SERVICES
from contracts.operations import Redirect
from contracts.routes import Route
from gateway.answers import AnswerCheck
from gateway.context import context_of
from gateway.responses import json_response, redirect_response
from gateway.state import state_of


def rpc_handler(route: Route) -> Handler:
    assert route.service is not None
    queue = SERVICES[route.service].rpc_queue
    check = AnswerCheck(route)
    # A GET changes nothing, so one whose broker connection dropped mid-call may be asked
    # again (on the node the connection reached); any other call may have been carried out.
    idempotent = route.method == "GET" and not route.operation.once
    # answers of a sign-in's steps carry one-time values: never kept by a cache
    headers = {"Cache-Control": "no-store"} if route.operation.redirects else None

    async def forward(request: web.Request) -> web.StreamResponse:
        context = context_of(request)
        call = RpcRequest(
            body=context.body, query=context.query, params=context.params,
            caller=context.caller, request_id=context.request_id, client_ip=context.client_ip)
        state = state_of(request)
        result = await state.rpc.call(queue, route.operation, call,
                                      deadline_ms=context.deadline_ms, idempotent=idempotent)
        if result.status == 204:
            return web.Response(status=204)
        if route.operation.redirects and result.status == Redirect.STATUS:
            return redirect_response(result.body["location"])
        if state.settings.check_answers:
            check(result.status, result.body)
        return json_response(result.body, status=result.status, headers=headers)

    return forward
