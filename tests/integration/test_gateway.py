"""The gateway skeleton against the real broker and Redis: envelope, request ids, body limits,
the RPC forwarder driven by a route table, and /health."""

from __future__ import annotations

import asyncio
import dataclasses
import time
import uuid
from typing import Any

import aiohttp
import pytest

from contracts.errors import NotFound
from contracts.identity import Caller, issue_access_token
from contracts.messages import RpcRequest
from contracts.names import SERVICES, Service
from contracts.operations import Operation
from contracts.routes import ROUTES, Access, Route
from contracts.rpc import Reply, RpcServer
from gateway.app import build_app

TEST_ECHO = Operation("test.echo", Service.AUTH)
ECHO = Route("POST", "/api/v1/echo/:id", TEST_ECHO, Access.PUBLIC, "echo")
MISSING = Route("GET", "/api/v1/missing", Operation("test.missing", Service.AUTH),
                Access.PUBLIC, "404")
SLOW = Route("GET", "/api/v1/slow", Operation("test.slow", Service.AUTH), Access.PUBLIC, "slow")
NOBODY = Route("GET", "/api/v1/nobody", Operation("test.nobody", Service.ANALYTICS),
               Access.PUBLIC, "no consumer")
WRITE = Route("POST", "/api/v1/write", TEST_ECHO, Access.AUTHENTICATED, "any role")
ADMIN_ONLY = Route("GET", "/api/v1/admin-only", TEST_ECHO, Access.ADMIN, "admins")
TABLE = (*ROUTES, ECHO, MISSING, SLOW, NOBODY, WRITE, ADMIN_ONLY)


async def echo(request: RpcRequest) -> Reply:
    """What the service was handed, serialised back (the caller by its own wire form)."""
    assert isinstance(request, RpcRequest)
    assert request.caller is None or isinstance(request.caller, Caller)
    return Reply({
        "body": request.body, "query": dict(request.query), "params": dict(request.params),
        "caller": request.caller.to_wire() if request.caller is not None else None,
        "requestId": request.request_id, "clientIp": request.client_ip,
    }, status=201)


async def missing(_request: RpcRequest) -> None:
    raise NotFound("Thing not found")


async def slow(_request: RpcRequest) -> str:
    await asyncio.sleep(2)
    return "late"


async def health(_request: RpcRequest) -> dict[str, str]:
    return {"status": "ok"}


@pytest.fixture
async def services(amqp):
    """In-process RPC servers on the real service queues of the test vhost."""
    started: dict[Service, RpcServer] = {}

    async def start(*names: Service) -> None:
        for name in names:
            handlers = {"health": health}
            if name is Service.AUTH:
                handlers |= {"test.echo": echo, "test.missing": missing, "test.slow": slow}
            server = RpcServer(await amqp(f"svc-{name}"), SERVICES[name].rpc_queue, handlers)
            await server.start()
            started[name] = server

    yield start
    for server in started.values():
        await server.stop()


@pytest.fixture
async def gateway(aiohttp_client, settings, services):
    await services(Service.AUTH)
    fast = dataclasses.replace(settings, rpc_timeout_ms=500, health_timeout_ms=500)
    return await aiohttp_client(build_app(fast, TABLE))


def assert_envelope(body: dict[str, Any], response, status: int, code: str) -> None:
    assert response.status == status
    assert body["error"] == code
    assert body["statusCode"] == status
    assert body["requestId"] == response.headers["X-Request-Id"]
    assert body["timestamp"].endswith("Z")
    uuid.UUID(body["requestId"], version=4)


async def test_unknown_route_is_a_json_404(gateway):
    response = await gateway.get("/api/v1/nowhere")
    body = await response.json()
    assert_envelope(body, response, 404, "NOT_FOUND")
    assert body["message"] == "Route not found"


async def test_unknown_method_on_a_known_path_is_404(gateway):
    response = await gateway.delete("/health")
    assert_envelope(await response.json(), response, 404, "NOT_FOUND")


async def test_every_response_gets_a_fresh_request_id(gateway):
    first = await gateway.get("/api/v1/nowhere", headers={"X-Request-Id": "mine"})
    second = await gateway.get("/api/v1/nowhere")
    ids = {first.headers["X-Request-Id"], second.headers["X-Request-Id"]}
    assert len(ids) == 2 and "mine" not in ids


