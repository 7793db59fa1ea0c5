"""Every message type through its wire form, and what does not fit it."""

import dataclasses

import orjson
import pytest

from contracts.errors import Unauthorized
from contracts.identity import Caller, Role
from contracts.messages import (
    EVENT_TYPES,
    AlertEmitted,
    AlertTriggered,
    DecodedBatch,
    DomainEvent,
    KeyRevoked,
    MalformedMessage,
    MonitorConnectionsChanged,
    ProjectDeleted,
    RequestCompleted,
    RequestError,
    RouteChanged,
    RouteConfigData,
    RpcRequest,
    decode_events,
    encode_events,
)
from contracts.names import DOMAIN_EVENT_TYPES, RoutingKey, domain_routing_key
from contracts.operations import Operation

AT = "2026-05-10T00:00:00.123Z"
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"


def completed(**changes) -> RequestCompleted:
    event = RequestCompleted(
        request_id="r-1", timestamp=AT, method="POST", path="/api/v1/things?x=1",
        route="POST /api/v1/things", status_code=503, latency=12.345, ip="10.0.0.7",
        user_id="u-1", api_key_id="k-1", project_id="p-1", owner_id="o-1",
        user_agent="curl/8", content_length=42,
        error=RequestError("INTERNAL", "Service Unavailable", "trace"), trace_id=TRACE_ID)
    return dataclasses.replace(event, **changes)


def route_data(**changes) -> RouteConfigData:
    data = RouteConfigData(
        id="rc-1", project_id="p-1", path="/shop/:id", method="GET", service=None,
        upstream_url="https://93.184.216.34", rate_limit=10, cache_ttl=60,
        auth_required=False, active=True, owner_id="o-1", created_at=AT, updated_at=AT)
    return dataclasses.replace(data, **changes)


EVENTS = [
    completed(),
    completed(route=None, user_id=None, api_key_id=None, project_id=None, owner_id=None,
              error=None, status_code=200, latency=0.0, trace_id=None),
    completed(error=RequestError("CLIENT_ERROR", "Not Found")),
    RouteChanged("created", route_data(), AT),
    RouteChanged("updated", route_data(service="auth", upstream_url=None, rate_limit=None,
                                       cache_ttl=None, owner_id=None, updated_at=None), AT),
    RouteChanged("deleted", route_data(active=False), AT),
    KeyRevoked("k-1", "abc123", "p-1", "revoked by owner", AT),
    ProjectDeleted("p-1", ("k-1", "k-2"), ("h-1", "h-2"), ("rc-1",), AT),
    ProjectDeleted("p-2", (), (), (), AT),
    AlertTriggered("e-1", "r-1", "Errors", "gateway", "error_rate", 12.5, 5, "gt",
                   "[CRITICAL] Errors: error_rate = 12.5 (threshold: 5)", "critical", AT,
                   "u-1", "p-1"),
    AlertTriggered("e-2", "r-1", "Count", "gateway", "request_count", 10, 5, "gte",
                   "[WARNING] Count: request_count = 10 (threshold: 5)", "warning", AT,
                   "u-1", None),
    AlertEmitted("disk", "warning", "Disk almost full", 91.5, 90, "db", AT),
    AlertEmitted(None, "info", "hello", None, None, None, AT),
    MonitorConnectionsChanged(AT),
]


@pytest.mark.parametrize("event", EVENTS, ids=lambda e: type(e).__name__)
def test_every_event_round_trips_through_its_wire_form(event):
    wire = event.to_wire()
    assert orjson.loads(orjson.dumps(wire)) == wire  # plain JSON, nothing lost on the way
    assert type(event).from_wire(wire) == event


@pytest.mark.parametrize("event", EVENTS, ids=lambda e: type(e).__name__)
def test_every_event_round_trips_through_a_message(event):
    batch = decode_events(event.ROUTING_KEY, encode_events([event, event]))
    assert batch == DecodedBatch([event, event], [])


