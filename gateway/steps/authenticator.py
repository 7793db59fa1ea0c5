"""Step 4 (who is calling) and the access gate after step 7 (may they call this route).

Public routes ignore any Authorization header (API.md section 3.2). Elsewhere the header must
be exactly `Bearer <JWT>`; the token is verified with the algorithm pinned and issuer and
audience checked (contracts.identity).

A bad credential is not refused here but remembered: the rate limiter (7) must first count
the request under the client's address (API.md section 13.1), then the access gate refuses it
and applies the role gate of API.md section 1.3: a viewer may not write (except log out), and
routes for developers or admins refuse lower roles. The alert bridge takes no identity but
a shared secret, checked by the gate too (before the body is validated).
"""

from __future__ import annotations

import hmac
import time

from aiohttp import web

from contracts.errors import ApiError, Forbidden, Unauthorized
from contracts.identity import Identity, Role, verify_access_token
from contracts.routes import Access, Route
from gateway.route_configs import RouteConfig
from gateway.router import route_config_of, route_of
from gateway.state import state_of
from gateway.steps.keys import API_KEY, AUTH_ERROR, CALLER, IDENTITY

WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
VIEWER_MAY_WRITE = frozenset({"auth.logout"})
MINIMUM_ROLES = {
    Access.AUTHENTICATED: frozenset(Role),
    Access.DEVELOPER: frozenset({Role.DEVELOPER, Role.ADMIN}),
    Access.ADMIN: frozenset({Role.ADMIN}),
}


@web.middleware
async def authenticator(request: web.Request, handler: web.Handler) -> web.StreamResponse:
    bearer = _bearer_use(request)
    if bearer is not None:
        try:
            identity = authenticate(request, state_of(request).settings.access_token_secret)
        except ApiError as exc:
            if bearer == "required":
                request[AUTH_ERROR] = exc
            # "optional": a bad token on an anonymous upstream is simply not an identity
        else:
            request[CALLER] = identity.caller
            request[IDENTITY] = identity
    return await handler(request)


def _bearer_use(request: web.Request) -> str | None:
    """"required" on non-public platform routes; on upstream route configs a sent token is
    read (it may be the owner's, and a valid one selects the user's rate-limit tier), and
    refused when bad only if the config requires auth; None where it is ignored."""
    route = route_of(request)
    if route is not None:
        return "required" if route.access in MINIMUM_ROLES else None
    config = route_config_of(request)
    if config is None or config.upstream_url is None or "Authorization" not in request.headers:
        return None
    return "required" if config.auth_required else "optional"


@web.middleware
async def access_gate(request: web.Request, handler: web.Handler) -> web.StreamResponse:
    failure = request.get(AUTH_ERROR)
    if failure is not None:
        raise failure
    route = route_of(request)
    if route is not None:
        if route.access is Access.ALERT_SECRET:
            check_alert_secret(request)
        elif route.access is not Access.PUBLIC:
            authorize(request[IDENTITY], route, request.method)
    else:
        config = route_config_of(request)
        if config is not None and config.upstream_url and config.auth_required:
            authorize_upstream(request, config)
    return await handler(request)


def check_alert_secret(request: web.Request) -> None:
    """Constant-time comparison, so the time taken says nothing about how much matched."""
    sent = request.headers.get("X-Alert-Secret", "").encode()
    expected = state_of(request).settings.alert_secret.encode()
    if not hmac.compare_digest(sent, expected):
        raise Unauthorized("Invalid alert secret")


def authorize_upstream(request: web.Request, config: RouteConfig) -> None:
    """An authRequired upstream takes a key of its project, or the owner's or an admin's
    Bearer token (API.md section 6.4)."""
    key = request.get(API_KEY)
    if key is not None and key["projectId"] == config.project_id:
        return
    identity = request.get(IDENTITY)
    if identity is not None and (identity.role is Role.ADMIN
                                 or identity.user_id == config.owner_id):
        return
    raise Unauthorized("A valid API key of this project or its owner's token is required")


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


def authenticate(request: web.Request, secret: str) -> Identity:
    header = request.headers.get("Authorization", "")
    if not header.startswith("Bearer ") or not header[7:]:
        raise Unauthorized("Missing or invalid Authorization header")
    return request.app[VERIFIED_TOKENS].verify(secret, header[7:])


def authorize(identity: Identity, route: Route, method: str) -> None:
    if (identity.role is Role.VIEWER and method in WRITE_METHODS
            and route.operation not in VIEWER_MAY_WRITE):
        raise Forbidden(
            f"Read-only role cannot perform {method} operations. "
            "View only roles cannot modify resources."
        )
    if identity.role not in MINIMUM_ROLES[route.access]:
        raise Forbidden("Insufficient permissions")
