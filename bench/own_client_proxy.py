"""(b'): a bare reverse proxy on the gateway's own upstream client (issue 28).

The same aiohttp server as the gateway and the same client (gateway.forwarders.upstream_client:
its connection pool, its httptools parser, its deadline), and nothing else: no auth, limits,
cache, events or logs. The request's headers go upstream as the gateway sends them (all but
the hop-by-hop ones), the answer comes back whole with its end-to-end headers, so the gap
between this and the gateway's upstream route (c) is what the pipeline costs.

`own_client_proxy.py PORT UPSTREAM [--reuse-port]`: with --reuse-port the listening socket is
bound with SO_REUSEPORT, so two of these serve one port like GATEWAY_WORKERS=2 ((b2')).
"""

import sys
from pathlib import Path

from aiohttp import web
from yarl import URL

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.ref_proxy import serve
from gateway.forwarders.http import HOP_BY_HOP
from gateway.forwarders.upstream_client import UpstreamClient

UPSTREAM = sys.argv[2].rstrip("/")
CLIENT = web.AppKey("client", UpstreamClient)


async def literal_address(host: str, _port: int) -> list[str]:
    return [host]  # the bench's upstream is 127.0.0.1: nothing to resolve


async def on_startup(app: web.Application) -> None:
    app[CLIENT] = UpstreamClient(literal_address, connect_timeout_s=5, total_timeout_s=30)


async def on_cleanup(app: web.Application) -> None:
    await app[CLIENT].close()


async def forward(request: web.Request) -> web.Response:
    headers = [(name, value) for name, value in request.headers.items()
               if name.lower() not in HOP_BY_HOP]
    upstream = await request.app[CLIENT].request(
        request.method, URL(UPSTREAM + request.raw_path, encoded=True), headers)
    try:
        body, _whole = await upstream.read()
    finally:
        upstream.release()
    answer = upstream.headers
    for name in HOP_BY_HOP.intersection(map(str.lower, answer.keys())):
        del answer[name]
    return web.Response(status=upstream.status, body=body, headers=answer)


if __name__ == "__main__":
    serve(forward, on_startup, on_cleanup)
