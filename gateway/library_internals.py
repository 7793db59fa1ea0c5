"""Every use the gateway makes of a library's non-public API, in one place.

Each one is here because the library has no public way to do what the gateway needs, and
tests/unit/test_library_internals.py checks that each is still there as used: after an
upgrade of aiohttp or redis-py it fails first, naming what changed, instead of a request
failing in production or, worse, something silently no longer happening.

aiohttp
- `set_route_handler`: writes a route's `_handler`. The pipeline (gateway.pipeline.install)
  wraps the handler of every route registered on the application, the static files' and the
  Socket.IO transport's included, after they are registered; aiohttp has no setter. A
  middleware would do it publicly, but its chain adds coroutine frames that every resumption
  of every request walks through.
- `set_server_software`: writes `web_response.SERVER_SOFTWARE`, the module global whose value
  aiohttp puts in `Server` of every answer without one (`Python/3.x aiohttp/3.x`); the gateway
  names no versions (docs/api.md section 6.4). aiohttp has no setting for it.
- `ErrorAnsweringRunner`: a `web.AppRunner` whose connections answer what aiohttp answers
  itself (requests its parser refuses, exceptions that escape a handler) with a response of
  the runner's `answer_error`, the gateway's JSON envelope (gateway.server_adapter). aiohttp
  asks the connection's `web_protocol.RequestHandler.handle_error` for those answers and has
  no parameter for another RequestHandler class, so the runner overrides
  `web.AppRunner._make_server` to build a `web.Server` whose `__call__` makes the connections
  of a subclass, from the server's `_loop` and `_kwargs` as aiohttp's own `__call__` does.

redis-py
- `redis_error_of`: `redis._parsers.BaseParser.parse_error`, redis-py's mapping of an error
  reply (`NOSCRIPT ...`) to its exception class (NoScriptError...). gateway.redis_batch parses
  replies with hiredis itself and hands it this, so callers get the exceptions redis-py's own
  client raises.
- `cluster_startup_nodes`: `RedisCluster.nodes_manager.startup_nodes`, the addresses a Cluster
  client was given. gateway.redis_batch asks them for the slot map when none of the nodes it
  knows answers (before the client's first command, `get_nodes()` is still empty).
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from aiohttp import web, web_protocol, web_response
from redis._parsers import BaseParser
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import RedisError

# --- aiohttp: routes ------------------------------------------------------------------------


# what a route runs: a coroutine function (aiohttp wraps anything else in one when the route is
# added, and stores it so)
RouteHandler = Callable[[web.Request], Coroutine[Any, Any, web.StreamResponse]]


def set_route_handler(route: web.AbstractRoute, handler: RouteHandler) -> None:
    """From now on `route` runs `handler` (`route.handler` reads it back)."""
    route._handler = handler


# --- aiohttp: the Server header ---------------------------------------------------------------


def set_server_software(name: str) -> None:
    """What aiohttp names in `Server` of every answer it prepares without one, process-wide."""
    # aiohttp reads the global of web_response (imported there from aiohttp.http) on every
    # answer; the module does not re-export it, hence the attribute mypy does not know
    web_response.SERVER_SOFTWARE = name  # type: ignore[attr-defined]


# --- aiohttp: answers aiohttp gives itself ----------------------------------------------------

# (request, status aiohttp chose, the exception if any, aiohttp's message) -> the answer, or
# None for aiohttp's own
ErrorAnswer = Callable[[web.BaseRequest, int, BaseException | None, str | None],
                       web.StreamResponse | None]


class ErrorAnsweringRunner(web.AppRunner):
    """web.AppRunner whose connections ask `answer_error` first for each answer aiohttp gives
    itself, while nothing of an answer has been written yet."""

    def answer_error(self, request: web.BaseRequest, status: int, exc: BaseException | None,
                     message: str | None) -> web.StreamResponse | None:
        return None

    async def _make_server(self) -> web.Server:
        # the application's own start-up and the server's arguments, as aiohttp makes them
        made = await super()._make_server()
        return _Server(self.answer_error, made.request_handler,
                       request_factory=made.request_factory,
                       handler_cancellation=made.handler_cancellation, loop=made._loop,
                       **made._kwargs)


class _Server(web.Server):
    def __init__(self, answer_error: ErrorAnswer, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._answer_error = answer_error

    def __call__(self) -> web_protocol.RequestHandler:
        return _RequestHandler(self, self._answer_error, loop=self._loop, **self._kwargs)


class _RequestHandler(web_protocol.RequestHandler):
    def __init__(self, manager: web.Server, answer_error: ErrorAnswer, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._answer_error = answer_error

    def handle_error(self, request: web.BaseRequest, status: int = 500,
                     exc: BaseException | None = None, message: str | None = None
                     ) -> web.StreamResponse:
        if request.writer.output_size == 0:  # later, aiohttp drops the connection
            answer = self._answer_error(request, status, exc, message)
            if answer is not None:
                return answer
        return super().handle_error(request, status, exc, message)


# --- redis-py ---------------------------------------------------------------------------------

# an error reply's text -> the exception redis-py raises for it
redis_error_of: Callable[[str], RedisError] = BaseParser.parse_error


def cluster_startup_nodes(cluster: RedisCluster) -> list[tuple[str, int]]:
    """The addresses `cluster` was created with."""
    return [(node.host, int(node.port))
            for node in cluster.nodes_manager.startup_nodes.values()]
