"""Step 4 (who is calling) and the access gate after step 7 (may they call this route).

Public routes ignore any Authorization header (docs/api.md section 3.2): the pipeline does not plan
this step for them. Elsewhere the header must be exactly `Bearer <JWT>`; the token is
verified with the algorithm pinned and issuer and audience checked (contracts.identity).

A bad credential is not refused here but remembered: the rate limiter (7) must first count
the request under the client's address (docs/api.md section 13.1), then the access gate refuses it
and applies the role gate of docs/api.md section 1.3: a viewer may not write (except log out), and
routes for developers or admins refuse lower roles. The alert bridge takes no identity but
a shared secret, checked by the gate too (before the body is validated).
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Callable

from aiohttp import web

from contracts import operations as op
from contracts.errors import ApiError, Forbidden, Unauthorized
from contracts.identity import Identity, Role, verify_access_token
from contracts.routes import Access, Route
from gateway.context import RequestContext
from gateway.state import state_of

Step = Callable[[RequestContext, web.Request], None]

WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
VIEWER_MAY_WRITE = frozenset({op.AUTH_LOGOUT})
MINIMUM_ROLES = {
    Access.AUTHENTICATED: frozenset(Role),
    Access.DEVELOPER: frozenset({Role.DEVELOPER, Role.ADMIN}),
    Access.ADMIN: frozenset({Role.ADMIN}),
}


def authenticate(context: RequestContext, request: web.Request) -> None:
    """Platform routes that take an identity: the Bearer token is required (a bad one is
    refused at the gate)."""
    try:
        context.identity = verify_bearer(request)
    except ApiError as exc:
        context.auth_error = exc


def authenticate_optionally(context: RequestContext, request: web.Request) -> None:
    """Upstream route configs and requests no route answers: a sent token is read (it may be
    the owner's; a valid one selects the user's rate-limit tier and makes the request, a 404
    included, the user's in logs, analytics and the monitor); a bad one is refused only if
    the config requires auth, and otherwise is simply not an identity."""
    if "Authorization" not in request.headers:
        return
    try:
        context.identity = verify_bearer(request)
    except ApiError as exc:
        if context.config is not None and context.config.auth_required:
            context.auth_error = exc


def refuse_bad_credentials(context: RequestContext, _request: web.Request) -> None:
    """The access gate's first part, on every counted route: a bad token or key (remembered
    by steps 4 and 5) is refused after the rate limiter counted the request."""
    if context.auth_error is not None:
        raise context.auth_error


def role_gate(route: Route) -> Step | None:
    """The access gate's second part for one platform route, decided once per route."""
    if route.access is Access.ALERT_SECRET:
        return lambda _context, request: check_alert_secret(request)
    if route.access is Access.PUBLIC:
        return None

    def gate(context: RequestContext, request: web.Request) -> None:
        assert context.identity is not None  # else auth_error was raised
        authorize(context.identity, route, request.method)

    return gate


def upstream_gate(context: RequestContext, _request: web.Request) -> None:
    """An authRequired upstream takes a key of its project, or the owner's or an admin's
    Bearer token (docs/api.md section 6.4)."""
    config = context.config
    assert config is not None
    key = context.api_key
    if key is not None and key.project_id == config.project_id:
        return
    identity = context.identity
    if identity is not None and (identity.role is Role.ADMIN
                                 or identity.user_id == config.owner_id):
        return
    raise Unauthorized("A valid API key of this project or its owner's token is required")


def check_alert_secret(request: web.Request) -> None:
    """Constant-time comparison, so the time taken says nothing about how much matched."""
    sent = request.headers.get("X-Alert-Secret", "").encode()
    expected = state_of(request).settings.alert_secret.encode()
    if not hmac.compare_digest(sent, expected):
        raise Unauthorized("Invalid alert secret")


class VerifiedTokens:
    """Tokens already verified, until they expire: a client sends the same token with every
    request, and decoding plus HMAC-checking it each time is the gateway's largest fixed cost.
    Bounded; only successes are remembered (a bad token costs a full check every time)."""

    def __init__(self, max_entries: int = 10_000) -> None:
        self._max = max_entries
        self._entries: dict[str, Identity] = {}

    def verify(self, secret: str, token: str) -> Identity:
        identity = self._entries.get(token)
        if identity is not None:
            if identity.expires_at > time.time():
                return identity
            del self._entries[token]
        identity = verify_access_token(secret, token)
        if len(self._entries) >= self._max:
            self._entries.pop(next(iter(self._entries)))  # oldest first (insertion order)
        self._entries[token] = identity
        return identity


VERIFIED_TOKENS = web.AppKey("verified_tokens", VerifiedTokens)


def verify_bearer(request: web.Request) -> Identity:
    header = request.headers.get("Authorization", "")
    if not header.startswith("Bearer ") or not header[7:]:
        raise Unauthorized("Missing or invalid Authorization header")
    return request.app[VERIFIED_TOKENS].verify(
        state_of(request).settings.access_token_secret, header[7:])


def authorize(identity: Identity, route: Route, method: str) -> None:
    if (identity.role is Role.VIEWER and method in WRITE_METHODS
            and route.operation not in VIEWER_MAY_WRITE):
        raise Forbidden(
            f"Read-only role cannot perform {method} operations. "
            "View only roles cannot modify resources."
        )
    if identity.role not in MINIMUM_ROLES[route.access]:
        raise Forbidden("Insufficient permissions")
