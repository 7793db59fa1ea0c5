"""`GET /monitor/`: the monitor page's static files, served from this package (no CDN)."""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

STATIC = Path(__file__).parent / "static"


def add_monitor_page(app: web.Application) -> None:
    async def index(_request: web.Request) -> web.FileResponse:
        return web.FileResponse(STATIC / "index.html")

    async def to_index(_request: web.Request) -> web.Response:
        raise web.HTTPMovedPermanently("/monitor/")

    app.router.add_get("/monitor", to_index)
    app.router.add_get("/monitor/", index)
    app.router.add_static("/monitor/", STATIC, show_index=False)
