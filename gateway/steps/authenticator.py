"""Step 4: who is calling, and may they call this route.

Public routes ignore any Authorization header (API.md section 3.2). Elsewhere the header must
be exactly `Bearer <JWT>`; the token is verified with the algorithm pinned and issuer and
audience checked (contracts.identity). Then the role gate of API.md section 1.3: a viewer may
not write (except log out), and routes for developers or admins refuse lower roles.
"""

from __future__ import annotations

from aiohttp import web

from contracts.errors import Forbidden, Unauthorized
from contracts.identity import Identity, Role, verify_access_token
from contracts.routes import Access, Route
from gateway.router import route_of
from gateway.state import state_of
from gateway.steps.keys import CALLER

WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
VIEWER_MAY_WRITE = frozenset({"auth.logout"})
MINIMUM_ROLES = {
    Access.AUTHENTICATED: frozenset(Role),
    Access.DEVELOPER: frozenset({Role.DEVELOPER, Role.ADMIN}),
    Access.ADMIN: frozenset({Role.ADMIN}),
}


@web.middleware
async def authenticator(request: web.Request, handler: web.Handler) -> web.StreamResponse:
    route = route_of(request)
    if route is not None and route.access is not Access.PUBLIC:
        identity = authenticate(request, state_of(request).settings.access_token_secret)
        authorize(identity, route, request.method)
        request[CALLER] = identity.to_wire()
    return await handler(request)


def authenticate(request: web.Request, secret: str) -> Identity:
    header = request.headers.get("Authorization", "")
    if not header.startswith("Bearer ") or not header[7:]:
        raise Unauthorized("Missing or invalid Authorization header")
    return verify_access_token(secret, header[7:])


def authorize(identity: Identity, route: Route, method: str) -> None:
    if (identity.role is Role.VIEWER and method in WRITE_METHODS
            and route.operation not in VIEWER_MAY_WRITE):
        raise Forbidden(
            f"Read-only role cannot perform {method} operations. "
            "View only roles cannot modify resources."
        )
    if identity.role not in MINIMUM_ROLES[route.access]:
        raise Forbidden("Insufficient permissions")
