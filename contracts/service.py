"""The process skeleton every back-end service shares.

A service module builds a `ServiceProcess`, adds its RPC handlers and start/stop hooks, and
calls `run_service`. The skeleton connects (retrying until the broker is there), declares the
shared topology, serves RPC on `rpc.<service>`, serves `/health` and `/metrics` on its small
HTTP port, and on SIGTERM/SIGINT stops taking requests, finishes those in flight, then exits.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import uvloop
from aio_pika.abc import AbstractRobustConnection
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from contracts.amqp import connect, declare_topology
from contracts.events import EventPublisher
from contracts.logging import configure_logging, get_logger
from contracts.names import SERVICES, Service, ServiceInfo
from contracts.rpc import Handler, RpcServer
from contracts.settings import Settings, SettingsError, load_settings
from contracts.timeutil import iso_now

log = get_logger(__name__)

Hook = Callable[["ServiceProcess"], Awaitable[None]]


def late_bound(resolve: Callable[[], Any], operations: Mapping[str, str]) -> dict[str, Handler]:
    """Handlers for `operations` (name -> method name) of an object that exists only after the
    start hooks ran (it needs the database); `resolve()` returns it. The RPC server consumes
    only after every start hook, so no call arrives before."""

    def bind(method: str) -> Handler:
        async def call(params: dict[str, Any]) -> Any:
            return await getattr(resolve(), method)(params)

        return call

    return {operation: bind(method) for operation, method in operations.items()}


class ServiceProcess:
    def __init__(self, service: Service, settings: Settings) -> None:
        self.info: ServiceInfo = SERVICES[service]
        self.settings = settings
        self.handlers: dict[str, Handler] = {"health": self._health}
        self.connection: AbstractRobustConnection | None = None
        self.publisher: EventPublisher | None = None
        self._on_start: list[Hook] = []
        self._on_stop: list[Hook] = []
        self._rpc: RpcServer | None = None
        self._http: web.AppRunner | None = None

    @property
    def name(self) -> str:
        return self.info.public_name

    def add_handlers(self, handlers: Mapping[str, Handler]) -> None:
        clash = self.handlers.keys() & handlers.keys()
        if clash:
            raise ValueError(f"operations registered twice: {sorted(clash)}")
        self.handlers.update(handlers)

    def on_start(self, hook: Hook) -> None:
        self._on_start.append(hook)

    def on_stop(self, hook: Hook) -> None:
        self._on_stop.append(hook)

    async def _health(self, _params: dict[str, Any]) -> dict[str, Any]:
        return {"status": "ok", "service": self.name, "timestamp": iso_now()}

    async def start(self) -> None:
        settings = self.settings
        self.connection = await connect(settings.amqp_url, name=self.name)
        await declare_topology(self.connection)
        self.publisher = EventPublisher(self.connection, max_buffer=settings.event_buffer_max)
        await self.publisher.start()
        for hook in self._on_start:
            await hook(self)
        self._rpc = RpcServer(
            self.connection, self.info.rpc_queue, self.handlers, prefetch=settings.rpc_prefetch
        )
        await self._rpc.start()
        self._http = web.AppRunner(self._http_app(), access_log=None)
        await self._http.setup()
        port = settings.service_ports[self.info.service]
        await web.TCPSite(self._http, settings.service_host, port).start()
        log.info("service ready", queue=self.info.rpc_queue, http_port=port,
                 operations=sorted(self.handlers))

    async def stop(self) -> None:
        grace = self.settings.shutdown_grace_s
        if self._rpc is not None:
            await self._rpc.stop(grace)
        if self._http is not None:
            await self._http.cleanup()
        for hook in reversed(self._on_stop):
            try:
                await hook(self)
            except Exception:
                log.exception("stop hook failed")
        if self.publisher is not None:
            await self.publisher.close(timeout=grace)
        if self.connection is not None:
            await self.connection.close()
        log.info("service stopped")

    def _http_app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/health", self._http_health)
        app.router.add_get("/metrics", _metrics)
        return app

    async def _http_health(self, _request: web.Request) -> web.Response:
        broker_ok = self.connection is not None and not self.connection.is_closed
        body = await self._health({})
        if not broker_ok:
            body["status"] = "error"
        return web.json_response(body, status=200 if broker_ok else 503)


async def _metrics(_request: web.Request) -> web.Response:
    return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})


async def serve_until_signalled(process: ServiceProcess) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    starting = asyncio.create_task(process.start())
    stopping = asyncio.create_task(stop.wait())
    done, _ = await asyncio.wait({starting, stopping}, return_when=asyncio.FIRST_COMPLETED)
    if starting in done:
        starting.result()  # raise a start-up failure
        await stopping
    else:
        starting.cancel()
        await asyncio.gather(starting, return_exceptions=True)
    await process.stop()


def run_service(service: Service, configure: Callable[[ServiceProcess], None]) -> None:
    """Entry point of `python -m <service package>`."""
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(f"{SERVICES[service].public_name}: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    configure_logging(SERVICES[service].public_name, settings.log_level)
    process = ServiceProcess(service, settings)
    configure(process)
    uvloop.run(serve_until_signalled(process))
