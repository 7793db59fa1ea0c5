"""CORS as API.md section 1.2: the origin is reflected with credentials allowed; preflights are
answered here (not forwarded, not rate limited); the rate-limit and cache headers are exposed.
Socket.IO follows the same policy."""

from __future__ import annotations

from aiohttp import web

from gateway.steps.keys import RESPONSE_HEADERS

ALLOWED_METHODS = "GET, POST, PUT, PATCH, DELETE, OPTIONS"
DEFAULT_ALLOWED_HEADERS = "Content-Type, Authorization"
EXPOSED_HEADERS = "X-RateLimit-Limit, X-RateLimit-Remaining, X-RateLimit-Reset, X-Cache"
MAX_AGE_S = "600"


@web.middleware
async def cors(request: web.Request, handler: web.Handler) -> web.StreamResponse:
    origin = request.headers.get("Origin")
    if origin is None:
        return await handler(request)
    headers = {"Access-Control-Allow-Origin": origin,
               "Access-Control-Allow-Credentials": "true", "Vary": "Origin"}
    if request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers:
        return web.Response(status=204, headers={
            **headers,
            "Access-Control-Allow-Methods": ALLOWED_METHODS,
            "Access-Control-Allow-Headers": request.headers.get(
                "Access-Control-Request-Headers", DEFAULT_ALLOWED_HEADERS),
            "Access-Control-Max-Age": MAX_AGE_S,
        })
    request[RESPONSE_HEADERS].update(
        {**headers, "Access-Control-Expose-Headers": EXPOSED_HEADERS})
    return await handler(request)
