"""Step 5: `X-API-Key` -> SHA-256 -> Redis cache -> project service (gateway.api_keys).

A valid key selects the API-key rate-limit tier and authenticates upstream routes of its
project; it never replaces a Bearer token on platform endpoints. An invalid, revoked or
expired key is refused with 403 at the access gate, after the rate limiter counted it.
"""

from __future__ import annotations

from aiohttp import web

from contracts.errors import ApiError
from gateway.state import state_of
from gateway.steps.keys import API_KEY, AUTH_ERROR, DEADLINE_MS


@web.middleware
async def api_key_validator(request: web.Request, handler: web.Handler) -> web.StreamResponse:
    raw = request.headers.get("X-API-Key")
    if raw:
        try:
            request[API_KEY] = await state_of(request).api_keys.verify(
                raw, deadline_ms=request[DEADLINE_MS])
        except ApiError as exc:
            request.setdefault(AUTH_ERROR, exc)
    return await handler(request)
