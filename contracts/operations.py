"""Every operation of the platform, declared once: its name on the wire, the service that
serves it, the types of its body, query and path parameters, and the type of its answer.

From a declaration follow:
- the route table's entry (`contracts.routes.Route` names the operation by object);
- the gateway's validation of a request (`gateway.steps.validator`) and the OpenAPI document
  (`gateway.docs`): request and answer schemas are the declared models';
- a service's binding: a handler is a method marked `@handles(OPERATION)` (`contracts.rpc`)
  that takes a `Call` typed by the declaration and returns the declared answer; the binding
  decodes the call into those types and writes exactly the declared fields of the answer.

An operation's name travels as the AMQP message `type` of an RPC request; in code an
operation is always this object, never its name.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any, Generic, TypeVar

from pydantic import TypeAdapter

from contracts.errors import Unauthorized
from contracts.identity import Caller
from contracts.messages import RpcRequest
from contracts.names import Service
from contracts.schemas import alerts, analytics, auth, health, logs, oauth, projects, webhooks
from contracts.schemas.common import IdParams, Message, ProjectIdParams
from contracts.validation import RequestModel, load, load_list

B = TypeVar("B")
Q = TypeVar("Q")
P = TypeVar("P")


@dataclass(frozen=True)
class Call(Generic[B, Q, P]):
    """An RPC request decoded into its operation's types: `body` (a model, a list of models
    for a batch, or None), `query` and `params` (models or None), the caller's verified
    identity (None on public routes), the request id and the client's address."""

    body: B
    query: Q
    params: P
    caller: Caller | None
    request_id: str | None
    client_ip: str | None

    @property
    def authenticated(self) -> Caller:
        """The caller of a route that requires one (the gateway refused the request
        otherwise, so its absence is a broken contract, not a client error)."""
        if self.caller is None:
            raise Unauthorized("Authentication required")
        return self.caller


@dataclass(frozen=True)
class Redirect:
    """An answer that sends the client elsewhere: the gateway answers 302 with `Location`
    (and no body) instead of the operation's JSON answer. Only operations declared with
    `redirects=True` return one."""

    location: str

    STATUS = 302


@dataclass(frozen=True, eq=False)
class Operation:
    name: str
    service: Service | None  # None: the gateway answers it itself
    body: type[RequestModel] | None = None
    # when set, the body is a JSON array of `body` objects, at most this many
    body_max_items: int | None = None
    query: type[RequestModel] | None = None
    params: type[RequestModel] | None = None
    # the type of a success answer (a model or e.g. list[Model]); None only for 204 No Content
    answer: Any = None
    status: int = 200  # of a success answer
    redirects: bool = False  # may answer a `Redirect` (302) instead
    # never sent twice, even as a GET whose broker connection dropped (it spends something)
    once: bool = False

    def __repr__(self) -> str:
        return f"Operation({self.name})"

    @cached_property
    def _answer_type(self) -> TypeAdapter[Any]:
        return TypeAdapter(self.answer)

    def decode(self, request: RpcRequest) -> Call[Any, Any, Any]:
        """The typed call of a request the gateway validated against this declaration (a
        second check: what reaches a handler is what its types say, whoever sent it)."""
        body: Any = request.body
        if self.body is not None and self.body_max_items is not None:
            body = load_list(self.body, body or [], "body", self.body_max_items)
        elif self.body is not None:
            body = load(self.body, body, "body")
        return Call(
            body=body,
            query=load(self.query, dict(request.query), "query") if self.query else None,
            params=load(self.params, dict(request.params), "params") if self.params else None,
            caller=request.caller, request_id=request.request_id, client_ip=request.client_ip)

    def encode(self, answer: Any) -> Any:
        """A handler's answer as JSON-ready data: exactly the declared type's fields, by
        their wire names; anything that does not fit the type raises (a 500, never a leak)."""
        if self.answer is None:
            return None
        return self._answer_type.dump_python(self._answer_type.validate_python(answer),
                                             mode="json")


PROJECT, AUTH = Service.PROJECT, Service.AUTH
LOGGING, ANALYTICS = Service.LOGGING, Service.ANALYTICS

# --- the gateway's own -----------------------------------------------------------------------
HEALTH = Operation("health", None, answer=health.Health)
# every process answers these two (contracts.readiness); the gateway on its public port too
LIVEZ = Operation("livez", None, answer=health.Live)
READYZ = Operation("readyz", None, answer=health.Ready)
ALERT_EMIT = Operation("alert.emit", None, body=alerts.AlertEmitBody, answer=alerts.Received)
# every service answers it (contracts.service); the gateway's /health asks each
SERVICE_HEALTH = Operation("health", None)

# --- auth (docs/api.md section 3) ------------------------------------------------------------
AUTH_REGISTER = Operation("auth.register", AUTH, body=auth.RegisterBody,
                          answer=auth.Registered, status=201)
