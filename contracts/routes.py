"""The one declarative table of public routes.

The gateway's router, its validator and the OpenAPI document are all derived from `ROUTES`;
no route is described anywhere else. A route is served either by a back-end service over RPC
(`service` set) or by the gateway itself (`service` None, `operation` names a gateway handler).

What the RPC forwarder sends is a `contracts.messages.RpcRequest` (validated body, query and
path params, the caller's identity, the request id and the client address); its wire format
is documented there and in `contracts.rpc`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from contracts.names import Service
from contracts.schemas import alerts, analytics, auth, health, logs, projects
from contracts.schemas.common import IdParams, Message, ProjectIdParams
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
    operation: str
    access: Access
    summary: str
    service: Service | None = None
    tags: tuple[str, ...] = ()
    body: type[RequestModel] | None = None
    # when set, the body is a JSON array of `body` objects, at most this many
    body_max_items: int | None = None
    query: type[RequestModel] | None = None
    params: type[RequestModel] | None = None
    # the success answer's type (a model or e.g. list[Model]); None only for 204 No Content
    response: Any = None
    success_status: int = 200
    errors: tuple[int, ...] = field(default=())

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
AUTH, PROJECT, LOGGING = Service.AUTH, Service.PROJECT, Service.LOGGING
ANALYTICS = Service.ANALYTICS

# Paths the platform owns (docs/api.md section 1.5): only admins may attach a service route config
# under them, and an upstream route config never may.
RESERVED_PREFIXES = (
    "/health", "/api-docs", "/socket.io", "/monitor", "/api/v1/auth", "/api/v1/oauth",
    "/api/v1/projects", "/api/v1/keys", "/api/v1/routes", "/api/v1/logs", "/api/v1/analytics",
    "/api/v1/alerts", "/api/v1/webhooks", "/api/v1/events", "/metrics",
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
    Route(
        "GET", "/health", "health", PUBLIC,
        "Health of the gateway, the four services, Redis and RabbitMQ",
        tags=("health",), response=health.Health, errors=(503,),
    ),
    # --- auth (docs/api.md section 3) -------------------------------------------------------------
    Route("POST", "/api/v1/auth/register", "auth.register", PUBLIC, "Register a developer",
          service=AUTH, tags=("auth",), body=auth.RegisterBody, response=auth.Registered,
          success_status=201, errors=(409,)),
    Route("POST", "/api/v1/auth/login", "auth.login", PUBLIC, "Log in",
          service=AUTH, tags=("auth",), body=auth.LoginBody, response=auth.Session,
          errors=(401, 403)),
    Route("POST", "/api/v1/auth/refresh", "auth.refresh", PUBLIC,
          "Rotate a refresh token into a new token pair",
          service=AUTH, tags=("auth",), body=auth.RefreshBody, response=auth.TokenPair,
          errors=(401, 403)),
    Route("POST", "/api/v1/auth/logout", "auth.logout", AUTHENTICATED,
          "Revoke a refresh token of the caller",
          service=AUTH, tags=("auth",), body=auth.RefreshBody, response=Message),
    Route("GET", "/api/v1/auth/profile", "auth.profile", AUTHENTICATED, "The caller's profile",
          service=AUTH, tags=("auth",), response=auth.Profile, errors=(400,)),
    Route("POST", "/api/v1/auth/send-verification-email", "auth.send_verification_email",
          PUBLIC, "Send an email verification link (same answer for any address)",
          service=AUTH, tags=("auth",), body=auth.EmailBody, response=Message),
    Route("GET", "/api/v1/auth/verify-email", "auth.verify_email", PUBLIC,
          "Verify an email address with the token from the mail",
          service=AUTH, tags=("auth",), query=auth.TokenQuery, response=Message,
          errors=(400,)),
    Route("POST", "/api/v1/auth/forgot-password", "auth.forgot_password", PUBLIC,
          "Send a password reset link (same answer for any address)",
          service=AUTH, tags=("auth",), body=auth.EmailBody, response=Message),
    Route("POST", "/api/v1/auth/reset-password", "auth.reset_password", PUBLIC,
          "Set a new password with the token from the mail",
          service=AUTH, tags=("auth",), body=auth.ResetPasswordBody, response=Message,
          errors=(400,)),
    # --- projects (docs/api.md section 4) ---------------------------------------------------------
    Route("POST", "/api/v1/projects", "project.create", DEVELOPER, "Create a project",
          service=PROJECT, tags=("projects",), body=projects.ProjectBody, success_status=201,
          errors=(409,), response=projects.Project),
    Route("GET", "/api/v1/projects", "project.list", AUTHENTICATED,
          "List the caller's projects (all projects for an admin)",
          service=PROJECT, tags=("projects",), query=projects.ProjectListQuery,
          response=projects.ProjectPage),
    Route("GET", "/api/v1/projects/:id", "project.get", AUTHENTICATED, "Get a project",
          service=PROJECT, tags=("projects",), params=IdParams, errors=(404,),
          response=projects.Project),
    Route("PATCH", "/api/v1/projects/:id", "project.update", DEVELOPER, "Update a project",
          service=PROJECT, tags=("projects",), params=IdParams, body=projects.ProjectPatch,
          errors=(404,), response=projects.Project),
    Route("PUT", "/api/v1/projects/:id", "project.update", DEVELOPER,
          "Update a project (partial, as PATCH)",
          service=PROJECT, tags=("projects",), params=IdParams, body=projects.ProjectPatch,
          response=projects.Project, errors=(404,)),
    Route("DELETE", "/api/v1/projects/:id", "project.delete", DEVELOPER,
          "Delete a project with its keys and route configs",
          service=PROJECT, tags=("projects",), params=IdParams, errors=(404,), response=Message),
    # --- API keys (docs/api.md section 5) ---------------------------------------------------------
    Route("POST", "/api/v1/projects/:projectId/keys", "key.create", DEVELOPER,
          "Issue an API key (the raw key is shown only in this answer)",
          service=PROJECT, tags=("keys",), params=ProjectIdParams, body=projects.KeyBody,
          success_status=201, errors=(404, 409), response=projects.IssuedKey),
    Route("GET", "/api/v1/projects/:projectId/keys", "key.list", AUTHENTICATED,
          "List a project's API keys", service=PROJECT, tags=("keys",),
          params=ProjectIdParams, errors=(404,), response=list[projects.ApiKey]),
    Route("DELETE", "/api/v1/keys/:id", "key.revoke", DEVELOPER, "Revoke an API key",
          service=PROJECT, tags=("keys",), params=IdParams, errors=(404,), response=Message),
    Route("GET", "/api/v1/keys/verify", "key.verify", PUBLIC,
          "Check an API key by its SHA-256", service=PROJECT, tags=("keys",),
          query=projects.KeyVerifyQuery, response=projects.KeyVerdict),
    # --- route configs (docs/api.md section 6) ----------------------------------------------------
    Route("POST", "/api/v1/projects/:projectId/routes", "route.create", DEVELOPER,
          "Create a route config", service=PROJECT, tags=("routes",), params=ProjectIdParams,
          body=projects.RouteBody, success_status=201, errors=(403, 404, 409),
          response=projects.RouteConfig),
    Route("GET", "/api/v1/projects/:projectId/routes", "route.list", AUTHENTICATED,
          "List a project's route configs", service=PROJECT, tags=("routes",),
          params=ProjectIdParams, errors=(404,), response=list[projects.RouteConfig]),
    Route("GET", "/api/v1/routes/:id", "route.get", AUTHENTICATED, "Get a route config",
          service=PROJECT, tags=("routes",), params=IdParams, errors=(404,),
          response=projects.RouteConfig),
    Route("PATCH", "/api/v1/routes/:id", "route.update", DEVELOPER, "Update a route config",
          service=PROJECT, tags=("routes",), params=IdParams, body=projects.RoutePatch,
          errors=(403, 404, 409), response=projects.RouteConfig),
    Route("DELETE", "/api/v1/routes/:id", "route.delete", DEVELOPER, "Delete a route config",
          service=PROJECT, tags=("routes",), params=IdParams, errors=(404,), response=Message),
    Route("GET", "/api/v1/routes", "route.list_active", ADMIN,
          "Every active route config (admins only)", service=PROJECT, tags=("routes",),
          response=list[projects.ActiveRouteConfig]),
    # --- logs (docs/api.md section 7) -------------------------------------------------------------
    Route("POST", "/api/v1/logs", "log.ingest", PUBLIC, "Store one external log entry",
          service=LOGGING, tags=("logs",), body=logs.LogIngest, success_status=201,
          errors=(409,), response=Message),
    Route("POST", "/api/v1/logs/batch", "log.ingest_batch", PUBLIC,
          "Store up to 1000 external log entries (all or nothing)",
          service=LOGGING, tags=("logs",), body=logs.LogIngest, body_max_items=logs.MAX_BATCH,
          success_status=201, errors=(409,), response=Message),
    Route("GET", "/api/v1/logs", "log.list", AUTHENTICATED,
          "Log entries visible to the caller, newest first",
          service=LOGGING, tags=("logs",), query=logs.LogListQuery, response=logs.LogPage),
    Route("GET", "/api/v1/logs/errors", "log.errors", AUTHENTICATED,
          "Log entries with status >= 400 visible to the caller, newest first",
          service=LOGGING, tags=("logs",), query=logs.LogListQuery, response=logs.LogPage),
    Route("GET", "/api/v1/logs/:requestId", "log.get", AUTHENTICATED,
          "One log entry by its request id", service=LOGGING, tags=("logs",),
          params=logs.RequestIdParams, response=logs.LogEntry, errors=(404,)),
    # --- analytics (docs/api.md section 8) --------------------------------------------------------
    *(Route("GET", f"/api/v1/analytics/{name}", f"analytics.{name.replace('-', '_')}",
            AUTHENTICATED, summary, service=ANALYTICS, tags=("analytics",),
            query=analytics.AnalyticsQuery, response=response, errors=(404,))
      for name, summary, response in (
          ("summary", "Totals, latency, errors, unique users and endpoints of visible traffic",
           analytics.Summary),
          ("requests-over-time", "Requests per hour or day, ascending",
           list[analytics.RequestCount]),
          ("error-rate", "Client and server errors and their share", analytics.ErrorRate),
          ("latency", "Latency percentiles, average, minimum and maximum", analytics.Latency),
          ("top-endpoints", "Busiest endpoints (method and route template)",
           list[analytics.EndpointUse]),
          ("top-users", "Users with the most requests", list[analytics.UserUse]),
          ("api-key-usage", "API keys with the most requests", list[analytics.KeyUse]),
      )),
    # --- alerts (docs/api.md section 9) -----------------------------------------------------------
    Route("POST", "/api/v1/alerts/rules", "alert.rule_create", DEVELOPER,
          "Create an alert rule (owned by the caller)", service=ANALYTICS, tags=("alerts",),
          body=alerts.AlertRuleBody, success_status=201, errors=(404,), response=alerts.AlertRule),
    Route("GET", "/api/v1/alerts/rules", "alert.rule_list", AUTHENTICATED,
          "The caller's alert rules (all rules for an admin), newest first",
          service=ANALYTICS, tags=("alerts",), response=list[alerts.AlertRule]),
    Route("GET", "/api/v1/alerts/rules/:id", "alert.rule_get", AUTHENTICATED,
          "Get an alert rule", service=ANALYTICS, tags=("alerts",),
          params=alerts.MongoIdParams, errors=(404,), response=alerts.AlertRule),
    Route("PUT", "/api/v1/alerts/rules/:id", "alert.rule_update", DEVELOPER,
          "Update an alert rule (partial)", service=ANALYTICS, tags=("alerts",),
          params=alerts.MongoIdParams, body=alerts.AlertRulePatch, errors=(404,),
          response=alerts.AlertRule),
    Route("DELETE", "/api/v1/alerts/rules/:id", "alert.rule_delete", DEVELOPER,
          "Delete an alert rule", service=ANALYTICS, tags=("alerts",),
          params=alerts.MongoIdParams, success_status=204, errors=(404,)),
    Route("GET", "/api/v1/alerts/events", "alert.event_list", AUTHENTICATED,
          "Alert events visible to the caller, newest first", service=ANALYTICS,
          tags=("alerts",), query=alerts.AlertEventQuery, response=alerts.AlertEventPage),
    Route("PUT", "/api/v1/alerts/events/:id/acknowledge", "alert.event_acknowledge",
          DEVELOPER, "Acknowledge an alert event", service=ANALYTICS, tags=("alerts",),
          params=alerts.MongoIdParams, body=alerts.AcknowledgeBody, errors=(404,),
          response=alerts.AlertEvent),
    Route("POST", "/api/v1/alerts/emit", "alert.emit", Access.ALERT_SECRET,
          "Relay an external alert to admin monitor clients (not stored)",
          tags=("alerts",), body=alerts.AlertEmitBody, response=alerts.Received),
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
