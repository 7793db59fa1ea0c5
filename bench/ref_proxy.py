"""The reference: a bare aiohttp reverse proxy that only forwards (no auth, limits or logs).

`ref_proxy.py PORT UPSTREAM [--reuse-port]`: with --reuse-port the listening socket is
bound with SO_REUSEPORT, so several of these processes can serve one port (the kernel
spreads connections), as the gateway's workers do with GATEWAY_WORKERS > 1.
"""

import sys

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


app = web.Application()
app.on_startup.append(on_startup)
app.on_cleanup.append(on_cleanup)
app.router.add_get("/{tail:.*}", forward)

if __name__ == "__main__":
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None,
                reuse_port=REUSE_PORT, loop=uvloop.new_event_loop())
