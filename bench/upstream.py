"""The benchmark's upstream: a tiny aiohttp app answering a small JSON body."""

import sys

import uvloop
from aiohttp import web

BODY = b'{"id":7,"name":"widget","price":12.5,"tags":["a","b","c"]}'


async def item(_request: web.Request) -> web.Response:
    return web.Response(body=BODY, content_type="application/json")


app = web.Application()
app.router.add_get("/{tail:.*}", item)

if __name__ == "__main__":
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None,
                loop=uvloop.new_event_loop())
