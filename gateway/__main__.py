"""`python -m gateway`: serve the gateway until SIGTERM/SIGINT, then drain (`/readyz` 503,
still serving, SHUTDOWN_DRAIN_S) and stop (in-flight requests get SHUTDOWN_GRACE_S).

With GATEWAY_WORKERS > 1 this process forks that many workers that share the port through
SO_REUSEPORT (the kernel spreads connections); it forwards SIGTERM/SIGINT to them, and if one
dies the others are stopped too, so a supervisor sees the failure.
"""

from __future__ import annotations

import gc
import multiprocessing
import os
import signal
import sys

import uvloop

from contracts.logging import configure_logging
from contracts.settings import Settings, SettingsError, load_settings
from gateway.app import build_app
from gateway.health import READINESS
from gateway.server_adapter import run_app


def serve(settings: Settings, reuse_port: bool) -> None:
    configure_logging("gateway", settings.log_level)
    app = build_app(settings)
    # Everything built so far lives as long as the process: keep it out of the collector's
    # way, and collect the young generation less often (per-request garbage is short-lived).
    gc.freeze()
    gc.set_threshold(50_000, 20, 20)
    # aiohttp's server, answering its own refusals in the JSON envelope, naming no versions
    # on SIGTERM: /readyz 503 and SHUTDOWN_DRAIN_S more of serving, then the shutdown
    run_app(app, host=settings.gateway_host, port=settings.gateway_port, reuse_port=reuse_port,
            shutdown_timeout=settings.shutdown_grace_s, drain_s=settings.shutdown_drain_s,
            on_drain=app[READINESS].drain, loop=uvloop.new_event_loop())


def supervise(settings: Settings) -> int:
    context = multiprocessing.get_context("fork")  # before any event loop exists
    workers = [context.Process(target=serve, args=(settings, True), name=f"gateway-{n}")
               for n in range(settings.gateway_workers)]
    for worker in workers:
        worker.start()

    def stop(_signum: int, _frame: object) -> None:
        for worker in workers:
            if worker.is_alive() and worker.pid is not None:
                os.kill(worker.pid, signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    status = 0
    remaining = list(workers)
    while remaining:
        for worker in list(remaining):
            worker.join(timeout=0.2)
            if not worker.is_alive():
                remaining.remove(worker)
                if worker.exitcode not in (0, -signal.SIGTERM):
                    status = 1
                    stop(0, None)
    return status


def main() -> None:
    try:
        settings = load_settings("gateway")
    except SettingsError as exc:
        print(f"gateway: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    if settings.gateway_workers > 1:
        raise SystemExit(supervise(settings))
    serve(settings, reuse_port=False)


if __name__ == "__main__":
    main()