def test_every_routing_key_of_an_event_type_is_known():
    assert set(EVENT_TYPES) == set(RoutingKey) | {
        domain_routing_key(t) for t in DOMAIN_EVENT_TYPES}
    for key, event_type in EVENT_TYPES.items():
        if event_type is DomainEvent:  # one type, its routing key from its `type`
            assert key.removeprefix("domain.") in DOMAIN_EVENT_TYPES
        else:
            assert event_type.ROUTING_KEY == key


def test_a_domain_event_travels_under_its_own_type():
    event = DomainEvent(event_id="e-1", type="route.updated", timestamp=AT, project_id="p-1",
                        owner_id=None, data={"id": "r-1", "cacheTTL": 60})
    assert event.ROUTING_KEY == "domain.route.updated"
    batch = decode_events(event.ROUTING_KEY, encode_events([event]))
    assert batch.events == [event] and batch.malformed == []
    with pytest.raises(MalformedMessage):
        DomainEvent.from_wire({**event.to_wire(), "type": "route.renamed"})


def test_wire_names_are_those_of_the_api():
    wire = completed().to_wire()
    assert set(wire) == {"requestId", "timestamp", "method", "path", "route", "statusCode",
                         "latency", "ip", "userId", "apiKeyId", "projectId", "ownerId",
                         "userAgent", "contentLength", "error", "traceId", "source"}
    assert wire["source"] == "gateway" and wire["traceId"] == TRACE_ID
    assert wire["error"] == {"code": "INTERNAL", "message": "Service Unavailable",
                             "stack": "trace"}
    assert set(route_data().to_wire()) == {
        "id", "projectId", "path", "method", "service", "upstreamUrl", "rateLimit", "cacheTTL",
        "authRequired", "active", "ownerId", "createdAt", "updatedAt"}


def test_request_completed_without_a_trace_id_still_decodes():
    """From a gateway older than the field (a rolling upgrade): the trace id is null."""
    wire = _without(completed().to_wire(), "traceId")
    assert RequestCompleted.from_wire(wire) == completed(trace_id=None)


def test_fields_a_decoder_does_not_know_are_ignored():
    """What an older consumer does with a newer message's fields (traceId, traceparent):
    decode the rest as always."""
    newer = {**completed().to_wire(), "fieldOfTheFuture": {"x": 1}}
    assert RequestCompleted.from_wire(newer) == completed()
    request = RpcRequest.from_wire({"requestId": "r-1", "fieldOfTheFuture": 1})
    assert request == RpcRequest(request_id="r-1")


def test_rpc_request_carries_the_callers_traceparent():
    traceparent = f"00-{TRACE_ID}-00f067aa0ba902b7-01"
    wire = RpcRequest(request_id="r-1", traceparent=traceparent).to_wire()
    assert wire["traceparent"] == traceparent
    assert RpcRequest.from_wire(wire).traceparent == traceparent
    assert RpcRequest.from_wire(_without(wire, "traceparent")).traceparent is None


def test_optional_route_config_fields_have_defaults():
    wire = route_data().to_wire()
    for name in ("authRequired", "active", "ownerId", "updatedAt", "rateLimit", "cacheTTL"):
        del wire[name]
    data = RouteConfigData.from_wire(wire)
    assert (data.auth_required, data.active, data.owner_id, data.updated_at, data.rate_limit,
            data.cache_ttl) == (True, True, None, None, None, None)


def _completed_wire(**changes):
    return {**completed().to_wire(), **changes}


def _without(wire, name):
    return {k: v for k, v in wire.items() if k != name}


