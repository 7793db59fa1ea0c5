"""`/livez`, `/readyz` and the drain after SIGTERM (docs/api.md section 10), without servers:
the readiness checks, the probes' place in the route table and the pipeline, the services'
HTTP port and their drain on the in-memory broker, and the gateway adapter's drain."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
import time
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp.test_utils import make_mocked_request

from contracts import operations as op
from contracts.broker import MemoryBroker, MemoryBus
from contracts.names import SERVICES, Service
from contracts.readiness import NotReady, Readiness, connected, status_of
from contracts.routes import ROUTES, is_reserved
from contracts.service import Assembly, ServiceDeclaration, ServiceProcess, serve_until_signalled
from contracts.settings import Settings
from gateway.app import LOCAL_HANDLERS
from gateway.pipeline import plan_for
from gateway.router import is_exempt
from gateway.server_adapter import _drain_after_signal
from tests.support import service_settings

# --- readiness checks --------------------------------------------------------------------------


async def test_ready_when_every_check_answers_with_its_latency():
    readiness = Readiness()
    readiness.require("a", lambda: asyncio.sleep(0))
    readiness.require("b", connected(lambda: False))
    ready = await readiness.state()
    assert ready.status == "ok" and status_of(ready) == 200
    assert [(p.name, p.status) for p in ready.checks] == [("a", "ok"), ("b", "ok")]
    assert all(p.latency >= 0 for p in ready.checks)
    assert ready.model_dump(mode="json")["checks"][0].keys() == {"name", "status", "latency"}


async def test_a_failing_check_is_503_naming_it_without_the_exception_text():
    async def refused() -> None:
        raise ConnectionRefusedError("connect to redis://:secret@10.0.0.7:6379 failed")

    readiness = Readiness()
    readiness.require("redis", refused)
    readiness.require("rabbitmq", connected(lambda: True))
    ready = await readiness.state()
    assert ready.status == "unavailable" and status_of(ready) == 503
    body = ready.model_dump(mode="json")
    assert body["checks"] == [
        {"name": "redis", "status": "error", "error": "ConnectionRefusedError"},
        {"name": "rabbitmq", "status": "error", "error": "connection closed"}]


async def test_a_hanging_dependency_is_answered_within_the_timeout():
    readiness = Readiness(timeout_s=0.05)
    readiness.require("stuck", lambda: asyncio.sleep(3600))
    started = time.perf_counter()
    ready = await readiness.state()
    assert time.perf_counter() - started < 0.5
    assert ready.checks[0].error == "timed out" and status_of(ready) == 503


async def test_concurrent_probes_share_one_run_of_the_checks():
    calls = 0

    async def slow() -> None:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.05)

    readiness = Readiness()
    readiness.require("slow", slow)
    answers = await asyncio.gather(*(readiness.state() for _ in range(20)))
    assert calls == 1 and all(a.status == "ok" for a in answers)
    await readiness.state()  # a later probe runs them again
    assert calls == 2


async def test_a_probe_that_hangs_up_does_not_cancel_the_others():
    readiness = Readiness()
    readiness.require("slow", lambda: asyncio.sleep(0.05))
    first = asyncio.ensure_future(readiness.state())
    second = asyncio.ensure_future(readiness.state())
    await asyncio.sleep(0.01)
    first.cancel()
    assert (await second).status == "ok"


async def test_draining_is_503_at_once_without_running_a_check():
    readiness = Readiness()
    readiness.require("never", lambda: asyncio.sleep(3600))
    readiness.drain()
    started = time.perf_counter()
    ready = await readiness.state()
    assert time.perf_counter() - started < 0.05
    assert ready.model_dump(mode="json") == {"status": "draining", "checks": []}
    assert status_of(ready) == 503


async def test_a_drain_during_the_checks_wins_over_their_result():
    readiness = Readiness()
    readiness.require("slow", lambda: asyncio.sleep(0.05))
    probe = asyncio.ensure_future(readiness.state())
    await asyncio.sleep(0.01)
    readiness.drain()
    assert (await probe).status == "draining"


async def test_not_started_is_503_without_running_a_check_until_marked():
    readiness = Readiness(started=False)
    readiness.require("fine", lambda: asyncio.sleep(0))
    assert (await readiness.state()).model_dump(mode="json") == {"status": "starting",
                                                                 "checks": []}
    readiness.mark_started()
    assert (await readiness.state()).status == "ok"


def test_a_check_name_is_registered_once():
    readiness = Readiness()
    readiness.require("redis", lambda: asyncio.sleep(0))
    with pytest.raises(ValueError, match="twice"):
        readiness.require("redis", lambda: asyncio.sleep(0))


async def test_not_ready_shows_its_own_message():
    async def not_yet() -> None:
        raise NotReady("not loaded yet")

    readiness = Readiness()
    readiness.require("route-configs", not_yet)
    assert (await readiness.state()).checks[0].error == "not loaded yet"


# --- the probes in the route table and the gateway's pipeline -----------------------------------


def test_probes_are_gateway_routes_with_their_handlers():
    probes = {route.path: route for route in ROUTES if route.path in ("/livez", "/readyz")}
    assert probes["/livez"].operation is op.LIVEZ and probes["/readyz"].operation is op.READYZ
    for route in probes.values():
        assert route.method == "GET" and route.service is None
        assert route.operation in LOCAL_HANDLERS
    assert 503 in probes["/readyz"].errors


@pytest.mark.parametrize("path", ["/livez", "/readyz", "/readyz/", "/livez/deeper"])
def test_probe_paths_are_reserved(path: str):
    assert is_reserved(path)


@pytest.mark.parametrize("path", ["/livezz", "/ready", "/api/readyz"])
def test_only_the_probe_paths_themselves_are_reserved(path: str):
    assert not is_reserved(path)


@pytest.mark.parametrize("method", ["GET", "HEAD"])
@pytest.mark.parametrize("path", ["/livez", "/readyz"])
def test_probes_are_exempt_traffic(path: str, method: str):
    assert is_exempt(make_mocked_request(method, path))


@pytest.mark.parametrize("path", ["/livez", "/readyz"])
def test_other_methods_on_probe_paths_count(path: str):
    assert not is_exempt(make_mocked_request("POST", path))


def test_a_probe_plan_is_neither_counted_nor_limited():
    route = next(r for r in ROUTES if r.path == "/readyz")
    plan = plan_for(route, None, exempt=True)
    assert not plan.counted and not plan.cached


# --- a service's port and its drain ------------------------------------------------------------


@pytest.fixture
def settings() -> Settings:
    return dataclasses.replace(service_settings(Service.AUTH), shutdown_drain_s=0.0)


async def get(settings: Settings, path: str) -> tuple[int, dict[str, object]]:
    url = f"http://127.0.0.1:{settings.service_ports[Service.AUTH]}{path}"
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return response.status, await response.json()


@pytest.fixture
async def service(settings: Settings) -> AsyncIterator[tuple[ServiceProcess, list[bool]]]:
    """A service on the in-memory broker whose one extra check answers while `up[0]`."""
    up = [True]

    async def database() -> None:
        if not up[0]:
            raise ConnectionResetError("gone")

    async def assemble(assembly: Assembly) -> None:
        assembly.ready_when("postgresql", database)

    process = ServiceProcess(ServiceDeclaration(Service.AUTH, assemble), settings,
                             MemoryBroker(MemoryBus()))
    await process.start()
    yield process, up
    await process.stop()


async def test_a_service_is_ready_only_once_everything_it_declares_runs(settings: Settings):
    process = ServiceProcess(ServiceDeclaration(Service.AUTH, _nothing), settings,
                             MemoryBroker(MemoryBus()))
    assert (await process.readiness.state()).status == "starting"
    await process.start()
    try:
        assert (await process.readiness.state()).status == "ok"
    finally:
        await process.stop()


async def test_a_service_port_answers_livez_and_readyz(settings: Settings, service):
    process, up = service
    assert await get(settings, "/livez") == (200, {"status": "ok"})
    status, body = await get(settings, "/readyz")
    assert status == 200 and body["status"] == "ok"
    assert [c["name"] for c in body["checks"]] == ["rabbitmq", "postgresql"]

    up[0] = False  # a resource the service declared fails: not ready, still live
    status, body = await get(settings, "/readyz")
    assert status == 503 and body["status"] == "unavailable"
    assert body["checks"][1] == {"name": "postgresql", "status": "error",
                                 "error": "ConnectionResetError"}
    assert (await get(settings, "/livez"))[0] == 200

    process.readiness.drain()
    assert await get(settings, "/readyz") == (503, {"status": "draining", "checks": []})
    assert (await get(settings, "/health"))[0] == 200  # /health is unchanged by a drain


@pytest.fixture
async def restore_signals() -> AsyncIterator[None]:
    """The tests below install SIGTERM/SIGINT handlers on the test's loop: a stray signal
    after the test must not find a handler of a finished test."""
    yield
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.remove_signal_handler(signum)


async def test_a_service_drains_after_sigterm_working_as_usual_then_stops(
        settings: Settings, restore_signals: None):
    drained = dataclasses.replace(settings, shutdown_drain_s=0.6)
    bus = MemoryBus()
    process = ServiceProcess(ServiceDeclaration(Service.AUTH, _nothing), drained,
                             MemoryBroker(bus))
    serving = asyncio.ensure_future(serve_until_signalled(process))
    await until_ready(drained)

    signalled = time.monotonic()
    os.kill(os.getpid(), signal.SIGTERM)
    await asyncio.sleep(0.1)
    assert (await get(drained, "/readyz"))[0] == 503
    # RPC is served as usual during the drain
    health = await MemoryBroker(bus).rpc.call(SERVICES[Service.AUTH].rpc_queue,
                                              op.SERVICE_HEALTH)
    assert health.body["status"] == "ok"
    assert not serving.done()
    await asyncio.wait_for(serving, 5)
    assert time.monotonic() - signalled >= 0.5
    with pytest.raises(aiohttp.ClientConnectionError):
        await get(drained, "/livez")


async def test_a_second_signal_ends_a_service_drain_early(settings: Settings,
                                                          restore_signals: None):
    long_drain = dataclasses.replace(settings, shutdown_drain_s=60.0)
    process = ServiceProcess(ServiceDeclaration(Service.AUTH, _nothing), long_drain,
                             MemoryBroker(MemoryBus()))
    serving = asyncio.ensure_future(serve_until_signalled(process))
    await until_ready(long_drain)
    os.kill(os.getpid(), signal.SIGTERM)
    await asyncio.sleep(0.1)
    assert process.readiness.draining
    os.kill(os.getpid(), signal.SIGTERM)
    await asyncio.wait_for(serving, 5)


async def _nothing(_assembly: Assembly) -> None:
    return None


async def until_ready(settings: Settings) -> None:
    """Until the service's /readyz is 200: started, so its signal handlers are installed
    (they are before the start) and a SIGTERM now finds a serving process."""
    deadline = time.monotonic() + 5
    while True:
        try:
            if (await get(settings, "/readyz"))[0] == 200:
                return
        except aiohttp.ClientConnectionError:
            pass
        assert time.monotonic() < deadline, "never ready"
        await asyncio.sleep(0.02)


# --- the gateway adapter's drain ---------------------------------------------------------------


async def test_the_gateway_drain_starts_at_the_signal_and_lasts_drain_s(restore_signals: None):
    events: list[str] = []
    draining = asyncio.ensure_future(_drain_after_signal(0.3, lambda: events.append("drain")))
    await asyncio.sleep(0.05)
    assert events == [] and not draining.done()  # serving: nothing until a signal
    os.kill(os.getpid(), signal.SIGTERM)
    await asyncio.sleep(0.05)
    assert events == ["drain"] and not draining.done()  # readiness 503, still serving
    started = time.monotonic()
    await asyncio.wait_for(draining, 5)
    assert time.monotonic() - started >= 0.15


async def test_a_second_signal_ends_the_gateway_drain_early(restore_signals: None):
    draining = asyncio.ensure_future(_drain_after_signal(60.0, lambda: None))
    await asyncio.sleep(0.05)
    os.kill(os.getpid(), signal.SIGINT)
    await asyncio.sleep(0.05)
    os.kill(os.getpid(), signal.SIGTERM)
    await asyncio.wait_for(draining, 5)
