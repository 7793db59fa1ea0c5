"""gateway.library_internals: the non-public API of aiohttp and redis-py it relies on is still
there and still does what the gateway needs. After an upgrade of either library these fail
first, each naming the library, its version and what changed."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncIterator, Callable

import aiohttp
import pytest
import redis
from aiohttp import web, web_protocol, web_response
from aiohttp.test_utils import TestClient, TestServer
from redis.exceptions import NoScriptError, ResponseError

from gateway import library_internals
from gateway.library_internals import (
    ErrorAnsweringRunner,
    redis_error_of,
    set_route_handler,
    set_server_software,
)


def still(condition: bool, library: str, change: str) -> None:
    """Fail with what changed and where the gateway depends on it."""
    version = {"aiohttp": aiohttp.__version__, "redis-py": redis.__version__}[library]
    assert condition, (f"{library} {version} changed: {change}. gateway/library_internals.py "
                       "relies on it (its docstring says why); adapt it to the new version.")


def source_of(function: Callable[..., object]) -> str:
    return inspect.getsource(function)


async def hello(_request: web.Request) -> web.Response:
    return web.Response(text="hello")


@pytest.fixture
async def client() -> AsyncIterator[TestClient[web.Request, web.Application]]:
    app = web.Application()
    app.router.add_get("/hello", hello)
    async with TestClient(TestServer(app)) as test_client:
        yield test_client


# --- aiohttp: a route's handler ---------------------------------------------------------------


def test_aiohttp_routes_still_keep_their_handler_in_handler_attribute() -> None:
    route = web.Application().router.add_get("/hello", hello)
    still(getattr(route, "_handler", None) is hello, "aiohttp",
          "a route no longer keeps its handler in `_handler`")
    still(route.handler is hello, "aiohttp", "`route.handler` no longer reads `_handler`")


async def test_a_route_runs_the_handler_set_after_it_was_added() -> None:
    app = web.Application()
    route = app.router.add_get("/hello", hello)

    async def replaced(_request: web.Request) -> web.Response:
        return web.Response(text="replaced")

    set_route_handler(route, replaced)
    assert route.handler is replaced
    async with TestClient(TestServer(app)) as test_client:
        answer = await test_client.get("/hello")
        still(await answer.text() == "replaced", "aiohttp",
              "a request no longer runs the handler in the route's `_handler`")


# --- aiohttp: the Server header -----------------------------------------------------------------


def test_aiohttp_still_reads_its_server_header_from_the_module_global() -> None:
    still(isinstance(getattr(web_response, "SERVER_SOFTWARE", None), str), "aiohttp",
          "aiohttp.web_response has no SERVER_SOFTWARE string")
    source = source_of(web_response.StreamResponse._prepare_headers)
    still("headers.setdefault(hdrs.SERVER, SERVER_SOFTWARE)" in source, "aiohttp",
          "StreamResponse._prepare_headers no longer sets `Server` from SERVER_SOFTWARE")


async def test_the_server_header_names_what_was_set(monkeypatch: pytest.MonkeyPatch,
                                                     client: TestClient[web.Request,
                                                                        web.Application]
                                                     ) -> None:
    monkeypatch.setattr(web_response, "SERVER_SOFTWARE", web_response.SERVER_SOFTWARE)
    set_server_software("someone")  # undone by monkeypatch after the test
    answer = await client.get("/hello")
    still(answer.headers["Server"] == "someone", "aiohttp",
          "answers no longer name web_response.SERVER_SOFTWARE in `Server`")


# --- aiohttp: answers aiohttp gives itself ----------------------------------------------------


def test_aiohttp_still_answers_parser_errors_through_handle_error() -> None:
    parameters = inspect.signature(web_protocol.RequestHandler.handle_error).parameters
    still(list(parameters) == ["self", "request", "status", "exc", "message"], "aiohttp",
          f"RequestHandler.handle_error takes {list(parameters)}")
    # a refused request's handler is a closure that calls self.handle_error
    still("self.handle_error(" in source_of(web_protocol.RequestHandler._make_error_handler),
          "aiohttp", "RequestHandler._make_error_handler no longer calls self.handle_error")
    still("self._make_error_handler(" in source_of(web_protocol.RequestHandler.start),
          "aiohttp", "RequestHandler.start no longer answers parser errors through "
          "_make_error_handler")


def test_aiohttp_servers_still_build_their_handlers_from_loop_and_kwargs() -> None:
    still("RequestHandler(self, loop=self._loop, **self._kwargs)"
          in source_of(web.Server.__call__), "aiohttp",
          "web.Server.__call__ no longer builds a RequestHandler from `_loop` and `_kwargs`")
    parameters = inspect.signature(web.Server.__init__).parameters
    still({"handler", "request_factory", "handler_cancellation", "loop"} <= set(parameters),
          "aiohttp", f"web.Server.__init__ takes {list(parameters)}")
    still(inspect.iscoroutinefunction(web.AppRunner._make_server), "aiohttp",
          "web.AppRunner._make_server is no coroutine function")
    init = source_of(web.Server.__init__)
    still("self._loop =" in init and "self._kwargs = kwargs" in init, "aiohttp",
          "web.Server no longer keeps its loop and RequestHandler arguments in `_loop` and "
          "`_kwargs`")


class _Teapot(ErrorAnsweringRunner):
    answered: list[int]

    def answer_error(self, request: web.BaseRequest, status: int, exc: BaseException | None,
                     message: str | None) -> web.StreamResponse | None:
        self.answered.append(status)
        if status == 500:
            return None  # aiohttp's own
        response = web.Response(status=418, text="refused")
        response.force_close()
        return response


async def _raw(port: int, data: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    answer = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    return answer


def _status(answer: bytes) -> int:
    return int(answer.split(b"\r\n", 1)[0].split()[1])


async def test_a_runners_connections_answer_through_answer_error() -> None:
    async def broken(_request: web.Request) -> web.Response:
        raise RuntimeError("a bug")

    app = web.Application()
    app.router.add_get("/broken", broken)
    runner = _Teapot(app, access_log=None)
    runner.answered = []
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        refused = await _raw(port, b"GARBAGE\r\n\r\n")
        still(_status(refused) == 418 and refused.endswith(b"refused"), "aiohttp",
              f"a request its parser refuses is not answered by answer_error: {refused!r}")
        fallen_back = await _raw(port, b"GET /broken HTTP/1.1\r\nHost: x\r\n\r\n")
        still(_status(fallen_back) == 500, "aiohttp",
              f"aiohttp's own answer is not the fallback: {fallen_back!r}")
        assert runner.answered == [400, 500]
    finally:
        await runner.cleanup()


# --- redis-py -----------------------------------------------------------------------------------


def test_redis_still_maps_error_replies_to_its_exceptions() -> None:
    from redis._parsers import BaseParser

    still(library_internals.redis_error_of == BaseParser.parse_error, "redis-py",
          "redis._parsers.BaseParser.parse_error is gone")
    error = redis_error_of("NOSCRIPT No matching script. Please use EVAL.")
    still(type(error) is NoScriptError and str(error) == "No matching script. Please use EVAL.",
          "redis-py", f"a NOSCRIPT reply is parsed as {error!r}")
    other = redis_error_of("WRONGTYPE Operation against a key holding the wrong kind of value")
    still(type(other) is ResponseError, "redis-py", f"a WRONGTYPE reply is parsed as {other!r}")


def test_redis_cluster_client_still_keeps_its_startup_nodes() -> None:
    from redis.asyncio.cluster import ClusterNode, RedisCluster

    # made, never connected: the client connects on its first command
    cluster = RedisCluster(startup_nodes=[ClusterNode("127.0.0.1", 7001),
                                          ClusterNode("127.0.0.1", 7002)])
    try:
        found = library_internals.cluster_startup_nodes(cluster)
    except AttributeError as exc:
        found = [("missing", repr(exc))]  # type: ignore[list-item]
    still(sorted(found) == [("127.0.0.1", 7001), ("127.0.0.1", 7002)], "redis-py",
          f"RedisCluster.nodes_manager.startup_nodes reads as {found!r}")


def test_redis_cluster_errors_map_to_the_exceptions_the_batcher_handles() -> None:
    from redis.exceptions import AskError, ClusterDownError, MovedError, TryAgainError

    moved = redis_error_of("MOVED 3999 127.0.0.1:7002")
    still(isinstance(moved, MovedError) and moved.slot_id == 3999
          and (moved.host, moved.port) == ("127.0.0.1", 7002), "redis-py",
          f"a MOVED reply is parsed as {moved!r}")
    ask = redis_error_of("ASK 3999 127.0.0.1:7002")
    still(type(ask) is AskError, "redis-py", f"an ASK reply is parsed as {ask!r}")
    still(isinstance(redis_error_of("TRYAGAIN Multiple keys request"), TryAgainError),
          "redis-py", "a TRYAGAIN reply is not a TryAgainError")
    still(isinstance(redis_error_of("CLUSTERDOWN The cluster is down"), ClusterDownError),
          "redis-py", "a CLUSTERDOWN reply is not a ClusterDownError")
