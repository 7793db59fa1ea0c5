"""Step 5: `X-API-Key` -> SHA-256 -> Redis cache -> project service (gateway.api_keys).

A valid key selects the API-key rate-limit tier on, and authenticates, the upstream routes of
its project; it never replaces a Bearer token on platform endpoints. An invalid, revoked or
expired key is refused with 403 at the access gate, after the rate limiter counted it under
the client's address. A key not in the cache costs an RPC, so before asking the project service
the address's tier must still have room (docs/api.md section 13.1); otherwise 429 at once.
"""

from __future__ import annotations

from collections.abc import Awaitable

from aiohttp import web

from contracts.errors import ApiError, TooManyRequests
from gateway.context import RequestContext
from gateway.steps.rate_limiter import check_address_tier


def api_key_validator(context: RequestContext, request: web.Request
                      ) -> Awaitable[None] | None:
    """Something to wait for only when a key was sent."""
    raw = request.headers.get("X-API-Key")
    return _verify(context, request, raw) if raw else None


async def _verify(context: RequestContext, request: web.Request, raw: str) -> None:
    try:
        context.api_key = await context.state.api_keys.verify(
            raw, deadline_ms=context.deadline_ms,
            before_remote=lambda: check_address_tier(context, request))
    except TooManyRequests:
        raise
    except ApiError as exc:
        if context.auth_error is None:
            context.auth_error = exc
