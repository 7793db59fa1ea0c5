"""The one declarative table of public routes.

The gateway's router, its validator and the OpenAPI document are all derived from `ROUTES`;
no route is described anywhere else. A route binds a method and a path to an operation of
`contracts.operations` (which declares what it takes and answers) with who may call it. It
is served either by a back-end service over RPC (the operation's `service`) or by the
gateway itself (no service; `gateway.app` binds the operation to a handler of its own).

What the RPC forwarder sends is a `contracts.messages.RpcRequest` (validated body, query and
path params, the caller's identity, the request id and the client address); its wire format
is documented there and in `contracts.rpc`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from contracts import operations as op
from contracts.names import Service
from contracts.operations import Operation
from contracts.validation import RequestModel

_PARAM = re.compile(r":([A-Za-z_][A-Za-z0-9_]*)")


class Access(StrEnum):
    PUBLIC = "public"  # no identity needed; an Authorization header is ignored
    AUTHENTICATED = "authenticated"  # any role with a valid Bearer token
    DEVELOPER = "developer"  # DEVELOPER or ADMIN
    ADMIN = "admin"
    # no identity: the X-Alert-Secret header must equal ALERT_SECRET (docs/api.md section 9.3)
    ALERT_SECRET = "alert-secret"


@dataclass(frozen=True)
class Route:
    method: str
    path: str  # template as docs/api.md writes it, e.g. /api/v1/projects/:id
    operation: Operation  # what it does, with the types it takes and answers
    access: Access
    summary: str
    tags: tuple[str, ...] = ()
    errors: tuple[int, ...] = field(default=())

    @property
    def service(self) -> Service | None:
        return self.operation.service

    @property
    def body(self) -> type[RequestModel] | None:
        return self.operation.body

    @property
    def body_max_items(self) -> int | None:
        return self.operation.body_max_items

    @property
    def query(self) -> type[RequestModel] | None:
        return self.operation.query

    @property
    def params(self) -> type[RequestModel] | None:
        return self.operation.params

    @property
    def response(self) -> Any:
        return self.operation.answer

    @property
    def success_status(self) -> int:
        return self.operation.status

    @property
    def path_params(self) -> tuple[str, ...]:
        return tuple(_PARAM.findall(self.path))

    @property
    def aiohttp_path(self) -> str:
        return _PARAM.sub(r"{\1}", self.path)

    @property
    def openapi_path(self) -> str:
        return self.aiohttp_path

    @property
    def template(self) -> str:
        """The bucket/metric label for this route, e.g. `GET /api/v1/projects/:id`."""
        return f"{self.method} {self.path}"


PUBLIC, AUTHENTICATED = Access.PUBLIC, Access.AUTHENTICATED
DEVELOPER, ADMIN = Access.DEVELOPER, Access.ADMIN

# Paths the platform owns (docs/api.md section 1.5): only admins may attach a service route config
# under them, and an upstream route config never may.
RESERVED_PREFIXES = (
    "/health", "/livez", "/readyz", "/api-docs", "/socket.io", "/monitor", "/api/v1/auth",
    "/api/v1/oauth", "/api/v1/projects", "/api/v1/keys", "/api/v1/routes", "/api/v1/logs",
    "/api/v1/analytics", "/api/v1/alerts", "/api/v1/webhooks", "/api/v1/events", "/metrics",
    "/console",
)


def is_reserved(path: str) -> bool:
    """True when the template could match a path under a reserved prefix: literal segments
    must equal the prefix's, a `:param` segment matches anything (`/:a/:b/:c` could be
    `/api/v1/projects`)."""
    segments = [s for s in path.split("/") if s]
    for prefix in RESERVED_PREFIXES:
        wanted = [s for s in prefix.split("/") if s]
        if len(segments) >= len(wanted) and all(
                s.startswith(":") or s == w for s, w in zip(segments, wanted, strict=False)):
            return True
    return False

ROUTES: tuple[Route, ...] = (
    Route("GET", "/health", op.HEALTH, PUBLIC,
          "Health of the gateway, the four services, Redis and RabbitMQ",
          tags=("health",), errors=(503,)),
    Route("GET", "/livez", op.LIVEZ, PUBLIC, "The process answers (liveness)",
          tags=("health",)),
    Route("GET", "/readyz", op.READYZ, PUBLIC,
          "The process takes traffic: its dependencies answer and it is not draining",
          tags=("health",), errors=(503,)),
    # --- auth (docs/api.md section 3) -------------------------------------------------------------
    Route("POST", "/api/v1/auth/register", op.AUTH_REGISTER, PUBLIC, "Register a developer",
          tags=("auth",), errors=(409,)),
    Route("POST", "/api/v1/auth/login", op.AUTH_LOGIN, PUBLIC, "Log in",
          tags=("auth",), errors=(401, 403)),
    Route("POST", "/api/v1/auth/refresh", op.AUTH_REFRESH, PUBLIC,
          "Rotate a refresh token into a new token pair", tags=("auth",), errors=(401, 403)),
    Route("POST", "/api/v1/auth/logout", op.AUTH_LOGOUT, AUTHENTICATED,
          "Revoke a refresh token of the caller", tags=("auth",)),
    Route("GET", "/api/v1/auth/profile", op.AUTH_PROFILE, AUTHENTICATED, "The caller's profile",
          tags=("auth",), errors=(400,)),
    Route("POST", "/api/v1/auth/send-verification-email", op.AUTH_SEND_VERIFICATION_EMAIL,
          PUBLIC, "Send an email verification link (same answer for any address)",
          tags=("auth",)),
    Route("GET", "/api/v1/auth/verify-email", op.AUTH_VERIFY_EMAIL, PUBLIC,
          "Verify an email address with the token from the mail", tags=("auth",),
          errors=(400,)),
    Route("POST", "/api/v1/auth/forgot-password", op.AUTH_FORGOT_PASSWORD, PUBLIC,
          "Send a password reset link (same answer for any address)", tags=("auth",)),
    Route("POST", "/api/v1/auth/reset-password", op.AUTH_RESET_PASSWORD, PUBLIC,
          "Set a new password with the token from the mail", tags=("auth",), errors=(400,)),
    # --- sign-in with providers (docs/api.md section 16) ------------------------------------------
    Route("GET", "/api/v1/oauth/providers", op.OAUTH_PROVIDERS, PUBLIC,
          "The sign-in providers configured", tags=("oauth",)),
    Route("GET", "/api/v1/oauth/initiate/:provider", op.OAUTH_INITIATE, PUBLIC,
          "Start signing in with a provider (its authorization URL, or a 302 to it)",
          tags=("oauth",), errors=(404, 502)),
    Route("GET", "/api/v1/oauth/:provider/callback", op.OAUTH_CALLBACK, PUBLIC,
          "Where the provider sends the browser back: signs in, then a 302 to "
          "OAUTH_SUCCESS_URL with a one-time code in the fragment", tags=("oauth",),
          errors=(401, 403, 404, 409)),
    Route("POST", "/api/v1/oauth/exchange", op.OAUTH_EXCHANGE, PUBLIC,
          "Swap the one-time code of a provider sign-in for the session's tokens",
          tags=("oauth",), errors=(403,)),
    # --- projects (docs/api.md section 4) ---------------------------------------------------------
    Route("POST", "/api/v1/projects", op.PROJECT_CREATE, DEVELOPER, "Create a project",
          tags=("projects",), errors=(409,)),
    Route("GET", "/api/v1/projects", op.PROJECT_LIST, AUTHENTICATED,
          "List the caller's projects (all projects for an admin)", tags=("projects",)),
    Route("GET", "/api/v1/projects/:id", op.PROJECT_GET, AUTHENTICATED, "Get a project",
          tags=("projects",), errors=(404,)),
    Route("PATCH", "/api/v1/projects/:id", op.PROJECT_UPDATE, DEVELOPER, "Update a project",
          tags=("projects",), errors=(404,)),
    Route("PUT", "/api/v1/projects/:id", op.PROJECT_UPDATE, DEVELOPER,
          "Update a project (partial, as PATCH)", tags=("projects",), errors=(404,)),
    Route("DELETE", "/api/v1/projects/:id", op.PROJECT_DELETE, DEVELOPER,
          "Delete a project with its keys and route configs", tags=("projects",),
          errors=(404,)),
    # --- API keys (docs/api.md section 5) ---------------------------------------------------------
    Route("POST", "/api/v1/projects/:projectId/keys", op.KEY_CREATE, DEVELOPER,
          "Issue an API key (the raw key is shown only in this answer)", tags=("keys",),
          errors=(404, 409)),
    Route("GET", "/api/v1/projects/:projectId/keys", op.KEY_LIST, AUTHENTICATED,
          "List a project's API keys", tags=("keys",), errors=(404,)),
    Route("DELETE", "/api/v1/keys/:id", op.KEY_REVOKE, DEVELOPER, "Revoke an API key",
          tags=("keys",), errors=(404,)),
    Route("GET", "/api/v1/keys/verify", op.KEY_VERIFY, PUBLIC,
          "Check an API key by its SHA-256", tags=("keys",)),
    # --- route configs (docs/api.md section 6) ----------------------------------------------------
    Route("POST", "/api/v1/projects/:projectId/routes", op.ROUTE_CREATE, DEVELOPER,
          "Create a route config", tags=("routes",), errors=(403, 404, 409)),
    Route("GET", "/api/v1/projects/:projectId/routes", op.ROUTE_LIST, AUTHENTICATED,
          "List a project's route configs", tags=("routes",), errors=(404,)),
    Route("GET", "/api/v1/routes/:id", op.ROUTE_GET, AUTHENTICATED, "Get a route config",
          tags=("routes",), errors=(404,)),
    Route("PATCH", "/api/v1/routes/:id", op.ROUTE_UPDATE, DEVELOPER, "Update a route config",
          tags=("routes",), errors=(403, 404, 409)),
    Route("DELETE", "/api/v1/routes/:id", op.ROUTE_DELETE, DEVELOPER, "Delete a route config",
          tags=("routes",), errors=(404,)),
    Route("GET", "/api/v1/routes", op.ROUTE_LIST_ACTIVE, ADMIN,
          "Every active route config (admins only)", tags=("routes",)),
    # --- webhooks (docs/api.md section 15) --------------------------------------------------------
    Route("POST", "/api/v1/projects/:projectId/webhooks", op.WEBHOOK_CREATE, DEVELOPER,
          "Create a webhook (its secret is shown only in this answer)", tags=("webhooks",),
          errors=(404, 409)),
    Route("GET", "/api/v1/projects/:projectId/webhooks", op.WEBHOOK_LIST, AUTHENTICATED,
          "List a project's webhooks", tags=("webhooks",), errors=(404,)),
    Route("GET", "/api/v1/webhooks/:id", op.WEBHOOK_GET, AUTHENTICATED, "Get a webhook",
          tags=("webhooks",), errors=(404,)),
    Route("PATCH", "/api/v1/webhooks/:id", op.WEBHOOK_UPDATE, DEVELOPER, "Update a webhook",
          tags=("webhooks",), errors=(404,)),
    Route("DELETE", "/api/v1/webhooks/:id", op.WEBHOOK_DELETE, DEVELOPER,
          "Delete a webhook with its deliveries", tags=("webhooks",), errors=(404,)),
    Route("POST", "/api/v1/webhooks/:id/rotate-secret", op.WEBHOOK_ROTATE_SECRET, DEVELOPER,
          "A new secret (the old one keeps signing beside it for 24 h)", tags=("webhooks",),
          errors=(404,)),
    Route("POST", "/api/v1/webhooks/:id/test", op.WEBHOOK_TEST, DEVELOPER,
          "Send a webhook.test event now", tags=("webhooks",), errors=(404,)),
    Route("GET", "/api/v1/webhooks/:id/deliveries", op.WEBHOOK_DELIVERIES, AUTHENTICATED,
          "A webhook's deliveries, newest first", tags=("webhooks",), errors=(404,)),
    Route("GET", "/api/v1/webhooks/:id/deliveries/:deliveryId", op.WEBHOOK_DELIVERY_GET,
          AUTHENTICATED, "A delivery with its payload and every attempt", tags=("webhooks",),
          errors=(404,)),
    Route("POST", "/api/v1/webhooks/:id/deliveries/:deliveryId/redeliver",
          op.WEBHOOK_REDELIVER, DEVELOPER, "Attempt a delivery again now", tags=("webhooks",),
          errors=(404,)),
    # --- logs (docs/api.md section 7) -------------------------------------------------------------
    Route("POST", "/api/v1/logs", op.LOG_INGEST, PUBLIC, "Store one external log entry",
          tags=("logs",), errors=(409,)),
    Route("POST", "/api/v1/logs/batch", op.LOG_INGEST_BATCH, PUBLIC,
          "Store up to 1000 external log entries (all or nothing)", tags=("logs",),
          errors=(409,)),
    Route("GET", "/api/v1/logs", op.LOG_LIST, AUTHENTICATED,
          "Log entries visible to the caller, newest first", tags=("logs",)),
    Route("GET", "/api/v1/logs/errors", op.LOG_ERRORS, AUTHENTICATED,
          "Log entries with status >= 400 visible to the caller, newest first",
          tags=("logs",)),
    Route("GET", "/api/v1/logs/:requestId", op.LOG_GET, AUTHENTICATED,
          "One log entry by its request id", tags=("logs",), errors=(404,)),
    # --- analytics (docs/api.md section 8) --------------------------------------------------------
    *(Route("GET", f"/api/v1/analytics/{name}", operation, AUTHENTICATED, summary,
            tags=("analytics",), errors=(404,))
      for name, operation, summary in (
          ("summary", op.ANALYTICS_SUMMARY,
           "Totals, latency, errors, unique users and endpoints of visible traffic"),
          ("requests-over-time", op.ANALYTICS_REQUESTS_OVER_TIME,
           "Requests per hour or day, ascending"),
          ("error-rate", op.ANALYTICS_ERROR_RATE, "Client and server errors and their share"),
          ("latency", op.ANALYTICS_LATENCY,
           "Latency percentiles, average, minimum and maximum"),
          ("top-endpoints", op.ANALYTICS_TOP_ENDPOINTS,
           "Busiest endpoints (method and route template)"),
          ("top-users", op.ANALYTICS_TOP_USERS, "Users with the most requests"),
          ("api-key-usage", op.ANALYTICS_API_KEY_USAGE, "API keys with the most requests"),
      )),
    # --- alerts (docs/api.md section 9) -----------------------------------------------------------
    Route("POST", "/api/v1/alerts/rules", op.ALERT_RULE_CREATE, DEVELOPER,
          "Create an alert rule (owned by the caller)", tags=("alerts",), errors=(404,)),
    Route("GET", "/api/v1/alerts/rules", op.ALERT_RULE_LIST, AUTHENTICATED,
          "The caller's alert rules (all rules for an admin), newest first", tags=("alerts",)),
    Route("GET", "/api/v1/alerts/rules/:id", op.ALERT_RULE_GET, AUTHENTICATED,
          "Get an alert rule", tags=("alerts",), errors=(404,)),
    Route("PUT", "/api/v1/alerts/rules/:id", op.ALERT_RULE_UPDATE, DEVELOPER,
          "Update an alert rule (partial)", tags=("alerts",), errors=(404,)),
    Route("DELETE", "/api/v1/alerts/rules/:id", op.ALERT_RULE_DELETE, DEVELOPER,
          "Delete an alert rule", tags=("alerts",), errors=(404,)),
    Route("GET", "/api/v1/alerts/events", op.ALERT_EVENT_LIST, AUTHENTICATED,
          "Alert events visible to the caller, newest first", tags=("alerts",)),
    Route("PUT", "/api/v1/alerts/events/:id/acknowledge", op.ALERT_EVENT_ACKNOWLEDGE,
          DEVELOPER, "Acknowledge an alert event", tags=("alerts",), errors=(404,)),
    Route("POST", "/api/v1/alerts/emit", op.ALERT_EMIT, Access.ALERT_SECRET,
          "Relay an external alert to admin monitor clients (not stored)", tags=("alerts",)),
)


def check_table(routes: tuple[Route, ...]) -> None:
    """Refuse a table with two entries for one method and template."""
    seen: set[tuple[str, str]] = set()
    for route in routes:
        key = (route.method, _PARAM.sub(":", route.path))
        if key in seen:
            raise ValueError(f"route listed twice: {route.template}")
        seen.add(key)


check_table(ROUTES)
