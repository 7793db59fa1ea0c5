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
- The callback's 302 carries the one-time exchange code in its fragment: it sets a cookie
  named for that code (`gw_code_` + 16 hex digits of its SHA-256, path `/api/v1/oauth`, 60
  s), and `exchange` swaps a code only with its cookie; else 400. So a code cannot be
  carried to another browser either (`/console/#code=…` sent to someone else). This holds
  when OAUTH_SUCCESS_URL is on the gateway's own origin (APP_URL: the console, the signed-in
  page); an application elsewhere swaps its codes from its own origin or its server, where
  the gateway's cookie never goes, and binds them to its own session itself.

A client that is not a browser carries the cookie from initiate to callback like one.
"""

from __future__ import annotations

import hashlib
from urllib.parse import parse_qs, urlsplit

import orjson
from aiohttp import web
from aiohttp.typedefs import Handler

from contracts.errors import BadRequest
from gateway.context import context_of
from gateway.state import state_of

COOKIE_PREFIX = "gw_signin_"
CODE_COOKIE_PREFIX = "gw_code_"
CODE_COOKIE_MAX_AGE_S = 60  # as long as the code lives
COOKIE_PATH = "/api/v1/oauth"
COOKIE_MAX_AGE_S = 600  # as long as the state lives (auth_svc.oauth_state)
NOT_THIS_BROWSER = ("This sign-in was started in another browser, or its cookie is gone; "
                    "start again")


def _digest(state: str) -> str:
    return hashlib.sha256(state.encode()).hexdigest()


def cookie_name(state: str) -> str:
    return COOKIE_PREFIX + _digest(state)[:16]


def code_cookie_name(code: str) -> str:
    return CODE_COOKIE_PREFIX + _digest(code)[:16]


def codes_bound(request: web.Request) -> bool:
    """Whether the success page is the gateway's own (same scheme, host and port)."""
    settings = state_of(request).settings
    return same_origin(settings.oauth_success_url, settings.app_url)


def same_origin(one: str, other: str) -> bool:
    def origin(url: str) -> tuple[str, str | None, int | None]:
        parts = urlsplit(url)
        default = {"http": 80, "https": 443}.get(parts.scheme)
        return parts.scheme, parts.hostname, parts.port or default

    return origin(one) == origin(other)


def _bound_cookie(request: web.Request, response: web.StreamResponse, name: str, value: str,
                  max_age: int) -> None:
    secure = state_of(request).settings.app_url.startswith("https://")
    response.set_cookie(name, _digest(value), max_age=max_age, path=COOKIE_PATH,
                        httponly=True, samesite="Lax", secure=secure)


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
            _bound_cookie(request, response, cookie_name(state), state, COOKIE_MAX_AGE_S)
        return response

    return started


def binding_checked(handler: Handler) -> Handler:
    async def checked(request: web.Request) -> web.StreamResponse:
        state = request.query.get("state")
        if state and request.cookies.get(cookie_name(state)) != _digest(state):
            raise BadRequest(NOT_THIS_BROWSER)
        response = await handler(request)
        code = response.headers.get("Location", "").partition("#code=")[2]
        if response.status == 302 and code and codes_bound(request):
            _bound_cookie(request, response, code_cookie_name(code), code,
                          CODE_COOKIE_MAX_AGE_S)
        return response

    return checked


def code_checked(handler: Handler) -> Handler:
    async def checked(request: web.Request) -> web.StreamResponse:
        # the validator (step 8) has read the body: `{code}`, a string
        body = context_of(request).body
        code = body.get("code") if isinstance(body, dict) else None
        if isinstance(code, str) and codes_bound(request) and \
                request.cookies.get(code_cookie_name(code)) != _digest(code):
            raise BadRequest(NOT_THIS_BROWSER)
        return await handler(request)

    return checked