@pytest.mark.parametrize("wire", [
    _completed_wire(statusCode=99),
    _completed_wire(statusCode=600),
    _completed_wire(statusCode="200"),
    _completed_wire(statusCode=200.0),
    _completed_wire(statusCode=True),
    _completed_wire(statusCode=None),
    _without(_completed_wire(), "statusCode"),
    _without(_completed_wire(), "requestId"),
    _without(_completed_wire(), "ip"),
    _completed_wire(requestId=7),
    _completed_wire(requestId="r" * 101),
    _completed_wire(method=None),
    _completed_wire(latency=-1),
    _completed_wire(latency="1"),
    _completed_wire(latency=False),
    _completed_wire(contentLength=-1),
    _completed_wire(contentLength=1.5),
    _completed_wire(userId=3),
    _completed_wire(route=["GET /x"]),
    _completed_wire(error="boom"),
    _completed_wire(error={"code": "X"}),
    _completed_wire(error={"code": "X", "message": 1}),
], ids=lambda wire: repr(wire)[:60])
def test_request_completed_refuses_what_does_not_fit(wire):
    with pytest.raises(MalformedMessage):
        RequestCompleted.from_wire(wire)


@pytest.mark.parametrize("trace_id", [TRACE_ID.upper(), TRACE_ID[:31], 7, ["x"]], ids=repr)
def test_a_malformed_trace_id_reads_as_none_rather_than_losing_the_event(trace_id):
    assert RequestCompleted.from_wire(_completed_wire(traceId=trace_id)).trace_id is None


def _route_changed_wire(**changes):
    return {**RouteChanged("updated", route_data(), AT).to_wire(), **changes}


@pytest.mark.parametrize("wire", [
    _route_changed_wire(action="renamed"),
    _route_changed_wire(action=None),
    _without(_route_changed_wire(), "action"),
    _without(_route_changed_wire(), "at"),
    _route_changed_wire(route=None),
    _route_changed_wire(route=["rc-1"]),
    _route_changed_wire(route=_without(route_data().to_wire(), "id")),
    _route_changed_wire(route={**route_data().to_wire(), "rateLimit": "10"}),
    _route_changed_wire(route={**route_data().to_wire(), "rateLimit": -1}),
    _route_changed_wire(route={**route_data().to_wire(), "cacheTTL": 1.5}),
    _route_changed_wire(route={**route_data().to_wire(), "active": "yes"}),
    _route_changed_wire(route={**route_data().to_wire(), "authRequired": 1}),
    _route_changed_wire(route={**route_data().to_wire(), "upstreamUrl": 5}),
], ids=lambda wire: repr(wire)[:60])
def test_route_changed_refuses_what_does_not_fit(wire):
    with pytest.raises(MalformedMessage):
        RouteChanged.from_wire(wire)


@pytest.mark.parametrize(("event_type", "wire"), [
    (KeyRevoked, _without(KeyRevoked("k", "h", "p", "r", AT).to_wire(), "keyHash")),
    (KeyRevoked, {**KeyRevoked("k", "h", "p", "r", AT).to_wire(), "keyId": None}),
    (ProjectDeleted, _without(ProjectDeleted("p", (), (), (), AT).to_wire(), "projectId")),
    (ProjectDeleted, {**ProjectDeleted("p", (), (), (), AT).to_wire(), "keyHashes": "h"}),
    (ProjectDeleted, {**ProjectDeleted("p", (), (), (), AT).to_wire(), "routeIds": [1]}),
    (ProjectDeleted, {**ProjectDeleted("p", (), (), (), AT).to_wire(), "at": None}),
])
def test_config_events_refuse_what_does_not_fit(event_type, wire):
    with pytest.raises(MalformedMessage):
        event_type.from_wire(wire)


@pytest.mark.parametrize("body", [
    b"", b"not json", b"{", b"[]", b"null", b'"events"', b"{}", b'{"events": null}',
    b'{"events": {"requestId": "r"}}', b'{"events": "[]"}',
])
def test_bodies_that_are_not_a_batch_are_refused_whole(body):
    with pytest.raises(MalformedMessage):
        decode_events(RoutingKey.REQUEST_COMPLETED, body)


