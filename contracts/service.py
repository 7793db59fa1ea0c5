"""The runtime every back-end service process runs. A service is one declaration:

    SERVICE = ServiceDeclaration(Service.ANALYTICS, assemble)

`assemble(assembly)` opens the service's resources, each with `await assembly.open(...)` (an
async context manager entered into the process's one `AsyncExitStack`), and declares what the
service does:

- `assembly.serve(handlers)`: the `@handles` methods of an object, its RPC operations
  (`contracts.operations`);
- `assembly.consume(Consumer(queue, message_type, handle))`: a consumer, a function bound to
  an event queue that receives the queue's declared message type;
- `assembly.every(Periodic(...))`: a periodic task under the one policy of
  `contracts.periodic`;
- `assembly.ready_when(name, check)`: a cheap check of a resource the service cannot work
  without, asked by `/readyz` (the broker connection is always asked).

The runtime opens its broker (`contracts.broker`: RabbitMQ, retrying until it is there, or
the in-memory broker of unit tests), runs `assemble`, then serves `/health`, `/livez`,
`/readyz` and `/metrics` on the service's small HTTP port, RPC on `rpc.<service>`, the
consumers and the periodic tasks (so nothing arrives before the resources are open).
Everything started is in the exit stack. On SIGTERM/SIGINT the service first drains:
`/readyz` answers 503 while it goes on working for `SHUTDOWN_DRAIN_S` (a second signal ends
that early). Then, and as well when start-up fails half-way, the stack is closed in reverse:
periodic tasks stop, consumers and RPC finish what is in flight (within
`SHUTDOWN_GRACE_S`), the resources close, then the broker connection, and last the span
exporter (`contracts.spans`, when OTEL_EXPORTER_OTLP_ENDPOINT is set) sends what it holds.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager, suppress
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

import uvloop
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from contracts.broker import AmqpBroker, Broker, Publisher, RpcCaller
from contracts.logging import configure_logging, get_logger
from contracts.messages import EVENT_TYPES, Event, RpcRequest
from contracts.names import SERVICES, EventQueue, Service, ServiceInfo
from contracts.periodic import Periodic, PeriodicRunner
from contracts.readiness import LIVE, Check, Readiness, connected, status_of
from contracts.rpc import Handler, operations_of
from contracts.settings import Settings, SettingsError, load_settings
from contracts.spans import span_export
from contracts.timeutil import iso_now

log = get_logger(__name__)

R = TypeVar("R")
E = TypeVar("E", bound=Event)


@dataclass(frozen=True)
class Consumer(Generic[E]):
    """A function bound to a durable event queue: it receives the events of one message, of
    the queue's declared type, and the message is acknowledged once it returns (retries and
    dead-lettering: `contracts.events.EventConsumer`)."""

    queue: EventQueue
    message: type[E]
    handle: Callable[[list[E]], Awaitable[None]]
    prefetch: int = 16

    def __post_init__(self) -> None:
        delivered = {EVENT_TYPES[key] for key in self.queue.bindings}
        if delivered != {self.message}:
            raise TypeError(f"{self.queue.name} delivers {delivered}, not {self.message}")


class Assembly:
    """What `assemble` works with: the settings, the broker clients every service has, the
    exit stack its resources go into, and the declarations it makes."""

    def __init__(self, process: ServiceProcess, stack: AsyncExitStack) -> None:
        self.settings = process.settings
        self.name = process.name
        self.publisher: Publisher = process.broker.publisher
        self.rpc: RpcCaller = process.broker.rpc
        # a message the broker holds once this returns (an outbox relay, delayed retries)
        self.publish_confirmed = process.broker.publish_confirmed
        self._process = process
        self._stack = stack

    async def open(self, resource: AbstractAsyncContextManager[R]) -> R:
        """Enter `resource`; it is closed when the process stops (in reverse order of
        opening), or at once if start-up fails later."""
        return await self._stack.enter_async_context(resource)

    def serve(self, handlers: object) -> None:
        self._process.add_handlers(operations_of(handlers))

    def consume(self, consumer: Consumer[Any]) -> None:
        self._process.consumers.append(consumer)

    def every(self, periodic: Periodic) -> None:
        self._process.periodic.append(periodic)

    def ready_when(self, name: str, check: Check) -> None:
        """`/readyz` answers 503 while `check` (an awaitable call, e.g. a `SELECT 1` on the
        service's pool) raises or takes longer than contracts.readiness.CHECK_TIMEOUT_S."""
        self._process.readiness.require(name, check)


@dataclass(frozen=True)
class ServiceDeclaration:
    service: Service
    assemble: Callable[[Assembly], Awaitable[None]]


class Startable(Protocol):
    async def start(self) -> None: ...

    async def close(self) -> None: ...


S = TypeVar("S", bound=Startable)


def started(resource: S) -> AbstractAsyncContextManager[S]:
    """`resource` started on entry (`await resource.start()`) and closed on exit."""

    @asynccontextmanager
    async def managed() -> AsyncIterator[S]:
        await resource.start()
        try:
            yield resource
        finally:
            await resource.close()

    return managed()


def closing(resource: R, close: Callable[[R], Awaitable[object]]
            ) -> AbstractAsyncContextManager[R]:
    """`resource` as a context manager that awaits `close(resource)` on exit (for clients
    whose own close method is not an async context manager)."""

    @asynccontextmanager
    async def managed() -> AsyncIterator[R]:
        try:
            yield resource
        finally:
            await close(resource)

    return managed()


class ServiceProcess:
    def __init__(self, declaration: ServiceDeclaration, settings: Settings,
                 broker: Broker | None = None) -> None:
        self.declaration = declaration
        self.info: ServiceInfo = SERVICES[declaration.service]
        self.settings = settings
        # RabbitMQ unless a test gives it a `MemoryBroker`
        self.broker: Broker = broker or AmqpBroker(settings)
        self.handlers: dict[str, Handler] = {"health": self._health}
        self.consumers: list[Consumer[Any]] = []
        self.periodic: list[Periodic] = []
        # its port answers before RPC and the consumers run: ready only once they do
        self.readiness = Readiness(started=False)
        self.readiness.require("rabbitmq", connected(lambda: not self.broker.connected))
        self._stack = AsyncExitStack()

    @property
    def name(self) -> str:
        return self.info.public_name

    @property
    def connected(self) -> bool:
        return self.broker.connected

    def add_handlers(self, handlers: dict[str, Handler]) -> None:
        clash = self.handlers.keys() & handlers.keys()
        if clash:
            raise ValueError(f"operations registered twice: {sorted(clash)}")
        self.handlers.update(handlers)

    async def _health(self, _request: RpcRequest) -> dict[str, Any]:
        return {"status": "ok", "service": self.name, "timestamp": iso_now()}

    async def start(self) -> None:
        """Open and start everything; on a failure, close what was opened and re-raise."""
        try:
            await self._start(self._stack)
        except BaseException:
            await self._stack.aclose()
            raise

    async def _start(self, stack: AsyncExitStack) -> None:
        settings, broker = self.settings, self.broker
        # first in, so last out: the spans of the last calls handled are sent before it stops
        await stack.enter_async_context(span_export(settings, self.name))
        await broker.open(self.name)
        stack.push_async_callback(broker.close)

        await self.declaration.assemble(Assembly(self, stack))

        # /health and /metrics first: once the RPC queue answers (the gateway's health
        # probe), the service's own port answers too
        http = web.AppRunner(self._http_app(), access_log=None)
        await http.setup()
        stack.push_async_callback(http.cleanup)
        port = settings.service_ports[self.info.service]
        await web.TCPSite(http, settings.service_host, port).start()
        stack.push_async_callback(await broker.serve(self.info.rpc_queue, self.handlers,
                                                     prefetch=settings.rpc_prefetch))
        for consumer in self.consumers:
            stack.push_async_callback(await broker.consume(
                consumer.queue, consumer.handle, prefetch=consumer.prefetch,
                max_retries=settings.event_max_retries))
        for periodic in self.periodic:
            runner = PeriodicRunner(periodic)
            runner.start()
            stack.push_async_callback(runner.stop)
        self.readiness.mark_started()
        log.info("service ready", queue=self.info.rpc_queue, http_port=port,
                 operations=sorted(self.handlers),
                 consumes=[consumer.queue.name for consumer in self.consumers],
                 periodic=[periodic.name for periodic in self.periodic])

    async def stop(self) -> None:
        await self._stack.aclose()
        log.info("service stopped")

    def _http_app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/health", self._http_health)
        app.router.add_get("/livez", _livez)
        app.router.add_get("/readyz", self._readyz)
        app.router.add_get("/metrics", _metrics)
        return app

    async def _readyz(self, _request: web.Request) -> web.Response:
        ready = await self.readiness.state()
        return web.json_response(ready.model_dump(mode="json"), status=status_of(ready))

    async def _http_health(self, _request: web.Request) -> web.Response:
        broker_ok = self.connected
        body = await self._health(RpcRequest())
        if not broker_ok:
            body["status"] = "error"
        return web.json_response(body, status=200 if broker_ok else 503)


async def _livez(_request: web.Request) -> web.Response:
    return web.json_response(LIVE.model_dump(mode="json"))


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
        starting.result()  # raise a start-up failure (what it opened is closed already)
        await stopping
        await drain(process, stop)
    else:  # still starting: nothing serves yet, so nothing to drain
        starting.cancel()
        await asyncio.gather(starting, return_exceptions=True)
    await process.stop()


async def drain(process: ServiceProcess, signalled: asyncio.Event) -> None:
    """`/readyz` 503 at once, and SHUTDOWN_DRAIN_S more of work as usual (RPC, consumers,
    periodic tasks, the HTTP port), so whatever routes by readiness stops choosing this
    process before it stops taking work; a second signal ends the drain early."""
    process.readiness.drain()
    drain_s = process.settings.shutdown_drain_s
    log.info("draining", drain_s=drain_s)
    signalled.clear()
    with suppress(TimeoutError):
        await asyncio.wait_for(signalled.wait(), drain_s)


def run_service(declaration: ServiceDeclaration) -> None:
    """Entry point of `python -m <service package>`."""
    name = SERVICES[declaration.service].public_name
    try:
        settings = load_settings(declaration.service.value)
    except SettingsError as exc:
        print(f"{name}: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    configure_logging(name, settings.log_level)
    uvloop.run(serve_until_signalled(ServiceProcess(declaration, settings)))
