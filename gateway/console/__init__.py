"""`/console/`: the developer console (docs/api.md section 17), static files served from this
package like the monitor page (no CDN, no build step): a page of its own that uses only the
public API through this gateway. Exempt traffic (neither rate limited nor logged), and a
reserved prefix, so no route config can take it.

Mailed links land here too: `GET /api/v1/auth/verify-email?token=…` and
`GET /api/v1/auth/reset-password?token=…` asked for HTML (a browser following the link) are
sent to the console's pages, the token in the fragment (`/console/#/verify-email?token=…`),
which no server and no Referer sees; JSON clients get the API's answers as before."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote

from aiohttp import web
from aiohttp.typedefs import Handler

from contracts.errors import NotFound

STATIC = Path(__file__).parent / "static"
PREFIX = "/console/"
PATHS = frozenset({"/console"})
RESET_PASSWORD_LINK = "/api/v1/auth/reset-password"
HEADERS = {"Referrer-Policy": "no-referrer", "X-Content-Type-Options": "nosniff",
           "Content-Security-Policy": "default-src 'self'; script-src 'self'; "
                                      "style-src 'self'; img-src 'self' data:; "
                                      "connect-src 'self'; frame-ancestors 'none'"}


def add_console(app: web.Application) -> None:
    async def index(_request: web.Request) -> web.FileResponse:
        return web.FileResponse(STATIC / "index.html",
                                headers={**HEADERS, "Cache-Control": "no-cache"})

    async def to_index(_request: web.Request) -> web.Response:
        raise web.HTTPMovedPermanently(PREFIX)

    async def reset_password_link(request: web.Request) -> web.Response:
        # the mailed link (docs/api.md section 3.1); the API itself resets with a POST
        if wants_html(request):
            return to_console_page("reset-password", request)
        raise NotFound("Route not found")  # what a GET here has always answered

    app.router.add_get("/console", to_index)
    # before the static files: the page only at /console/, with its headers
    app.router.add_get("/console/index.html", to_index)
    app.router.add_get(RESET_PASSWORD_LINK, reset_password_link)
    app.router.add_get(PREFIX, index)
    app.router.add_static(PREFIX, STATIC, show_index=False)
    app.on_response_prepare.append(_revalidated)


async def _revalidated(request: web.Request, response: web.StreamResponse) -> None:
    # the page and its script must come from one release: after an upgrade a browser asks
    # again (a 304 when nothing changed) instead of running an old script on a new page
    if request.path.startswith(PREFIX):
        response.headers.setdefault("Cache-Control", "no-cache")
        response.headers.setdefault("X-Content-Type-Options", "nosniff")


def wants_html(request: web.Request) -> bool:
    """A browser following a link: it asks for HTML, and before JSON if for both."""
    accept = request.headers.get("Accept", "")
    html, json = accept.find("text/html"), accept.find("application/json")
    return html >= 0 and (json < 0 or html < json)


def to_console_page(page: str, request: web.Request) -> web.Response:
    token = request.query.get("token", "")
    return web.Response(status=302, headers={
        "Location": f"{PREFIX}#/{page}?token={quote(token, safe='')}",
        "Cache-Control": "no-store", "Referrer-Policy": "no-referrer"})


def html_to_console(page: str) -> Callable[[Handler], Handler]:
    """Wraps a GET route: a browser is sent to the console's `page` with the link's token."""

    def wrap(handler: Handler) -> Handler:
        async def route(request: web.Request) -> web.StreamResponse:
            if wants_html(request):
                return to_console_page(page, request)
            return await handler(request)

        return route

    return wrap