AUTH_LOGIN = Operation("auth.login", AUTH, body=auth.LoginBody, answer=auth.Session)
AUTH_REFRESH = Operation("auth.refresh", AUTH, body=auth.RefreshBody, answer=auth.TokenPair)
AUTH_LOGOUT = Operation("auth.logout", AUTH, body=auth.RefreshBody, answer=Message)
AUTH_PROFILE = Operation("auth.profile", AUTH, answer=auth.Profile)
AUTH_SEND_VERIFICATION_EMAIL = Operation("auth.send_verification_email", AUTH,
                                         body=auth.EmailBody, answer=Message)
AUTH_VERIFY_EMAIL = Operation("auth.verify_email", AUTH, query=auth.TokenQuery, answer=Message)
AUTH_FORGOT_PASSWORD = Operation("auth.forgot_password", AUTH, body=auth.EmailBody,
                                 answer=Message)
AUTH_RESET_PASSWORD = Operation("auth.reset_password", AUTH, body=auth.ResetPasswordBody,
                                answer=Message)

# --- sign-in with providers (docs/api.md section 16) ------------------------------------------
OAUTH_PROVIDERS = Operation("oauth.providers", AUTH, answer=list[oauth.Provider])
OAUTH_INITIATE = Operation("oauth.initiate", AUTH, params=oauth.ProviderParams,
                           query=oauth.InitiateQuery, answer=oauth.Authorization,
                           redirects=True)
# only ever redirects (to OAUTH_SUCCESS_URL with a one-time code), or fails
OAUTH_CALLBACK = Operation("oauth.callback", AUTH, params=oauth.ProviderParams,
                           query=oauth.CallbackQuery, status=Redirect.STATUS, redirects=True,
                           once=True)
OAUTH_EXCHANGE = Operation("oauth.exchange", AUTH, body=oauth.ExchangeBody,
                           answer=auth.Session)

# --- projects (docs/api.md section 4) --------------------------------------------------------
PROJECT_CREATE = Operation("project.create", PROJECT, body=projects.ProjectBody,
                           answer=projects.Project, status=201)
PROJECT_LIST = Operation("project.list", PROJECT, query=projects.ProjectListQuery,
                         answer=projects.ProjectPage)
PROJECT_GET = Operation("project.get", PROJECT, params=IdParams, answer=projects.Project)
PROJECT_UPDATE = Operation("project.update", PROJECT, params=IdParams,
                           body=projects.ProjectPatch, answer=projects.Project)
PROJECT_DELETE = Operation("project.delete", PROJECT, params=IdParams, answer=Message)

# --- API keys (docs/api.md section 5) --------------------------------------------------------
KEY_CREATE = Operation("key.create", PROJECT, params=ProjectIdParams, body=projects.KeyBody,
                       answer=projects.IssuedKey, status=201)
KEY_LIST = Operation("key.list", PROJECT, params=ProjectIdParams,
                     answer=list[projects.ApiKey])
KEY_REVOKE = Operation("key.revoke", PROJECT, params=IdParams, answer=Message)
KEY_VERIFY = Operation("key.verify", PROJECT, query=projects.KeyVerifyQuery,
                       answer=projects.KeyVerdict)

# --- route configs (docs/api.md section 6) ---------------------------------------------------
ROUTE_CREATE = Operation("route.create", PROJECT, params=ProjectIdParams,
                         body=projects.RouteBody, answer=projects.RouteConfig, status=201)
ROUTE_LIST = Operation("route.list", PROJECT, params=ProjectIdParams,
                       answer=list[projects.RouteConfig])
ROUTE_GET = Operation("route.get", PROJECT, params=IdParams, answer=projects.RouteConfig)
ROUTE_UPDATE = Operation("route.update", PROJECT, params=IdParams, body=projects.RoutePatch,
                         answer=projects.RouteConfig)
ROUTE_DELETE = Operation("route.delete", PROJECT, params=IdParams, answer=Message)
ROUTE_LIST_ACTIVE = Operation("route.list_active", PROJECT,
                              answer=list[projects.ActiveRouteConfig])
# internal: the gateways' snapshot of every active route config (gateway.config_follower)
ROUTE_ACTIVE_SET = Operation("route.active_set", PROJECT, answer=projects.ActiveRouteSet)

# --- webhooks (docs/api.md section 15) --------------------------------------------------------
WEBHOOK_CREATE = Operation("webhook.create", PROJECT, params=ProjectIdParams,
                           body=webhooks.WebhookBody, answer=webhooks.WebhookWithSecret,
                           status=201)
WEBHOOK_LIST = Operation("webhook.list", PROJECT, params=ProjectIdParams,
                         query=webhooks.WebhookListQuery, answer=webhooks.WebhookPage)
