"""The monitor's Socket.IO transport: websocket only, unless MONITOR_ALLOW_POLLING is set.

An Engine.IO long-polling session is a series of HTTP requests that must all reach the process
holding the session; behind gateways on several hosts (or several workers on one port) they
do not, and the session breaks in ways a client cannot explain. So a polling request is
refused up front, in the error envelope, saying what to do instead (docs/api.md section 11);
only an operator who runs a sticky load balancer turns polling on.
"""

from __future__ import annotations

from aiohttp import web

from contracts.errors import BadRequest
from gateway.context import RequestContext
from gateway.state import state_of

SOCKET_IO_PREFIX = "/socket.io/"
USE_WEBSOCKET = ("Long-polling is not available on this gateway: connect with the websocket "
                 "transport (Socket.IO client option transports: ['websocket'])")


def monitor_transport(_context: RequestContext, request: web.Request) -> None:
    if (request.path.startswith(SOCKET_IO_PREFIX)
            and request.query.get("transport") == "polling"
            and not state_of(request).settings.monitor_allow_polling):
        raise BadRequest(USE_WEBSOCKET)
