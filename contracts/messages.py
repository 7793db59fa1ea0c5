"""Every message that crosses the broker, typed: one frozen dataclass per routing key on
`gw.events`, and the RPC request envelope.

Each type has one `to_wire()` (what is encoded) and one `from_wire()` (what a receiving
process decodes once, where the message enters it). `from_wire` raises `MalformedMessage`
for anything that does not fit, and the consumer that called it dead-letters the message
instead of crashing.

Event wire format: an AMQP message body is `{"events": [<event>, ...]}`, every event of the
message under the message's routing key (see `contracts.events` for why events travel in
batches). Field names on the wire are the camelCase names of docs/api.md, so a log entry, an
event and what the management UI shows all read alike.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar, Literal, Self

import orjson

from contracts.errors import Unauthorized
from contracts.identity import Caller
from contracts.names import RoutingKey
from contracts.timeutil import parse_iso


class MalformedMessage(ValueError):
    """A message or event that does not match its type: dead-lettered, never retried."""


# --- field readers: each raises MalformedMessage naming the field ------------------------------


def _str(wire: Mapping[str, Any], name: str, *, max_len: int = 10_000) -> str:
    value = wire.get(name)
    if not isinstance(value, str) or len(value) > max_len:
        raise MalformedMessage(f"{name}: a string of at most {max_len} characters expected")
    return value


def _opt_str(wire: Mapping[str, Any], name: str, *, max_len: int = 10_000) -> str | None:
    if wire.get(name) is None:
        return None
    return _str(wire, name, max_len=max_len)


def _int(wire: Mapping[str, Any], name: str, *, low: int = 0, high: int = 2**53) -> int:
    value = wire.get(name)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise MalformedMessage(f"{name}: an integer in {low}..{high} expected")
    return value


def _number(wire: Mapping[str, Any], name: str) -> float:
    value = wire.get(name)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) \
            or value < 0:
        raise MalformedMessage(f"{name}: a finite number >= 0 expected")
    return float(value)


def _moment(wire: Mapping[str, Any], name: str) -> str:
    """An ISO-8601 date-time string (kept as sent; `parse_iso` reads it)."""
    value = _str(wire, name, max_len=40)
    try:
        parse_iso(value)
    except ValueError:
        raise MalformedMessage(f"{name}: an ISO-8601 date-time expected") from None
    return value


def _bool(wire: Mapping[str, Any], name: str, default: bool) -> bool:
    value = wire.get(name, default)
    if not isinstance(value, bool):
        raise MalformedMessage(f"{name}: a boolean expected")
    return value


def _str_list(wire: Mapping[str, Any], name: str) -> tuple[str, ...]:
    value = wire.get(name)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise MalformedMessage(f"{name}: a list of strings expected")
    return tuple(value)


def _object(wire: Mapping[str, Any], name: str) -> dict[str, Any]:
    value = wire.get(name)
    if not isinstance(value, dict):
        raise MalformedMessage(f"{name}: an object expected")
    return value


# --- request.completed ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RequestError:
    """`error` of a log entry (docs/api.md section 7.1)."""

    code: str
    message: str
    stack: str | None = None

    def to_wire(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, "stack": self.stack}

    @classmethod
    def from_wire(cls, wire: Any) -> RequestError | None:
        if wire is None:
            return None
        if not isinstance(wire, dict):
            raise MalformedMessage("error: an object or null expected")
        return cls(_str(wire, "code", max_len=200), _str(wire, "message", max_len=2000),
                   _opt_str(wire, "stack", max_len=20_000))


@dataclass(frozen=True, slots=True)
class RequestCompleted:
    """One response the gateway gave (docs/api.md section 7.1), published for every request that
    is not exempt (section 13.1). `timestamp` is ISO-8601 UTC with milliseconds."""

    ROUTING_KEY: ClassVar[RoutingKey] = RoutingKey.REQUEST_COMPLETED

    request_id: str
    timestamp: str
    method: str
    path: str
    route: str | None
    status_code: int
    latency: float  # ms
    ip: str
    user_id: str | None
    api_key_id: str | None
    project_id: str | None
    owner_id: str | None
    user_agent: str
    content_length: int
    error: RequestError | None

    @property
    def moment(self) -> datetime:
        """`timestamp` as an aware UTC datetime (checked when the event was decoded)."""
        return parse_iso(self.timestamp)

    def to_wire(self) -> dict[str, Any]:
        return {
            "requestId": self.request_id, "timestamp": self.timestamp, "method": self.method,
            "path": self.path, "route": self.route, "statusCode": self.status_code,
            "latency": self.latency, "ip": self.ip, "userId": self.user_id,
            "apiKeyId": self.api_key_id, "projectId": self.project_id, "ownerId": self.owner_id,
            "userAgent": self.user_agent, "contentLength": self.content_length,
            "error": self.error.to_wire() if self.error is not None else None,
            "source": "gateway",
        }

    @classmethod
    def from_wire(cls, wire: Mapping[str, Any]) -> Self:
        return cls(
            request_id=_str(wire, "requestId", max_len=100),
            timestamp=_moment(wire, "timestamp"),
            method=_str(wire, "method", max_len=20),
            path=_str(wire, "path", max_len=20_000),
            route=_opt_str(wire, "route", max_len=2000),
            status_code=_int(wire, "statusCode", low=100, high=599),
            latency=_number(wire, "latency"),
            ip=_str(wire, "ip", max_len=100),
            user_id=_opt_str(wire, "userId", max_len=100),
            api_key_id=_opt_str(wire, "apiKeyId", max_len=100),
            project_id=_opt_str(wire, "projectId", max_len=100),
            owner_id=_opt_str(wire, "ownerId", max_len=100),
            user_agent=_str(wire, "userAgent", max_len=10_000),
            content_length=_int(wire, "contentLength"),
            error=RequestError.from_wire(wire.get("error")),
        )


# --- config.* (project service -> gateways) ----------------------------------------------------


@dataclass(frozen=True, slots=True)
class RouteConfigData:
    """A route config as gateways need it (docs/api.md section 6.2, plus the project's owner)."""

    id: str
    project_id: str
    path: str
    method: str
    service: str | None
    upstream_url: str | None
    rate_limit: int | None
    cache_ttl: int | None
    auth_required: bool
    active: bool
    owner_id: str | None
    created_at: str | None
    updated_at: str | None

    def to_wire(self) -> dict[str, Any]:
        return {
            "id": self.id, "projectId": self.project_id, "path": self.path,
            "method": self.method, "service": self.service, "upstreamUrl": self.upstream_url,
            "rateLimit": self.rate_limit, "cacheTTL": self.cache_ttl,
            "authRequired": self.auth_required, "active": self.active,
            "ownerId": self.owner_id, "createdAt": self.created_at,
            "updatedAt": self.updated_at,
        }

    @classmethod
    def from_wire(cls, wire: Mapping[str, Any]) -> Self:
        rate_limit, cache_ttl = wire.get("rateLimit"), wire.get("cacheTTL")
        return cls(
            id=_str(wire, "id", max_len=100), project_id=_str(wire, "projectId", max_len=100),
            path=_str(wire, "path", max_len=2000), method=_str(wire, "method", max_len=20),
            service=_opt_str(wire, "service", max_len=100),
            upstream_url=_opt_str(wire, "upstreamUrl", max_len=5000),
            rate_limit=None if rate_limit is None else _int(wire, "rateLimit"),
            cache_ttl=None if cache_ttl is None else _int(wire, "cacheTTL"),
            auth_required=_bool(wire, "authRequired", True),
            active=_bool(wire, "active", True),
            owner_id=_opt_str(wire, "ownerId", max_len=100),
            created_at=_opt_str(wire, "createdAt", max_len=40),
            updated_at=_opt_str(wire, "updatedAt", max_len=40),
        )


RouteAction = Literal["created", "updated", "deleted"]
_ROUTE_ACTIONS: tuple[RouteAction, ...] = ("created", "updated", "deleted")


@dataclass(frozen=True, slots=True)
class RouteChanged:
    ROUTING_KEY: ClassVar[RoutingKey] = RoutingKey.CONFIG_ROUTE_CHANGED

    action: RouteAction
    route: RouteConfigData
    at: str

    def to_wire(self) -> dict[str, Any]:
        return {"action": self.action, "route": self.route.to_wire(), "at": self.at}

    @classmethod
    def from_wire(cls, wire: Mapping[str, Any]) -> Self:
        action = wire.get("action")
        if action not in _ROUTE_ACTIONS:
            raise MalformedMessage(f"action: one of {', '.join(_ROUTE_ACTIONS)} expected")
        return cls(action, RouteConfigData.from_wire(_object(wire, "route")),
                   _str(wire, "at", max_len=40))


@dataclass(frozen=True, slots=True)
class KeyRevoked:
    ROUTING_KEY: ClassVar[RoutingKey] = RoutingKey.CONFIG_KEY_REVOKED

    key_id: str
    key_hash: str
    project_id: str
    reason: str
    at: str

    def to_wire(self) -> dict[str, Any]:
        return {"keyId": self.key_id, "keyHash": self.key_hash, "projectId": self.project_id,
                "reason": self.reason, "at": self.at}

    @classmethod
    def from_wire(cls, wire: Mapping[str, Any]) -> Self:
        return cls(_str(wire, "keyId", max_len=100), _str(wire, "keyHash", max_len=200),
                   _str(wire, "projectId", max_len=100), _str(wire, "reason", max_len=200),
                   _str(wire, "at", max_len=40))


@dataclass(frozen=True, slots=True)
class ProjectDeleted:
    ROUTING_KEY: ClassVar[RoutingKey] = RoutingKey.CONFIG_PROJECT_DELETED

    project_id: str
    key_ids: tuple[str, ...]
    key_hashes: tuple[str, ...]
    route_ids: tuple[str, ...]
    at: str

    def to_wire(self) -> dict[str, Any]:
        return {"projectId": self.project_id, "keyIds": list(self.key_ids),
                "keyHashes": list(self.key_hashes), "routeIds": list(self.route_ids),
                "at": self.at}

    @classmethod
    def from_wire(cls, wire: Mapping[str, Any]) -> Self:
        return cls(_str(wire, "projectId", max_len=100), _str_list(wire, "keyIds"),
                   _str_list(wire, "keyHashes"), _str_list(wire, "routeIds"),
                   _str(wire, "at", max_len=40))


# --- alert.* (alert engine and the gateway's alert bridge -> monitor relays) --------------------


def _opt_number(wire: Mapping[str, Any], name: str) -> float | None:
    value = wire.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise MalformedMessage(f"{name}: a finite number or null expected")
    return value


def _severity(wire: Mapping[str, Any]) -> str:
    value = wire.get("severity")
    if value not in SEVERITIES:
        raise MalformedMessage(f"severity: one of {', '.join(SEVERITIES)} expected")
    return value


SEVERITIES = ("info", "warning", "critical")


@dataclass(frozen=True, slots=True)
class AlertTriggered:
    """An alert event the engine stored (docs/api.md sections 9.2, 11 `alert:new`), with the rule
    owner's `userId` and the rule's `projectId` so relays can route it to who may see it."""

    ROUTING_KEY: ClassVar[RoutingKey] = RoutingKey.ALERT_TRIGGERED

    id: str
    rule_id: str
    rule_name: str
    service: str
    metric: str
    value: float
    threshold: float
    operator: str
    message: str
    severity: str
    timestamp: str
    user_id: str
    project_id: str | None

    def monitor_payload(self) -> dict[str, Any]:
        """What monitor clients receive as `alert:new` (no routing fields)."""
        return {"id": self.id, "ruleId": self.rule_id, "ruleName": self.rule_name,
                "service": self.service, "metric": self.metric, "value": self.value,
                "threshold": self.threshold, "operator": self.operator,
                "message": self.message, "severity": self.severity,
                "timestamp": self.timestamp}

    def to_wire(self) -> dict[str, Any]:
        return {**self.monitor_payload(), "userId": self.user_id, "projectId": self.project_id}

    @classmethod
    def from_wire(cls, wire: Mapping[str, Any]) -> Self:
        value, threshold = _opt_number(wire, "value"), _opt_number(wire, "threshold")
        if value is None or threshold is None:
            raise MalformedMessage("value and threshold: numbers expected")
        return cls(
            id=_str(wire, "id", max_len=100), rule_id=_str(wire, "ruleId", max_len=100),
            rule_name=_str(wire, "ruleName", max_len=200),
            service=_str(wire, "service", max_len=100), metric=_str(wire, "metric", max_len=50),
            value=value, threshold=threshold, operator=_str(wire, "operator", max_len=10),
            message=_str(wire, "message", max_len=2000), severity=_severity(wire),
            timestamp=_moment(wire, "timestamp"), user_id=_str(wire, "userId", max_len=100),
            project_id=_opt_str(wire, "projectId", max_len=100))


@dataclass(frozen=True, slots=True)
class AlertEmitted:
    """An alert from an external source through `POST /api/v1/alerts/emit` (docs/api.md 9.3):
    not stored, relayed to admin monitor clients only (it has no owner)."""

    ROUTING_KEY: ClassVar[RoutingKey] = RoutingKey.ALERT_EMITTED

    type: str | None
    severity: str
    message: str
    value: float | None
    threshold: float | None
    service: str | None
    timestamp: str

    def monitor_payload(self) -> dict[str, Any]:
        return {"type": self.type, "severity": self.severity, "message": self.message,
                "value": self.value, "threshold": self.threshold, "service": self.service,
                "source": "external", "timestamp": self.timestamp}

    def to_wire(self) -> dict[str, Any]:
        return self.monitor_payload()

    @classmethod
    def from_wire(cls, wire: Mapping[str, Any]) -> Self:
        return cls(type=_opt_str(wire, "type", max_len=100), severity=_severity(wire),
                   message=_str(wire, "message", max_len=1000),
                   value=_opt_number(wire, "value"), threshold=_opt_number(wire, "threshold"),
                   service=_opt_str(wire, "service", max_len=100),
                   timestamp=_moment(wire, "timestamp"))


@dataclass(frozen=True, slots=True)
class MonitorConnectionsChanged:
    """A monitor socket connected to or left some gateway process: every process recounts
    (from Redis) and tells its own sockets (docs/api.md section 11 `connections:active`)."""

    ROUTING_KEY: ClassVar[RoutingKey] = RoutingKey.MONITOR_CONNECTIONS

    at: str

    def to_wire(self) -> dict[str, Any]:
        return {"at": self.at}

    @classmethod
    def from_wire(cls, wire: Mapping[str, Any]) -> Self:
        return cls(_moment(wire, "at"))


Event = (RequestCompleted | RouteChanged | KeyRevoked | ProjectDeleted | AlertTriggered
         | AlertEmitted | MonitorConnectionsChanged)
ConfigEvent = RouteChanged | KeyRevoked | ProjectDeleted

EVENT_TYPES: dict[str, type[Event]] = {
    t.ROUTING_KEY: t for t in (RequestCompleted, RouteChanged, KeyRevoked, ProjectDeleted,
                               AlertTriggered, AlertEmitted, MonitorConnectionsChanged)
}


def encode_events(events: list[Event]) -> bytes:
    """One message body; every event must be of one type (one routing key)."""
    return orjson.dumps({"events": [event.to_wire() for event in events]})


@dataclass(frozen=True)
class DecodedBatch:
    """A message's events of the expected type, and the raw ones that did not decode (kept so
    they can be dead-lettered without holding up the good ones)."""

    events: list[Any]
    malformed: list[tuple[Any, str]] = field(default_factory=list)

    def malformed_body(self) -> bytes:
        """The events that did not decode, as a message body of their own."""
        return orjson.dumps({"events": [raw for raw, _reason in self.malformed]})

    def malformed_reason(self) -> str:
        return "malformed events: " + "; ".join(sorted({r for _raw, r in self.malformed}))


def decode_events(routing_key: str, body: bytes) -> DecodedBatch:
    """Decode a message body published under `routing_key`. Raise MalformedMessage when the
    body as a whole is unusable (not JSON, not a batch, unknown routing key)."""
    event_type = EVENT_TYPES.get(routing_key)
    if event_type is None:
        raise MalformedMessage(f"no message type for routing key {routing_key!r}")
    try:
        decoded = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise MalformedMessage(f"not JSON: {exc}") from None
    raw_events = decoded.get("events") if isinstance(decoded, dict) else None
    if not isinstance(raw_events, list):
        raise MalformedMessage('an event message is {"events": [object, ...]}')
    batch = DecodedBatch([])
    for raw in raw_events:
        try:
            if not isinstance(raw, dict):
                raise MalformedMessage("an event is a JSON object")
            batch.events.append(event_type.from_wire(raw))
        except MalformedMessage as exc:
            batch.malformed.append((raw, str(exc)))
    return batch


# --- RPC -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RpcRequest:
    """The params of every RPC call (the operation name travels as the AMQP message `type`).

    The gateway builds it from a request it has validated against the route table: `body`,
    `query` and `params` are the cleaned values, `caller` the verified identity (None on
    public routes), `request_id` the request's X-Request-Id.
    """

    body: Any = None
    query: Mapping[str, Any] = field(default_factory=dict)
    params: Mapping[str, Any] = field(default_factory=dict)
    caller: Caller | None = None
    request_id: str | None = None
    client_ip: str | None = None

    def to_wire(self) -> dict[str, Any]:
        return {
            "body": self.body, "query": dict(self.query), "params": dict(self.params),
            "caller": self.caller.to_wire() if self.caller is not None else None,
            "requestId": self.request_id, "clientIp": self.client_ip,
        }

    @classmethod
    def from_wire(cls, wire: Any) -> Self:
        if not isinstance(wire, dict):
            raise MalformedMessage("an RPC request is a JSON object")
        query, params, caller = wire.get("query"), wire.get("params"), wire.get("caller")
        query = {} if query is None else query
        params = {} if params is None else params
        if not isinstance(query, dict) or not isinstance(params, dict):
            raise MalformedMessage("query and params are objects")
        return cls(
            body=wire.get("body"), query=query, params=params,
            caller=None if caller is None else _caller(caller),
            request_id=_opt_str(wire, "requestId", max_len=100),
            client_ip=_opt_str(wire, "clientIp", max_len=100),
        )

    @property
    def authenticated(self) -> Caller:
        """The caller of a route that requires one (the gateway refused the request
        otherwise, so its absence is a broken contract, not a client error)."""
        if self.caller is None:
            raise Unauthorized("Authentication required")
        return self.caller


def _caller(wire: Any) -> Caller:
    try:
        return Caller.from_wire(wire)
    except (KeyError, TypeError, ValueError) as exc:
        raise MalformedMessage(f"caller: {exc!r}") from None
