"""CORS as docs/api.md section 1.2: the origin is reflected with credentials allowed; preflights are
answered here (not forwarded, not rate limited); the rate-limit, cache and trace headers are
exposed.
Socket.IO follows the same policy."""

from __future__ import annotations

from aiohttp import web

from gateway.context import RequestContext

ALLOWED_METHODS = "GET, POST, PUT, PATCH, DELETE, OPTIONS"
DEFAULT_ALLOWED_HEADERS = "Content-Type, Authorization"
EXPOSED_HEADERS = ("X-RateLimit-Limit, X-RateLimit-Remaining, X-RateLimit-Reset, X-Cache, "
                   "traceresponse")
MAX_AGE_S = "600"


def preflight_answer(request: web.Request) -> web.Response:
    """The answer to a real preflight (gateway.router.is_preflight)."""
    return web.Response(status=204, headers={
        "Access-Control-Allow-Origin": request.headers["Origin"],
        "Access-Control-Allow-Credentials": "true", "Vary": "Origin",
        "Access-Control-Allow-Methods": ALLOWED_METHODS,
        "Access-Control-Allow-Headers": request.headers.get(
            "Access-Control-Request-Headers", DEFAULT_ALLOWED_HEADERS),
        "Access-Control-Max-Age": MAX_AGE_S,
    })


def cors(context: RequestContext, request: web.Request) -> None:
    origin = request.headers.get("Origin")
    if origin is not None:
        headers = context.response_headers
        headers["Access-Control-Allow-Origin"] = origin
        headers["Access-Control-Allow-Credentials"] = "true"
        headers["Vary"] = "Origin"
        headers["Access-Control-Expose-Headers"] = EXPOSED_HEADERS
