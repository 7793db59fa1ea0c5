import pytest

from contracts import operations as op
from contracts.messages import (
    KeyRevoked,
    MalformedMessage,
    RequestCompleted,
    decode_events,
    encode_events,
)
from contracts.names import SERVICES, RoutingKey, Service, rpc_queue
from contracts.operations import Operation
from contracts.routes import ROUTES, Access, Route, check_table
from contracts.timeutil import iso_of_unix, to_iso


def completed(request_id: str, status: int = 200) -> RequestCompleted:
    return RequestCompleted(
        request_id=request_id, timestamp="2026-05-10T00:00:00.123Z", method="GET",
        path="/x", route=None, status_code=status, latency=1.5, ip="127.0.0.1", user_id=None,
        api_key_id=None, project_id=None, owner_id=None, user_agent="t", content_length=0,
        error=None)


def test_batch_round_trip():
    events = [completed("a"), completed("b", 404)]
    batch = decode_events(RoutingKey.REQUEST_COMPLETED, encode_events(events))
    assert batch.events == events
    assert batch.malformed == []


def test_a_batch_decodes_as_the_type_of_its_routing_key():
    revoked = KeyRevoked("k", "h", "p", "revoked", "2026-05-10T00:00:00.000Z")
    body = encode_events([revoked])
    assert decode_events(RoutingKey.CONFIG_KEY_REVOKED, body).events == [revoked]
    # The same body under another key does not fit that key's type.
    batch = decode_events(RoutingKey.REQUEST_COMPLETED, body)
    assert batch.events == [] and [raw for raw, _ in batch.malformed] == [revoked.to_wire()]


@pytest.mark.parametrize("body", [b"nope", b"[]", b'{"events": 3}', b"{}"])
def test_malformed_batches_are_refused(body):
    with pytest.raises(MalformedMessage):
        decode_events(RoutingKey.REQUEST_COMPLETED, body)


def test_malformed_events_are_set_apart():
    good = completed("a")
    body = b'{"events": [1, ' + encode_events([good])[len(b'{"events":['):]
    batch = decode_events(RoutingKey.REQUEST_COMPLETED, body)
    assert batch.events == [good]
    assert [raw for raw, _ in batch.malformed] == [1]


def test_services_have_their_queue_and_port():
    assert SERVICES[Service.AUTH].rpc_queue == rpc_queue("auth") == "rpc.auth"
    assert [s.http_port for s in SERVICES.values()] == [4001, 4002, 4003, 4004]
    assert [s.public_name for s in SERVICES.values()] == [
        "auth-service", "project-service", "analytics-service", "logging-service"]


def test_route_templates_convert_for_aiohttp():
    route = Route("GET", "/api/v1/projects/:id/keys/:keyId", op.PROJECT_GET, Access.DEVELOPER,
                  "x")
    assert route.aiohttp_path == "/api/v1/projects/{id}/keys/{keyId}"
    assert route.path_params == ("id", "keyId")
    assert route.template == "GET /api/v1/projects/:id/keys/:keyId"


def test_a_route_cannot_be_listed_twice():
    a = Route("GET", "/x/:id", Operation("a", None), Access.PUBLIC, "a")
    b = Route("GET", "/x/:other", Operation("b", None), Access.PUBLIC, "b")
    with pytest.raises(ValueError, match="twice"):
        check_table((a, b))
    check_table(ROUTES)


def test_timestamps_have_milliseconds_and_z():
    from datetime import UTC, datetime

    assert to_iso(datetime(2026, 5, 10, 0, 0, 0, 123456, tzinfo=UTC)) == "2026-05-10T00:00:00.123Z"


def test_iso_of_unix_formats_as_to_iso_does():
    import random
    from datetime import UTC, datetime

    moments = [0.0, 1_778_371_200.9995, 1_778_371_200.9999996, 1_728_253_411.612,
               *(random.Random(7).uniform(0, 4e9) for _ in range(20_000))]
    for seconds in moments:
        assert iso_of_unix(seconds) == to_iso(datetime.fromtimestamp(seconds, UTC)), seconds


def test_request_ids_are_distinct_uuid4s():
    import uuid

    from gateway.steps.request_context import new_request_id

    ids = [new_request_id() for _ in range(20_000)]
    assert len(set(ids)) == len(ids)
    for value in ids[:1000]:
        parsed = uuid.UUID(value)
        assert (parsed.version, parsed.variant, str(parsed)) == (4, uuid.RFC_4122, value)