@pytest.mark.parametrize("routing_key", ["", "request", "request.completed.extra",
                                         "alert.*", "config.#"])
def test_a_routing_key_without_a_message_type_is_refused(routing_key):
    with pytest.raises(MalformedMessage, match="routing key"):
        decode_events(routing_key, encode_events([completed()]))


def test_an_empty_batch_decodes_to_nothing():
    assert decode_events(RoutingKey.REQUEST_COMPLETED, b'{"events": []}') == DecodedBatch([])


def test_events_that_do_not_decode_are_set_apart_from_the_good_ones():
    good_1, good_2 = completed(request_id="a"), completed(request_id="b")
    bad = [1, "event", None, [], {"requestId": "c"}, _completed_wire(statusCode=700)]
    raw = [good_1.to_wire(), *bad[:3], good_2.to_wire(), *bad[3:]]
    batch = decode_events(RoutingKey.REQUEST_COMPLETED, orjson.dumps({"events": raw}))
    assert batch.events == [good_1, good_2]
    assert [event for event, _reason in batch.malformed] == bad
    reasons = [reason for _event, reason in batch.malformed]
    assert all(isinstance(reason, str) and reason for reason in reasons)
    assert "statusCode" in reasons[-1]


def test_events_of_another_type_do_not_decode_under_a_key():
    deleted = ProjectDeleted("p", ("k",), ("h",), (), AT)
    batch = decode_events(RoutingKey.CONFIG_KEY_REVOKED, encode_events([deleted]))
    assert batch.events == [] and [e for e, _ in batch.malformed] == [deleted.to_wire()]


# --- RPC requests ------------------------------------------------------------------------------

CALLER = Caller("u-1", "dev@example.com", Role.DEVELOPER)


def test_rpc_request_round_trips():
    request = RpcRequest(body={"name": "x", "tags": [1, 2]}, query={"page": 2},
                         params={"id": "p-1"}, caller=CALLER, request_id="r-1",
                         client_ip="10.0.0.7")
    wire = orjson.loads(orjson.dumps(request.to_wire()))
    assert wire["caller"] == {"userId": "u-1", "email": "dev@example.com", "role": "DEVELOPER"}
    assert RpcRequest.from_wire(wire) == request


def test_an_empty_rpc_request_round_trips_and_has_no_caller():
    request = RpcRequest()
    wire = request.to_wire()
    assert wire == {"body": None, "query": {}, "params": {}, "caller": None,
                    "requestId": None, "clientIp": None, "traceparent": None}
    assert RpcRequest.from_wire(wire) == request
    assert RpcRequest.from_wire({}) == request
    with pytest.raises(Unauthorized):
        _ = Operation("x.y", None).decode(request).authenticated


def test_authenticated_gives_the_caller():
    request = RpcRequest.from_wire({"caller": CALLER.to_wire()})
    caller = Operation("x.y", None).decode(request).authenticated
    assert caller == CALLER and isinstance(caller.role, Role)


@pytest.mark.parametrize("wire", [None, [], "body", 3, True, [{"body": 1}]])
def test_rpc_request_must_be_an_object(wire):
    with pytest.raises(MalformedMessage):
        RpcRequest.from_wire(wire)


@pytest.mark.parametrize("caller", [
    "u-1", 7, ["u-1"], {}, {"userId": "u-1", "email": "e@x.co"},
    {"userId": "u-1", "email": "e@x.co", "role": "ROOT"},
    {"userId": "u-1", "email": "e@x.co", "role": "developer"},
    {"userId": 1, "email": "e@x.co", "role": "ADMIN"},
    {"userId": "u-1", "email": None, "role": "ADMIN"},
    {"userId": "u-1", "email": "e@x.co", "role": ["ADMIN"]},
], ids=repr)
def test_rpc_request_refuses_a_bad_caller(caller):
    with pytest.raises(MalformedMessage, match="caller"):
        RpcRequest.from_wire({"caller": caller})


