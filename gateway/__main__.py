"""`python -m gateway`: serve the gateway until SIGTERM/SIGINT."""

from __future__ import annotations

import sys

import uvloop
from aiohttp import web

from contracts.logging import configure_logging
from contracts.settings import SettingsError, load_settings
from gateway.app import build_app


def main() -> None:
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(f"gateway: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    configure_logging("gateway", settings.log_level)
    web.run_app(
        build_app(settings),
        host=settings.gateway_host,
        port=settings.gateway_port,
        access_log=None,
        print=None,
        shutdown_timeout=settings.shutdown_grace_s,
        loop=uvloop.new_event_loop(),
    )


if __name__ == "__main__":
    main()
