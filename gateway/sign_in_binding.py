"""A provider sign-in belongs to the browser that started it (login CSRF: RFC 6749 section
10.12, RFC 9700 section 4.7). Without this, someone could start a sign-in, sign in at the
provider as themselves, and send the callback URL (or the code it leads to) to someone else,
whose browser would finish it and be signed in to their account.

- `initiate`'s answer (its JSON, or the 302 of `?redirect=1`) sets a cookie named for the
  new state (`gw_signin_` + 16 hex digits of its SHA-256) holding the state's SHA-256:
  HttpOnly, SameSite=Lax (sent on the provider's top-level redirect back, never on a
  cross-site subrequest), path `/api/v1/oauth`, 10 minutes, Secure when APP_URL is https.
  One cookie per state, so sign-ins in several tabs do not undo each other.
- `callback` with a `state` goes on to the auth service only when that state's cookie came
  with it; else 400. The service still checks the state itself (once, its provider).

A client that is not a browser carries the cookie from initiate to callback like one.
"""

from __future__ import annotations

import hashlib
from urllib.parse import parse_qs, urlsplit

import orjson
from aiohttp import web
from aiohttp.typedefs import Handler

from contracts.errors import BadRequest
from gateway.state import state_of

COOKIE_PREFIX = "gw_signin_"
COOKIE_PATH = "/api/v1/oauth"
COOKIE_MAX_AGE_S = 600  # as long as the state lives (auth_svc.oauth_state)
NOT_THIS_BROWSER = ("This sign-in was started in another browser, or its cookie is gone; "
                    "start again")


def _digest(state: str) -> str:
    return hashlib.sha256(state.encode()).hexdigest()


def cookie_name(state: str) -> str:
    return COOKIE_PREFIX + _digest(state)[:16]


def _state_of(response: web.StreamResponse) -> str | None:
    """The state a successful initiate answer carries (its JSON, or its redirect's query)."""
    if response.status == 302:
        states = parse_qs(urlsplit(response.headers.get("Location", "")).query).get("state")
        return states[0] if states else None
    if response.status == 200 and isinstance(response, web.Response) and response.body:
        body = orjson.loads(bytes(response.body))  # type: ignore[arg-type]
        state = body.get("state") if isinstance(body, dict) else None
        return state if isinstance(state, str) else None
    return None


def binding_started(handler: Handler) -> Handler:
    async def started(request: web.Request) -> web.StreamResponse:
        response = await handler(request)
        state = _state_of(response)
        if state is not None:
            secure = state_of(request).settings.app_url.startswith("https://")
            response.set_cookie(cookie_name(state), _digest(state), max_age=COOKIE_MAX_AGE_S,
                                path=COOKIE_PATH, httponly=True, samesite="Lax",
                                secure=secure)
        return response

    return started


def binding_checked(handler: Handler) -> Handler:
    async def checked(request: web.Request) -> web.StreamResponse:
        state = request.query.get("state")
        if state and request.cookies.get(cookie_name(state)) != _digest(state):
            raise BadRequest(NOT_THIS_BROWSER)
        return await handler(request)

    return checked
