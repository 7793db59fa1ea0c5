"""Step 5: `X-API-Key` -> SHA-256 -> Redis cache -> project service (gateway.api_keys).

A valid key selects the API-key rate-limit tier on, and authenticates, the upstream routes of its
project; it never replaces a Bearer token on platform endpoints. An invalid, revoked or
expired key is refused with 403 at the access gate, after the rate limiter counted it under
the client's address. A key not in the cache costs an RPC, so before asking the project service
the address's tier must still have room (API.md section 13.1); otherwise 429 at once.
"""

from __future__ import annotations

from aiohttp import web

from contracts.errors import ApiError, TooManyRequests
from gateway.state import state_of
from gateway.steps.keys import API_KEY, AUTH_ERROR, DEADLINE_MS
from gateway.steps.rate_limiter import check_address_tier


@web.middleware
async def api_key_validator(request: web.Request, handler: web.Handler) -> web.StreamResponse:
    raw = request.headers.get("X-API-Key")
    if raw:
        try:
            request[API_KEY] = await state_of(request).api_keys.verify(
                raw, deadline_ms=request[DEADLINE_MS],
                before_remote=lambda: check_address_tier(request))
        except TooManyRequests:
            raise
        except ApiError as exc:
            request.setdefault(AUTH_ERROR, exc)
    return await handler(request)