@pytest.mark.parametrize("wire", [
    {"query": "page=2"}, {"query": ["page"]}, {"params": "id"}, {"params": [1]},
    {"requestId": 5}, {"clientIp": ["10.0.0.1"]},
], ids=repr)
def test_rpc_request_refuses_bad_fields(wire):
    with pytest.raises(MalformedMessage):
        RpcRequest.from_wire(wire)


@pytest.mark.parametrize("traceparent", [1, "x" * 257, ["00-x"]], ids=repr)
def test_a_bad_traceparent_leaves_the_call_untraced_not_refused(traceparent):
    assert RpcRequest.from_wire({"traceparent": traceparent}).traceparent is None


# --- the wire form, as declared (pydantic) ----------------------------------------------------


def test_the_wire_form_is_byte_for_byte_what_it_was():
    assert encode_events([completed()]) == (
        b'{"events":[{"requestId":"r-1","timestamp":"2026-05-10T00:00:00.123Z","method":"POST",'
        b'"path":"/api/v1/things?x=1","route":"POST /api/v1/things","statusCode":503,'
        b'"latency":12.345,"ip":"10.0.0.7","userId":"u-1","apiKeyId":"k-1","projectId":"p-1",'
        b'"ownerId":"o-1","userAgent":"curl/8","contentLength":42,"error":{"code":"INTERNAL",'
        b'"message":"Service Unavailable","stack":"trace"},'
        b'"traceId":"4bf92f3577b34da6a3ce929d0e0e4736","source":"gateway"}]}')
    assert orjson.dumps(route_data().to_wire()) == (
        b'{"id":"rc-1","projectId":"p-1","path":"/shop/:id","method":"GET","service":null,'
        b'"upstreamUrl":"https://93.184.216.34","rateLimit":10,"cacheTTL":60,'
        b'"authRequired":false,"active":true,"ownerId":"o-1","createdAt":"2026-05-10T00:00:00'
        b'.123Z","updatedAt":"2026-05-10T00:00:00.123Z"}')
    assert orjson.dumps(ProjectDeleted("p", ("k",), ("h",), (), AT).to_wire()) == (
        b'{"projectId":"p","keyIds":["k"],"keyHashes":["h"],"routeIds":[],'
        b'"at":"2026-05-10T00:00:00.123Z"}')


def test_alert_payloads_keep_their_fields_and_numbers_as_sent():
    triggered = AlertTriggered("e-2", "r-1", "Count", "gateway", "request_count", 10, 5, "gte",
                               "m", "warning", AT, "u-1", None)
    wire = orjson.dumps(triggered.to_wire())
    assert b'"value":10,"threshold":5,' in wire  # an integer stays one through a relay
    assert AlertTriggered.from_wire(orjson.loads(wire)).monitor_payload() == {
        "id": "e-2", "ruleId": "r-1", "ruleName": "Count", "service": "gateway",
        "metric": "request_count", "value": 10, "threshold": 5, "operator": "gte",
        "message": "m", "severity": "warning", "timestamp": AT}
    emitted = AlertEmitted(None, "info", "hello", 1.5, None, None, AT)
    assert list(emitted.monitor_payload()) == ["type", "severity", "message", "value",
                                               "threshold", "service", "source", "timestamp"]
    assert emitted.monitor_payload()["source"] == "external"


def test_optional_fields_missing_on_the_wire_read_as_null():
    wire = _completed_wire()
    for name in ("route", "userId", "apiKeyId", "projectId", "ownerId", "error", "source"):
        del wire[name]
    event = RequestCompleted.from_wire(wire)
    assert (event.route, event.user_id, event.api_key_id, event.project_id, event.owner_id,
            event.error) == (None,) * 6
    emitted = AlertEmitted.from_wire({"severity": "info", "message": "m", "timestamp": AT})
    assert emitted == AlertEmitted(None, "info", "m", None, None, None, AT)


