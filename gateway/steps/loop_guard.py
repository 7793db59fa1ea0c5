"""Refuse a request that has already passed through this gateway deployment: the forwarder
adds `Via: 1.1 <GATEWAY_ID>` to every proxied request (RFC 9110 section 7.6.3), so a request
arriving with an entry naming us has come round, directly or through other proxies. Without
this a route config aimed (however indirectly) at the gateway would nest connections until
the route's rate limit stopped it."""

from __future__ import annotations

from aiohttp import web

from contracts.errors import LoopDetected
from gateway.context import RequestContext


def names_us(via_lines: list[str], gateway_id: str) -> bool:
    """True if any entry (`[protocol/]version received-by [comment]`) was received by us."""
    for line in via_lines:
        for entry in line.split(","):
            parts = entry.split()
            if len(parts) >= 2 and parts[1] == gateway_id:
                return True
    return False


def loop_guard(context: RequestContext, request: web.Request) -> None:
    if "Via" not in request.headers:  # most requests: nothing to look at
        return
    if names_us(request.headers.getall("Via"), context.state.settings.gateway_id):
        raise LoopDetected("The request has already passed through this gateway (Via)")