async def test_forwarder_passes_params_query_and_body(gateway):
    response = await gateway.post("/api/v1/echo/42?page=2&q=x", json={"name": "Ada"})
    assert response.status == 201
    body = await response.json()
    assert body["params"] == {"id": "42"}
    assert body["query"] == {"page": "2", "q": "x"}
    assert body["body"] == {"name": "Ada"}
    assert body["requestId"] == response.headers["X-Request-Id"]
    assert body["clientIp"] == "127.0.0.1"
    assert body["caller"] is None  # a public route


async def test_service_errors_become_envelopes(gateway):
    response = await gateway.get("/api/v1/missing")
    body = await response.json()
    assert_envelope(body, response, 404, "NOT_FOUND")
    assert body["message"] == "Thing not found"


async def test_malformed_json_is_400(gateway):
    response = await gateway.post(
        "/api/v1/echo/1", data=b'{"name": ', headers={"Content-Type": "application/json"}
    )
    assert_envelope(await response.json(), response, 400, "BAD_REQUEST")


async def test_body_over_one_mebibyte_is_413(gateway):
    response = await gateway.post(
        "/api/v1/echo/1", data=b"x" * (2 * 1024 * 1024),
        headers={"Content-Type": "application/json"},
    )
    assert_envelope(await response.json(), response, 413, "PAYLOAD_TOO_LARGE")


async def test_chunked_body_over_the_limit_is_413(gateway):
    async def chunks():
        for _ in range(40):
            yield b"y" * 65536

    response = await gateway.post(
        "/api/v1/echo/1", data=chunks(), headers={"Content-Type": "application/json"}
    )
    assert_envelope(await response.json(), response, 413, "PAYLOAD_TOO_LARGE")


async def test_service_past_the_deadline_is_504(gateway):
    response = await gateway.get("/api/v1/slow")
    assert_envelope(await response.json(), response, 504, "UPSTREAM_ERROR")


async def test_service_nobody_consumes_is_503(gateway):
    response = await gateway.get("/api/v1/nobody")
    assert_envelope(await response.json(), response, 503, "SERVICE_UNAVAILABLE")


async def test_health_names_the_missing_services(gateway):
    response = await gateway.get("/health")
    body = await response.json()
    assert response.status == 503
    assert body["status"] == "degraded"
    states = {s["name"]: s["status"] for s in body["services"]}
    assert states == {"auth-service": "ok", "project-service": "error",
                      "analytics-service": "error", "logging-service": "error"}
    assert "latency" not in body["services"][1] and body["services"][1]["error"]


async def test_health_is_200_when_every_part_answers(gateway, services):
    await services(Service.PROJECT, Service.ANALYTICS, Service.LOGGING)
    response = await gateway.get("/health")
    body = await response.json()
    assert response.status == 200, body
    assert body["status"] == "ok" and body["service"] == "gateway"
    assert [s["name"] for s in body["services"]] == [
        "auth-service", "project-service", "analytics-service", "logging-service"]
    assert all(s["status"] == "ok" and s["latency"] >= 0 for s in body["services"])
    assert {d["name"]: d["status"] for d in body["dependencies"]} == {
        "redis": "ok", "rabbitmq": "ok"}
    assert body["uptime"] >= 0


def bearer(settings, role: str, **kwargs) -> dict[str, str]:
    token = issue_access_token(settings.access_token_secret, user_id="u-1",
                               email="ada@example.com", role=role, **kwargs)
    return {"Authorization": f"Bearer {token}"}


async def test_authenticated_route_hands_the_caller_to_the_service(gateway, settings):
    response = await gateway.post("/api/v1/write", json={}, headers=bearer(settings, "DEVELOPER"))
    assert response.status == 201
    caller = (await response.json())["caller"]
    assert caller == {"userId": "u-1", "email": "ada@example.com", "role": "DEVELOPER"}


@pytest.mark.parametrize("header", [None, "Bearer", "Bearer ", "bearer abc", "Token abc",
                                    "Bearer not.a.token"])
async def test_missing_or_malformed_bearer_is_401(gateway, header):
    headers = {} if header is None else {"Authorization": header}
    response = await gateway.post("/api/v1/write", json={}, headers=headers)
    assert_envelope(await response.json(), response, 401, "UNAUTHORIZED")


async def test_expired_token_is_401_token_expired(gateway, settings):
    response = await gateway.post("/api/v1/write", json={},
                                  headers=bearer(settings, "ADMIN", now=time.time() - 3600))
    body = await response.json()
    assert_envelope(body, response, 401, "TOKEN_EXPIRED")
    assert body["message"] == "Token expired"


