"""`GET /api/v1/oauth/signed-in`: where a provider sign-in lands by default (OAUTH_SUCCESS_URL):
a small page of ours that takes the one-time code from the address's fragment, removes it
from the address bar and history, swaps it for the session's tokens (`POST
/api/v1/oauth/exchange`) and shows them for copying. Served from this package like the
monitor page; the tokens never appear in a URL, a log or a Referer."""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

STATIC = Path(__file__).parent
PAGE = "/api/v1/oauth/signed-in"
SCRIPT = "/api/v1/oauth/signed-in.js"
PATHS = frozenset({PAGE, SCRIPT})
# no cache, and nothing of this page's address leaves it
HEADERS = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer",
           "Content-Security-Policy": "default-src 'self'; script-src 'self'; "
                                      "style-src 'self' 'unsafe-inline'; frame-ancestors 'none'",
           "X-Content-Type-Options": "nosniff"}


def add_signed_in_page(app: web.Application) -> None:
    async def page(_request: web.Request) -> web.FileResponse:
        return web.FileResponse(STATIC / "signed-in.html", headers=HEADERS)

    async def script(_request: web.Request) -> web.FileResponse:
        return web.FileResponse(STATIC / "signed-in.js", headers=HEADERS)

    app.router.add_get(PAGE, page)
    app.router.add_get(SCRIPT, script)
