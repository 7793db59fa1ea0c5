"""The reference: a bare aiohttp reverse proxy that only forwards (no auth, limits or logs).

`ref_proxy.py PORT UPSTREAM [--reuse-port]`: with --reuse-port the listening socket is
bound with SO_REUSEPORT, so several of these processes can serve one port (the kernel
spreads connections), as the gateway's workers do with GATEWAY_WORKERS > 1.
"""

import sys
from collections.abc import Awaitable, Callable

import aiohttp
import uvloop
from aiohttp import web

UPSTREAM = sys.argv[2]
REUSE_PORT = "--reuse-port" in sys.argv[3:]


async def on_startup(app: web.Application) -> None:
    app["session"] = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))


async def on_cleanup(app: web.Application) -> None:
    await app["session"].close()


async def forward(request: web.Request) -> web.Response:
    async with request.app["session"].get(UPSTREAM + request.path_qs) as upstream:
        body = await upstream.read()
        return web.Response(body=body, status=upstream.status,
                            content_type=upstream.content_type)


Hook = Callable[[web.Application], Awaitable[None]]


def serve(forward: Callable[[web.Request], Awaitable[web.Response]], on_startup: Hook,
          on_cleanup: Hook) -> None:
    """A proxy of the bench on PORT (argv[1]): every GET goes to `forward` (also the
    gateway-client proxy's way to serve, bench/own_client_proxy.py)."""
    app = web.Application()
    app.on_startup.append(on_startup)
    app.on_cleanup.append(on_cleanup)
    app.router.add_get("/{tail:.*}", forward)
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None,
                reuse_port=REUSE_PORT, loop=uvloop.new_event_loop())


if __name__ == "__main__":
    serve(forward, on_startup, on_cleanup)