WEBHOOK_GET = Operation("webhook.get", PROJECT, params=IdParams, answer=webhooks.Webhook)
WEBHOOK_UPDATE = Operation("webhook.update", PROJECT, params=IdParams,
                           body=webhooks.WebhookPatch, answer=webhooks.Webhook)
WEBHOOK_DELETE = Operation("webhook.delete", PROJECT, params=IdParams, status=204)
WEBHOOK_ROTATE_SECRET = Operation("webhook.rotate_secret", PROJECT, params=IdParams,
                                  answer=webhooks.WebhookWithSecret, status=201)
WEBHOOK_TEST = Operation("webhook.test", PROJECT, params=IdParams,
                         answer=webhooks.DeliveryAccepted, status=202)
WEBHOOK_DELIVERIES = Operation("webhook.deliveries", PROJECT, params=IdParams,
                               query=webhooks.DeliveryListQuery, answer=webhooks.DeliveryPage)
WEBHOOK_DELIVERY_GET = Operation("webhook.delivery_get", PROJECT,
                                 params=webhooks.DeliveryParams,
                                 answer=webhooks.DeliveryDetail)
WEBHOOK_REDELIVER = Operation("webhook.redeliver", PROJECT, params=webhooks.DeliveryParams,
                              answer=webhooks.DeliveryAccepted, status=202)

# --- logs (docs/api.md section 7) ------------------------------------------------------------
LOG_INGEST = Operation("log.ingest", LOGGING, body=logs.LogIngest, answer=Message, status=201)
LOG_INGEST_BATCH = Operation("log.ingest_batch", LOGGING, body=logs.LogIngest,
                             body_max_items=logs.MAX_BATCH, answer=Message, status=201)
LOG_LIST = Operation("log.list", LOGGING, query=logs.LogListQuery, answer=logs.LogPage)
LOG_ERRORS = Operation("log.errors", LOGGING, query=logs.LogListQuery, answer=logs.LogPage)
LOG_GET = Operation("log.get", LOGGING, params=logs.RequestIdParams, answer=logs.LogEntry)

# --- analytics (docs/api.md section 8) -------------------------------------------------------
ANALYTICS_SUMMARY = Operation("analytics.summary", ANALYTICS, query=analytics.AnalyticsQuery,
                              answer=analytics.Summary)
ANALYTICS_REQUESTS_OVER_TIME = Operation(
    "analytics.requests_over_time", ANALYTICS, query=analytics.AnalyticsQuery,
    answer=list[analytics.RequestCount])
ANALYTICS_ERROR_RATE = Operation("analytics.error_rate", ANALYTICS,
                                 query=analytics.AnalyticsQuery, answer=analytics.ErrorRate)
ANALYTICS_LATENCY = Operation("analytics.latency", ANALYTICS, query=analytics.AnalyticsQuery,
                              answer=analytics.Latency)
ANALYTICS_TOP_ENDPOINTS = Operation("analytics.top_endpoints", ANALYTICS,
                                    query=analytics.AnalyticsQuery,
                                    answer=list[analytics.EndpointUse])
ANALYTICS_TOP_USERS = Operation("analytics.top_users", ANALYTICS,
                                query=analytics.AnalyticsQuery, answer=list[analytics.UserUse])
ANALYTICS_API_KEY_USAGE = Operation("analytics.api_key_usage", ANALYTICS,
                                    query=analytics.AnalyticsQuery,
                                    answer=list[analytics.KeyUse])

# --- alerts (docs/api.md section 9) ----------------------------------------------------------
ALERT_RULE_CREATE = Operation("alert.rule_create", ANALYTICS, body=alerts.AlertRuleBody,
                              answer=alerts.AlertRule, status=201)
ALERT_RULE_LIST = Operation("alert.rule_list", ANALYTICS, answer=list[alerts.AlertRule])
ALERT_RULE_GET = Operation("alert.rule_get", ANALYTICS, params=alerts.MongoIdParams,
                           answer=alerts.AlertRule)
ALERT_RULE_UPDATE = Operation("alert.rule_update", ANALYTICS, params=alerts.MongoIdParams,
                              body=alerts.AlertRulePatch, answer=alerts.AlertRule)
ALERT_RULE_DELETE = Operation("alert.rule_delete", ANALYTICS, params=alerts.MongoIdParams,
                              status=204)
ALERT_EVENT_LIST = Operation("alert.event_list", ANALYTICS, query=alerts.AlertEventQuery,
                             answer=alerts.AlertEventPage)
ALERT_EVENT_ACKNOWLEDGE = Operation("alert.event_acknowledge", ANALYTICS,
                                    params=alerts.MongoIdParams, body=alerts.AcknowledgeBody,
                                    answer=alerts.AlertEvent)