def test_the_source_on_the_wire_is_not_read():
    assert RequestCompleted.from_wire(_completed_wire(source="external")) == completed()


@pytest.mark.parametrize(("event_type", "wire"), [
    (RequestCompleted, _completed_wire(latency=float("nan"))),
    (RequestCompleted, _completed_wire(latency=float("inf"))),
    (RequestCompleted, _completed_wire(contentLength=2**53 + 1)),
    (RequestCompleted, _completed_wire(statusCode=503.0)),
    (RequestCompleted, _completed_wire(timestamp="yesterday")),
    (RequestCompleted, _completed_wire(timestamp="2026-05-10T00:00:00.000000000000000000000Z")),
    (RequestCompleted, _completed_wire(error={"code": "X", "message": "m", "stack": 1})),
    (AlertTriggered, {**EVENTS[9].to_wire(), "value": None}),
    (AlertTriggered, {**EVENTS[9].to_wire(), "value": True}),
    (AlertTriggered, {**EVENTS[9].to_wire(), "threshold": "5"}),
    (AlertTriggered, {**EVENTS[9].to_wire(), "severity": "CRITICAL"}),
    (AlertTriggered, _without(EVENTS[9].to_wire(), "userId")),
    (AlertEmitted, {**EVENTS[11].to_wire(), "value": float("nan")}),
    (AlertEmitted, {**EVENTS[11].to_wire(), "severity": None}),
    (MonitorConnectionsChanged, {"at": "now"}),
    (MonitorConnectionsChanged, {}),
], ids=lambda value: repr(value)[:60])
def test_numbers_moments_and_choices_refuse_what_does_not_fit(event_type, wire):
    with pytest.raises(MalformedMessage):
        event_type.from_wire(wire)


def test_a_reason_names_every_field_that_does_not_fit_by_its_wire_name():
    with pytest.raises(MalformedMessage) as refused:
        RequestCompleted.from_wire(_completed_wire(statusCode=700, userAgent=None,
                                                   error={"code": "X"}))
    reason = str(refused.value)
    assert "statusCode: " in reason and "userAgent: " in reason
    assert "error.message: " in reason


def test_a_malformed_event_among_many_leaves_the_others():
    events = [completed(request_id=f"r-{n}") for n in range(500)]
    raw = [event.to_wire() for event in events]
    raw[250] = {**raw[250], "statusCode": 600}
    batch = decode_events(RoutingKey.REQUEST_COMPLETED, orjson.dumps({"events": raw}))
    assert batch.events == events[:250] + events[251:]
    assert [(event, "statusCode" in reason) for event, reason in batch.malformed] \
        == [(raw[250], True)]


def test_other_members_of_a_message_body_are_not_read():
    body = orjson.dumps({"v": 2, "events": [completed().to_wire()]})
    assert decode_events(RoutingKey.REQUEST_COMPLETED, body) == DecodedBatch([completed()])


def test_events_of_two_types_are_not_one_message():
    with pytest.raises(TypeError):
        encode_events([completed(), MonitorConnectionsChanged(AT)])
    assert encode_events([]) == b'{"events":[]}'


def test_constructing_a_message_does_not_validate_it():
    """Values a process computed itself are not checked again; the receiver checks them."""
    event = completed(status_code=700)
    with pytest.raises(MalformedMessage, match="statusCode"):
        RequestCompleted.from_wire(event.to_wire())


def test_a_caller_reads_and_writes_its_wire_form():
    assert CALLER.to_wire() == {"userId": "u-1", "email": "dev@example.com", "role": "DEVELOPER"}
    assert type(CALLER.to_wire()["role"]) is str
    assert Caller.from_wire(CALLER.to_wire()) == CALLER
    with pytest.raises(ValueError):
        Caller.from_wire({"userId": "u-1", "email": "dev@example.com"})


def test_null_query_and_params_read_as_none():
    assert RpcRequest.from_wire({"query": None, "params": None}) == RpcRequest()
