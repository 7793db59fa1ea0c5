import pytest

from contracts.events import decode_batch, encode_batch
from contracts.names import SERVICES, Service, rpc_queue
from contracts.routes import ROUTES, Access, Route, check_table
from contracts.timeutil import to_iso


def test_batch_round_trip():
    events = [{"requestId": "a", "statusCode": 200}, {"requestId": "b"}]
    assert decode_batch(encode_batch(events)) == events


@pytest.mark.parametrize("body", [b"nope", b"[]", b'{"events": 3}', b'{"events": [1]}'])
def test_malformed_batches_are_refused(body):
    with pytest.raises(ValueError):
        decode_batch(body)


def test_services_have_their_queue_and_port():
    assert SERVICES[Service.AUTH].rpc_queue == rpc_queue("auth") == "rpc.auth"
    assert [s.http_port for s in SERVICES.values()] == [4001, 4002, 4003, 4004]
    assert [s.public_name for s in SERVICES.values()] == [
        "auth-service", "project-service", "analytics-service", "logging-service"]


def test_route_templates_convert_for_aiohttp():
    route = Route("GET", "/api/v1/projects/:id/keys/:keyId", "project.get", Access.DEVELOPER,
                  "x", service=Service.PROJECT)
    assert route.aiohttp_path == "/api/v1/projects/{id}/keys/{keyId}"
    assert route.path_params == ("id", "keyId")
    assert route.template == "GET /api/v1/projects/:id/keys/:keyId"


def test_a_route_cannot_be_listed_twice():
    a = Route("GET", "/x/:id", "a", Access.PUBLIC, "a")
    b = Route("GET", "/x/:other", "b", Access.PUBLIC, "b")
    with pytest.raises(ValueError, match="twice"):
        check_table((a, b))
    check_table(ROUTES)


def test_timestamps_have_milliseconds_and_z():
    from datetime import UTC, datetime

    assert to_iso(datetime(2026, 5, 10, 0, 0, 0, 123456, tzinfo=UTC)) == "2026-05-10T00:00:00.123Z"
