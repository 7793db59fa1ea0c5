"""The process skeleton every back-end service shares.

A service module gives `run_service` a `configure(process)` that adds start/stop hooks. A start
hook opens the service's resources and registers what the service serves:
`process.add_handlers(operations_of(handlers))` for RPC operations and
`process.add_consumer(queue, handler)` for event queues. The skeleton connects (retrying
until the broker is there), declares the shared topology, runs the start hooks, then serves
RPC on `rpc.<service>` and consumes the event queues (so nothing arrives before the hooks
ran), serves `/health` and `/metrics` on its small HTTP port, and on SIGTERM/SIGINT stops
taking requests and events, finishes those in flight, runs the stop hooks, then exits.
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
from contracts.events import EventConsumer, EventHandler, EventPublisher
from contracts.logging import configure_logging, get_logger
from contracts.messages import RpcRequest
from contracts.names import SERVICES, EventQueue, Service, ServiceInfo
from contracts.rpc import Handler, RpcClient, RpcServer
from contracts.settings import Settings, SettingsError, load_settings
from contracts.timeutil import iso_now

log = get_logger(__name__)

Hook = Callable[["ServiceProcess"], Awaitable[None]]


class ServiceProcess:
    def __init__(self, service: Service, settings: Settings) -> None:
        self.info: ServiceInfo = SERVICES[service]
        self.settings = settings
        self.handlers: dict[str, Handler] = {"health": self._health}
        self.connection: AbstractRobustConnection | None = None
        self.publisher: EventPublisher | None = None
        self.rpc: RpcClient | None = None  # calls to other services
        self._on_start: list[Hook] = []
        self._on_stop: list[Hook] = []
        self._rpc: RpcServer | None = None
        self._consumers: list[EventConsumer] = []
        self._started = False
        self._http: web.AppRunner | None = None

    @property
    def name(self) -> str:
        return self.info.public_name

    def add_handlers(self, handlers: Mapping[str, Handler]) -> None:
        """Serve these RPC operations (call before the skeleton starts serving: from
        `configure` or a start hook)."""
        if self._started:
            raise RuntimeError("handlers are added before the service starts serving")
        clash = self.handlers.keys() & handlers.keys()
        if clash:
            raise ValueError(f"operations registered twice: {sorted(clash)}")
        self.handlers.update(handlers)

    def add_consumer(self, queue: EventQueue, handler: EventHandler, *,
                     prefetch: int = 16) -> None:
        """Consume the durable event queue `queue` with `handler` (ack after it returns,
        retries, then dead-lettering: `contracts.events.EventConsumer`)."""
        if self._started or self.connection is None:
            raise RuntimeError("consumers are added from a start hook")
        self._consumers.append(EventConsumer(
            self.connection, queue, handler, prefetch=prefetch,
            max_retries=self.settings.event_max_retries))

    def on_start(self, hook: Hook) -> None:
        self._on_start.append(hook)

    def on_stop(self, hook: Hook) -> None:
        self._on_stop.append(hook)

    async def _health(self, _request: RpcRequest) -> dict[str, Any]:
        return {"status": "ok", "service": self.name, "timestamp": iso_now()}

    async def start(self) -> None:
        settings = self.settings
        self.connection = await connect(settings.amqp_url, name=self.name)
        await declare_topology(self.connection)
        self.publisher = EventPublisher(self.connection, max_buffer=settings.event_buffer_max)
        await self.publisher.start()
        self.rpc = RpcClient(self.connection, default_timeout_ms=settings.rpc_timeout_ms)
        await self.rpc.start()
        for hook in self._on_start:
            await hook(self)
        # /health and /metrics first: once the RPC queue answers (the gateway's health
        # probe), the service's own port answers too
        self._http = web.AppRunner(self._http_app(), access_log=None)
        await self._http.setup()
        port = settings.service_ports[self.info.service]
        await web.TCPSite(self._http, settings.service_host, port).start()
        self._rpc = RpcServer(
            self.connection, self.info.rpc_queue, self.handlers, prefetch=settings.rpc_prefetch
        )
        await self._rpc.start()
        for consumer in self._consumers:
            await consumer.start()
        self._started = True
        log.info("service ready", queue=self.info.rpc_queue, http_port=port,
                 operations=sorted(self.handlers),
                 consumes=[consumer.queue_name for consumer in self._consumers])

    async def stop(self) -> None:
        grace = self.settings.shutdown_grace_s
        if self._rpc is not None:
            await self._rpc.stop(grace)
        for consumer in self._consumers:
            await consumer.stop(grace)
        if self._http is not None:
            await self._http.cleanup()
        for hook in reversed(self._on_stop):
            try:
                await hook(self)
            except Exception:
                log.exception("stop hook failed")
        if self.rpc is not None:
            await self.rpc.close()
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
        body = await self._health(RpcRequest())
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
