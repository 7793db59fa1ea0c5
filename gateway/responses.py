"""JSON responses rendered with orjson (the gateway's only serializer), and redirects."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None
                  ) -> web.Response:
    return web.Response(
        body=orjson.dumps(body), status=status, headers=headers,
        content_type="application/json",
    )


def redirect_response(location: str) -> web.Response:
    """A 302 to `location`: never cached, and the page it leads to learns nothing of this
    URL (it may carry a provider's code)."""
    return web.Response(status=302, headers={
        "Location": location, "Cache-Control": "no-store", "Referrer-Policy": "no-referrer"})