async def test_viewer_writes_are_refused(gateway, settings):
    response = await gateway.post("/api/v1/write", json={}, headers=bearer(settings, "VIEWER"))
    body = await response.json()
    assert_envelope(body, response, 403, "FORBIDDEN")
    assert body["message"] == ("Read-only role cannot perform POST operations. "
                               "View only roles cannot modify resources.")


async def test_admin_route_refuses_developers(gateway, settings):
    response = await gateway.get("/api/v1/admin-only", headers=bearer(settings, "DEVELOPER"))
    body = await response.json()
    assert_envelope(body, response, 403, "FORBIDDEN")
    assert body["message"] == "Insufficient permissions"
    allowed = await gateway.get("/api/v1/admin-only", headers=bearer(settings, "ADMIN"))
    assert allowed.status == 201


async def test_public_routes_ignore_any_authorization_header(gateway):
    response = await gateway.post("/api/v1/echo/1", json={},
                                  headers={"Authorization": "Bearer garbage"})
    assert response.status == 201
    assert (await response.json())["caller"] is None


async def test_openapi_document_covers_the_route_table(gateway):
    response = await gateway.get("/api-docs/openapi.json")
    assert response.status == 200
    document = await response.json()
    assert document["openapi"] == "3.0.3"
    for route in TABLE:
        assert route.method.lower() in document["paths"][route.openapi_path], route.template
    register = document["paths"]["/api/v1/auth/register"]["post"]
    assert register["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "RegisterBody")
    assert "409" in register["responses"] and "201" in register["responses"]


async def test_swagger_ui_is_served_from_the_package(gateway):
    page = await gateway.get("/api-docs/")
    assert page.status == 200 and "swagger-ui-bundle.js" in await page.text()
    script = await gateway.get("/api-docs/swagger-ui-bundle.js")
    assert script.status == 200 and len(await script.read()) > 100_000
    redirect = await gateway.get("/api-docs", allow_redirects=False)
    assert redirect.status == 301 and redirect.headers["Location"] == "/api-docs/"


async def test_cors_preflight_and_reflected_origin(gateway, settings):
    preflight = await gateway.options("/api/v1/write", headers={
        "Origin": "https://app.example", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "X-Custom, Authorization"})
    assert preflight.status == 204
    assert preflight.headers["Access-Control-Allow-Origin"] == "https://app.example"
    assert preflight.headers["Access-Control-Allow-Credentials"] == "true"
    assert preflight.headers["Access-Control-Allow-Headers"] == "X-Custom, Authorization"
    assert "PATCH" in preflight.headers["Access-Control-Allow-Methods"]
    assert "X-RateLimit-Limit" not in preflight.headers

    response = await gateway.post("/api/v1/write", json={}, headers={
        "Origin": "https://app.example", **bearer(settings, "VIEWER")})
    assert response.status == 403  # errors carry CORS headers too
    assert response.headers["Access-Control-Allow-Origin"] == "https://app.example"
    assert "X-Cache" in response.headers["Access-Control-Expose-Headers"]
    assert "X-RateLimit-Limit" in response.headers and "X-Request-Id" in response.headers


async def test_prometheus_metrics(gateway):
    from gateway.app import STATUS_LISTENER

    await gateway.get("/api/v1/missing")
    assert (await gateway.get("/metrics")).status == 404  # not on the public port
    host, port = gateway.app[STATUS_LISTENER].addresses[0][:2]
    async with aiohttp.ClientSession() as session, \
            session.get(f"http://{host}:{port}/metrics") as response:
        assert response.status == 200
        text = await response.text()
    for name in ("gateway_request_seconds_bucket", "rpc_client_seconds_bucket",
                 "gateway_rate_limit_decisions_total", "event_buffer_depth"):
        assert name in text, name
    assert 'route="GET /api/v1/missing",status="404"' in text


async def test_non_ascii_credentials_are_refused_not_500(gateway):
    raw = "Bearer \udcff\udcfe.a.b".encode("utf-8", "surrogateescape").decode("latin-1")
    response = await gateway.post("/api/v1/write", json={}, headers={"Authorization": raw})
    assert_envelope(await response.json(), response, 401, "UNAUTHORIZED")
    response = await gateway.get("/api/v1/missing", headers={"X-API-Key": "gw_\xff"})
    body = await response.json()
    assert_envelope(body, response, 403, "FORBIDDEN")
    assert body["message"] == "Key not found"


async def test_control_characters_in_bodies_are_400(gateway):
    response = await gateway.post("/api/v1/auth/register", json={
        "email": "a@b.co", "password": "Passw0rdX", "name": "ab\u0000"})
    assert_envelope(await response.json(), response, 400, "VALIDATION_ERROR")
