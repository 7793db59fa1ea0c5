"""Every message that crosses the broker, typed: one frozen dataclass per routing key on
`gw.events`, and the RPC request envelope.

Each type has one `to_wire()` (what is encoded) and one `from_wire()` (what a receiving
process decodes once, where the message enters it). `from_wire` raises `MalformedMessage`
for anything that does not fit, and the consumer that called it dead-letters the message
instead of crashing.

The wire form is declared on the fields and pydantic reads and writes it: each field's
camelCase wire name (its alias), its type, length and range, strict where a JSON value of
another kind must not pass (a boolean is no integer, a string no number), and what a field
missing on the wire reads as. The types stay plain dataclasses to construct: a process
builds its own messages from values it computed itself, so only the decoding side pays for
validation (the gateway builds one `RequestCompleted` per request).

Event wire format: an AMQP message body is `{"events": [<event>, ...]}`, every event of the
message under the message's routing key (see `contracts.events` for why events travel in
batches). Field names on the wire are the camelCase names of docs/api.md, so a log entry, an
event and what the management UI shows all read alike:

- `request.completed`: requestId, timestamp, method, path, route, statusCode, latency, ip,
  userId, apiKeyId, projectId, ownerId, userAgent, contentLength, error ({code, message,
  stack} or null), traceId (the request's W3C trace id, 32 lowercase hex digits; read as
  null when absent, as from a gateway older than the field), source ("gateway");
- `config.route.changed`: action, route (id, projectId, path, method, service, upstreamUrl,
  rateLimit, cacheTTL, authRequired, active, ownerId, createdAt, updatedAt), at;
- `config.key.revoked`: keyId, keyHash, projectId, reason, at;
- `config.project.deleted`: projectId, keyIds, keyHashes, routeIds, at;
- `alert.triggered`: id, ruleId, ruleName, service, metric, value, threshold, operator,
  message, severity, timestamp, userId, projectId;
- `alert.emitted`: type, severity, message, value, threshold, service, source
  ("external"), timestamp;
- `monitor.connections`: at;
- `domain.<type>` (one routing key per type of `DOMAIN_EVENT_TYPES`): eventId, type,
  timestamp, projectId, ownerId, data (the resource as the API answers it);
- `webhook.delivery.due`: deliveryId, attempt;
- `alert.webhook_disabled`: webhookId, projectId, userId, message, timestamp.

An RPC request is one JSON object: body, query, params, caller ({userId, email, role} or
null), requestId, clientIp, traceparent (the caller's W3C `traceparent`, or null/absent for
an untraced call).

Compatibility both ways during a rolling upgrade: a field missing on the wire reads as its
default, and a decoder ignores fields it does not declare (pydantic's default for these
dataclasses), so an older consumer reads a newer message as it always did.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, Any, ClassVar, Generic, Literal, Self, TypeVar, get_args

import orjson
from pydantic import (
    AfterValidator,
    BeforeValidator,
    ConfigDict,
    Field,
    Strict,
    StringConstraints,
    TypeAdapter,
    ValidationError,
    with_config,
)
from pydantic.alias_generators import to_camel
from pydantic_core import PydanticCustomError

from contracts.identity import Caller
from contracts.names import DOMAIN_EVENT_TYPES, RoutingKey, domain_routing_key
from contracts.timeutil import parse_iso


class MalformedMessage(ValueError):
    """A message or event that does not match its type: dead-lettered, never retried."""


# --- what fields are made of -------------------------------------------------------------------

# snake_case in Python, camelCase on the wire (an explicit alias wins: `cacheTTL`)
_WIRE = ConfigDict(alias_generator=to_camel, serialize_by_alias=True)


def _chars(max_len: int) -> StringConstraints:
    """A string (nothing else turned into one) of at most `max_len` characters."""
    return StringConstraints(strict=True, max_length=max_len)


def _absent(value: Any) -> Any:
    """What a field missing on the wire reads as. Only the decoder has this default: the
    constructor still takes every field, in the order it always had."""
    return Field(default_factory=lambda: value)


def _iso_8601(value: str) -> str:
    """Kept as sent; `parse_iso` must be able to read it later."""
    try:
        parse_iso(value)
    except ValueError:
        raise PydanticCustomError("iso_8601", "an ISO-8601 date-time expected") from None
    return value


_Id = Annotated[str, _chars(100)]
_TRACE_ID = re.compile(r"[0-9a-f]{32}")


def _trace_id_or_none(value: Any) -> Any:
    """A trace id only correlates: one that is not 32 lowercase hex digits reads as none,
    rather than dead-lettering the whole event over it."""
    return value if isinstance(value, str) and _TRACE_ID.fullmatch(value) else None


def _traceparent_or_none(value: Any) -> Any:
    """Likewise for an RPC request's traceparent: not a string of a sane length, none (the
    call is then untraced, never refused)."""
    return value if isinstance(value, str) and len(value) <= 256 else None


_TraceId = Annotated[str | None, BeforeValidator(_trace_id_or_none)]
_Stamp = Annotated[str, _chars(40)]  # a moment as sent, not checked (config events' times)
_Moment = Annotated[str, _chars(40), AfterValidator(_iso_8601)]
_Count = Annotated[int, Strict(), Field(ge=0, le=2**53)]
_Flag = Annotated[bool, Strict()]
# A JSON number, an integer kept as one (an alert relayed to monitor clients reads as sent)
_Number = Annotated[int, Strict()] | Annotated[float, Strict(), Field(allow_inf_nan=False)]
_Names = tuple[Annotated[str, Strict()], ...]  # a JSON list of strings (a tuple in Python)

Severity = Literal["info", "warning", "critical"]
SEVERITIES: tuple[Severity, ...] = get_args(Severity)
RouteAction = Literal["created", "updated", "deleted"]

_T = TypeVar("_T")
_E = TypeVar("_E")


_ADAPTERS: dict[Any, TypeAdapter[Any]] = {}


def _adapter(cls: type[_T]) -> TypeAdapter[_T]:
    """One adapter per type, built on first use (building one takes milliseconds)."""
    adapter = _ADAPTERS.get(cls)
    if adapter is None:
        adapter = _ADAPTERS[cls] = TypeAdapter(cls)
    return adapter


def _batch_adapter(event_type: type[_E]) -> TypeAdapter[_Batch[_E]]:
    # The generic is subscripted at run time with the batch's event class, which mypy accepts
    # only for a type written out in the source.
    return _adapter(_Batch[event_type])  # type: ignore[valid-type]


def _reason(exc: ValidationError) -> str:
    """Every field that does not fit, by its wire name (nested ones as `error.code`)."""
    reasons = []
    for error in exc.errors(include_url=False, include_context=False, include_input=False):
        where = ".".join(str(part) for part in error["loc"])
        reasons.append(f"{where}: {error['msg']}" if where else error["msg"])
    return "; ".join(reasons)


class _Message:
    """`to_wire` and `from_wire` of a message type, both from its declared fields (through
    the adapter's core serialiser and validator: the Python layer around them costs about a
    microsecond a call, as much as a small message's own work)."""

    __slots__ = ()

    def to_wire(self) -> dict[str, Any]:
        wire: dict[str, Any] = _adapter(type(self)).serializer.to_python(self, mode="json")
        return wire

    @classmethod
    def from_wire(cls, wire: Any) -> Self:
        try:
            message: Self = _adapter(cls).validator.validate_python(wire)
        except ValidationError as exc:
            raise MalformedMessage(_reason(exc)) from None
        return message


# --- request.completed ---------------------------------------------------------------------------


@with_config(_WIRE)
@dataclass(frozen=True, slots=True)
class RequestError(_Message):
    """`error` of a log entry (docs/api.md section 7.1)."""

    code: Annotated[str, _chars(200)]
    message: Annotated[str, _chars(2000)]
    stack: Annotated[str, _chars(20_000)] | None = None


@with_config(_WIRE)
@dataclass(frozen=True, slots=True)
class RequestCompleted(_Message):
    """One response the gateway gave (docs/api.md section 7.1), published for every request that
    is not exempt (section 13.1). `timestamp` is ISO-8601 UTC with milliseconds."""

    ROUTING_KEY: ClassVar[RoutingKey] = RoutingKey.REQUEST_COMPLETED

    request_id: _Id
    timestamp: _Moment
    method: Annotated[str, _chars(20)]
    path: Annotated[str, _chars(20_000)]
    route: Annotated[Annotated[str, _chars(2000)] | None, _absent(None)]
    status_code: Annotated[int, Strict(), Field(ge=100, le=599)]
    latency: Annotated[float, Strict(), Field(ge=0, allow_inf_nan=False)]  # ms
    ip: _Id
    user_id: Annotated[_Id | None, _absent(None)]
    api_key_id: Annotated[_Id | None, _absent(None)]
    project_id: Annotated[_Id | None, _absent(None)]
    owner_id: Annotated[_Id | None, _absent(None)]
    user_agent: Annotated[str, _chars(10_000)]
    content_length: _Count
    error: Annotated[RequestError | None, _absent(None)]
    # the trace the gateway served the request in (contracts.tracing); absent on the wire
    # reads as None, and so does the constructor, for events built outside any request
    trace_id: _TraceId = None
    # on the wire only (a log entry's source; external ones come in by `POST /logs`): written
    # where the field stands, never read from it, nor taken by the constructor, nor compared
    source: Literal["gateway"] = field(default="gateway", init=False, repr=False, compare=False)

    @property
    def moment(self) -> datetime:
        """`timestamp` as an aware UTC datetime (checked when the event was decoded)."""
        return parse_iso(self.timestamp)


# --- config.* (project service -> gateways) ----------------------------------------------------


@with_config(_WIRE)
@dataclass(frozen=True, slots=True)
class RouteConfigData(_Message):
    """A route config as gateways need it (docs/api.md section 6.2, plus the project's owner)."""

    id: _Id
    project_id: _Id
    path: Annotated[str, _chars(2000)]
    method: Annotated[str, _chars(20)]
    service: Annotated[_Id | None, _absent(None)]
    upstream_url: Annotated[Annotated[str, _chars(5000)] | None, _absent(None)]
    rate_limit: Annotated[_Count | None, _absent(None)]
    cache_ttl: Annotated[_Count | None, _absent(None), Field(alias="cacheTTL")]
    auth_required: Annotated[_Flag, _absent(True)]
    active: Annotated[_Flag, _absent(True)]
    owner_id: Annotated[_Id | None, _absent(None)]
    created_at: Annotated[_Stamp | None, _absent(None)]
    updated_at: Annotated[_Stamp | None, _absent(None)]


@with_config(_WIRE)
@dataclass(frozen=True, slots=True)
class RouteChanged(_Message):
    ROUTING_KEY: ClassVar[RoutingKey] = RoutingKey.CONFIG_ROUTE_CHANGED

    action: RouteAction
    route: RouteConfigData
    at: _Stamp


@with_config(_WIRE)
@dataclass(frozen=True, slots=True)
class KeyRevoked(_Message):
    ROUTING_KEY: ClassVar[RoutingKey] = RoutingKey.CONFIG_KEY_REVOKED

    key_id: _Id
    key_hash: Annotated[str, _chars(200)]
    project_id: _Id
    reason: Annotated[str, _chars(200)]
    at: _Stamp


@with_config(_WIRE)
@dataclass(frozen=True, slots=True)
class ProjectDeleted(_Message):
    ROUTING_KEY: ClassVar[RoutingKey] = RoutingKey.CONFIG_PROJECT_DELETED

    project_id: _Id
    key_ids: _Names
    key_hashes: _Names
    route_ids: _Names
    at: _Stamp


# --- alert.* (alert engine and the gateway's alert bridge -> monitor relays) --------------------


@with_config(_WIRE)
@dataclass(frozen=True, slots=True)
class AlertTriggered(_Message):
    """An alert event the engine stored (docs/api.md sections 9.2, 11 `alert:new`), with the rule
    owner's `userId` and the rule's `projectId` so relays can route it to who may see it."""

    ROUTING_KEY: ClassVar[RoutingKey] = RoutingKey.ALERT_TRIGGERED

    id: _Id
    rule_id: _Id
    rule_name: Annotated[str, _chars(200)]
    service: _Id
    metric: Annotated[str, _chars(50)]
    value: _Number
    threshold: _Number
    operator: Annotated[str, _chars(10)]
    message: Annotated[str, _chars(2000)]
    severity: Severity
    timestamp: _Moment
    user_id: _Id
    project_id: Annotated[_Id | None, _absent(None)]

    def monitor_payload(self) -> dict[str, Any]:
        """What monitor clients receive as `alert:new` (no routing fields)."""
        payload: dict[str, Any] = _adapter(AlertTriggered).serializer.to_python(
            self, mode="json", exclude={"user_id", "project_id"})
        return payload


@with_config(_WIRE)
@dataclass(frozen=True, slots=True)
class AlertEmitted(_Message):
    """An alert from an external source through `POST /api/v1/alerts/emit` (docs/api.md 9.3):
    not stored, relayed to admin monitor clients only (it has no owner)."""

    ROUTING_KEY: ClassVar[RoutingKey] = RoutingKey.ALERT_EMITTED

    type: Annotated[_Id | None, _absent(None)]
    severity: Severity
    message: Annotated[str, _chars(1000)]
    value: Annotated[_Number | None, _absent(None)]
    threshold: Annotated[_Number | None, _absent(None)]
    service: Annotated[_Id | None, _absent(None)]
    # on the wire only, like RequestCompleted.source
    source: Literal["external"] = field(
        default="external", init=False, repr=False, compare=False)
    timestamp: _Moment

    def monitor_payload(self) -> dict[str, Any]:
        return self.to_wire()


@with_config(_WIRE)
@dataclass(frozen=True, slots=True)
class MonitorConnectionsChanged(_Message):
    """A monitor socket connected to or left some gateway process: every process recounts
    (from Redis) and tells its own sockets (docs/api.md section 11 `connections:active`)."""

    ROUTING_KEY: ClassVar[RoutingKey] = RoutingKey.MONITOR_CONNECTIONS

    at: _Moment


# --- domain.* and webhook.* (the services' outboxes -> the project service's webhooks) ------


DomainEventType = Literal[
    "project.created", "project.updated", "project.deleted", "api_key.created",
    "api_key.revoked", "route.created", "route.updated", "route.deleted", "alert.triggered",
    "alert.acknowledged", "user.registered"]
assert get_args(DomainEventType) == DOMAIN_EVENT_TYPES


@with_config(_WIRE)
@dataclass(frozen=True, slots=True)
class DomainEvent(_Message):
    """A change of a resource (docs/api.md, webhooks), published under `domain.<type>` through
    the outbox of the service that made it (contracts/outbox.py): at least once, so
    receivers deduplicate by `event_id`. `data` is the resource as the API answers it (never
    a secret or key material); `project_id` the project it belongs to (none for
    `user.registered`, and for an alert of a rule without a project, whose webhooks are
    those of the rule owner's projects: `owner_id`)."""

    event_id: _Id
    type: DomainEventType
    timestamp: _Moment
    project_id: Annotated[_Id | None, _absent(None)]
    owner_id: Annotated[_Id | None, _absent(None)]
    data: Mapping[str, Any]

    @property
    def ROUTING_KEY(self) -> str:  # read like the other events' class constant
        return domain_routing_key(self.type)


@with_config(_WIRE)
@dataclass(frozen=True, slots=True)
class WebhookDeliveryDue(_Message):
    """A webhook delivery's attempt number `attempt` is due (project_svc/webhook_dispatch.py)."""

    ROUTING_KEY: ClassVar[RoutingKey] = RoutingKey.WEBHOOK_DELIVERY_DUE

    delivery_id: _Id
    attempt: Annotated[int, Strict(), Field(ge=1, le=1000)]


@with_config(_WIRE)
@dataclass(frozen=True, slots=True)
class WebhookDisabled(_Message):
    """A webhook every attempt of which failed for WEBHOOK_DISABLE_AFTER_S was disabled: its
    project's owner (`user_id`) is told on the monitor as `alert:new`."""

    ROUTING_KEY: ClassVar[RoutingKey] = RoutingKey.ALERT_WEBHOOK_DISABLED

    webhook_id: _Id
    project_id: _Id
    user_id: _Id
    message: Annotated[str, _chars(2000)]
    timestamp: _Moment

    def monitor_payload(self) -> dict[str, Any]:
        """`alert:new` as monitor clients receive it (no routing field)."""
        return {"type": "webhook.disabled", "webhookId": self.webhook_id,
                "projectId": self.project_id, "message": self.message,
                "severity": "warning", "timestamp": self.timestamp}


Event = (RequestCompleted | RouteChanged | KeyRevoked | ProjectDeleted | AlertTriggered
         | AlertEmitted | MonitorConnectionsChanged | DomainEvent | WebhookDeliveryDue
         | WebhookDisabled)
ConfigEvent = RouteChanged | KeyRevoked | ProjectDeleted

EVENT_TYPES: dict[str, type[Event]] = {
    **{t.ROUTING_KEY: t for t in (RequestCompleted, RouteChanged, KeyRevoked, ProjectDeleted,
                                  AlertTriggered, AlertEmitted, MonitorConnectionsChanged,
                                  WebhookDeliveryDue, WebhookDisabled)},
    **{domain_routing_key(t): DomainEvent for t in DOMAIN_EVENT_TYPES},
}


@dataclass(slots=True)
class _Batch(Generic[_E]):
    """A message body: `{"events": [...]}`, read and written in one pass of pydantic's."""

    events: list[_E]


def encode_events(events: list[Event]) -> bytes:
    """One message body; every event must be of one type (one routing key)."""
    event_type = type(events[0]) if events else RequestCompleted  # any type writes []
    # One type's serialiser (pydantic's for the union of all seven takes twice as long). It
    # would write an event of another type under its own field names, silently: refuse that.
    if any(type(event) is not event_type for event in events):
        raise TypeError(f"events of more than one type: {event_type.__name__} and others")
    return _batch_adapter(event_type).dump_json(_Batch(events))


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
        # the usual case, every event fits: the body is parsed and checked in one pass
        return DecodedBatch(_batch_adapter(event_type).validate_json(body).events)
    except ValidationError:
        pass  # something does not fit: event by event, to set apart only what does not
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


def _null_is_empty(value: Any) -> Any:
    """`query` or `params` sent as null: none."""
    return {} if value is None else value


_Object = Annotated[Mapping[str, Any], BeforeValidator(_null_is_empty)]


@with_config(_WIRE)
@dataclass(frozen=True, slots=True)
class RpcRequest(_Message):
    """The params of every RPC call (the operation name travels as the AMQP message `type`).

    The gateway builds it from a request it has validated against the route table: `body`,
    `query` and `params` are the cleaned values, `caller` the verified identity (None on
    public routes), `request_id` the request's X-Request-Id, `traceparent` the span the call
    is made in (contracts.spans; None for a call outside any trace). It is parsed leniently
    where it arrives: one that does not parse makes the call untraced, never refused.
    """

    body: Any = None
    query: _Object = field(default_factory=dict)
    params: _Object = field(default_factory=dict)
    caller: Caller | None = None
    request_id: _Id | None = None
    client_ip: _Id | None = None
    traceparent: Annotated[str | None, BeforeValidator(_traceparent_or_none)] = None

    def to_wire(self) -> dict[str, Any]:
        # python mode: the body goes to orjson as the gateway's validator left it (UUIDs and
        # datetimes included), as it always did
        wire: dict[str, Any] = _adapter(RpcRequest).serializer.to_python(self)
        return wire
