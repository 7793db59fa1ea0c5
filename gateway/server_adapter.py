"""The gateway's HTTP server: aiohttp's, with two changes aiohttp offers no public hook for:
what the gateway answers itself names no software versions, and each of its error answers is
in the envelope of docs/api.md section 2.

- `Server`: aiohttp sends `Python/3.x aiohttp/3.x` on every answer it prepares; here it is
  `gateway`, without a version. aiohttp only sets it where an answer has none, so proxied
  answers keep their upstream's own `Server` (docs/api.md section 6.4).
- Requests aiohttp's parser refuses (a malformed request line, a header line without a colon,
  an over-long line...) never reach the application: aiohttp answers them itself, in plain
  text. Here they get the JSON error envelope with a fresh request id, also in X-Request-Id.
  They are no request of any route: no access log line and no `request.completed` event
  (what aiohttp answers itself never passes through the pipeline).

The aiohttp internals this takes are in gateway.library_internals (`set_server_software`,
`ErrorAnsweringRunner`), checked by tests/unit/test_library_internals.py.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable
from contextlib import suppress

from aiohttp import web

from contracts.errors import ApiError, BadRequest, InternalError, UpstreamTimeout
from contracts.logging import get_logger
from gateway.library_internals import ErrorAnsweringRunner, set_server_software
from gateway.steps.error_handler import render
from gateway.steps.request_context import new_request_id

log = get_logger(__name__)

SERVER_NAME = "gateway"
# web.run_app's default (RequestHandler's own is an hour)
KEEPALIVE_TIMEOUT_S = 75.0


def hide_server_versions() -> None:
    """Every answer aiohttp prepares in this process names no versions. Process-wide, once
    at start: it costs nothing per request."""
    set_server_software(SERVER_NAME)


class GatewayRunner(ErrorAnsweringRunner):
    """web.AppRunner whose connections answer what aiohttp answers itself in the envelope."""

    def answer_error(self, request: web.BaseRequest, status: int, exc: BaseException | None,
                     message: str | None) -> web.StreamResponse:
        request_id = new_request_id()
        if status >= 500:  # escaped a handler: the pipeline answers everything it runs
            log.error("unhandled error outside the pipeline", request_id=request_id,
                      exc_info=exc)
        else:  # what clients of the open internet send: not worth more than a debug line
            log.debug("malformed request refused", request_id=request_id, error=message)
        response = render(_error_of(status), request_id)
        response.headers["X-Request-Id"] = request_id
        response.force_close()  # the parser's state is unknown after a malformed request
        return response


def _error_of(status: int) -> ApiError:
    """The envelope's error for a status aiohttp chose; aiohttp's own message is not sent (it
    quotes the request's bytes)."""
    if status >= 500:
        return UpstreamTimeout() if status == 504 else InternalError()
    error = BadRequest("Malformed HTTP request")
    error.status = status  # the parser's refusals are 400s; a future one keeps its own
    return error


def run_app(app: web.Application, *, host: str, port: int, reuse_port: bool,
            shutdown_timeout: float, drain_s: float, on_drain: Callable[[], None],
            loop: asyncio.AbstractEventLoop) -> None:
    """web.run_app with GatewayRunner and no access log, and a drain before the shutdown.

    Serves until SIGTERM/SIGINT. Then `on_drain()` (readiness turns 503) and `drain_s`
    seconds more of serving, new connections included, so a load balancer probing /readyz
    stops sending here before the listener closes (aiohttp's own signal handling closes it at
    once); a second signal ends the drain early. Then the shutdown of web.run_app: the
    listener closes and in-flight requests get `shutdown_timeout`. A signal before the
    listener is open stops at once (there is nothing to drain)."""
    hide_server_versions()
    asyncio.set_event_loop(loop)
    main = loop.create_task(_serve(app, host, port, reuse_port, shutdown_timeout, drain_s,
                                   on_drain))
    try:
        loop.run_until_complete(main)
    except (web.GracefulExit, KeyboardInterrupt):  # the signal handler's way out
        pass
    finally:
        try:
            if not main.done():
                main.cancel()
                with suppress(asyncio.CancelledError):
                    loop.run_until_complete(main)  # runs the runner's cleanup
        finally:
            _cancel_all(loop)
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()


async def _serve(app: web.Application, host: str, port: int, reuse_port: bool,
                 shutdown_timeout: float, drain_s: float, on_drain: Callable[[], None]
                 ) -> None:
    # aiohttp's signal handlers (GracefulExit) while the application starts; ours once it
    # serves (aiohttp removes both at cleanup)
    runner = GatewayRunner(app, handle_signals=True, access_log=None,
                           keepalive_timeout=KEEPALIVE_TIMEOUT_S,
                           shutdown_timeout=shutdown_timeout)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port, reuse_port=reuse_port).start()
        await _drain_after_signal(drain_s, on_drain)
    finally:
        await runner.cleanup()


async def _drain_after_signal(drain_s: float, on_drain: Callable[[], None]) -> None:
    """Returns `drain_s` after the first SIGTERM/SIGINT, or at a second one."""
    loop = asyncio.get_running_loop()
    signalled = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, signalled.set)
    await signalled.wait()
    signalled.clear()
    on_drain()
    log.info("draining", drain_s=drain_s)
    with suppress(TimeoutError):
        await asyncio.wait_for(signalled.wait(), drain_s)
    log.info("drain over: closing the listener")


def _cancel_all(loop: asyncio.AbstractEventLoop) -> None:
    """Tasks still running after the shutdown (as web.run_app and asyncio.run end)."""
    tasks = asyncio.all_tasks(loop)
    for task in tasks:
        task.cancel()
    loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
    for task in tasks:
        if not task.cancelled() and task.exception() is not None:
            loop.call_exception_handler({"message": "unhandled exception at shutdown",
                                         "exception": task.exception(), "task": task})
