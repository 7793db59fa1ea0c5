"""Helpers of the end-to-end tests: a real local upstream server, API calls and users, and
the assertions on the API's answers (docs/api.md section 2) that every module shares."""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

import asyncpg
from aiohttp import web
from multidict import CIMultiDict

from tests.e2e.conftest import Stack
from tests.support import request_json

PASSWORD = "Passw0rdX"
ISO_MS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
UUID4 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
ZOD_CODES = {"invalid_type", "too_small", "too_big", "invalid_string", "invalid_enum_value",
             "custom"}

Response = tuple[int, Any, dict[str, str]]
# How long a gateway entry may take to become readable in these tests. The contract is
# p99 <= 1 s (request.completed -> logging_svc -> the log store); one sample on a loaded test
# machine gets twice that, so a single scheduling hiccup does not fail a module, while a
# pipeline that loses or holds back events still does.
GATEWAY_ENTRY_WITHIN_S = 2.0


class LoopbackServer:
    """An aiohttp application on a free loopback port, served in a thread of its own; a
    subclass adds its routes in `routes`."""

    def __init__(self) -> None:
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    def routes(self, app: web.Application) -> None:
        raise NotImplementedError

    def start(self) -> None:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._serve(), self._loop).result(10)

    async def _serve(self) -> None:
        app = web.Application()
        self.routes(app)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)


class Upstream(LoopbackServer):
    """A real upstream: echoes what it received under /base/..., and a few special paths."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[dict] = []
        self.counts: dict[str, int] = {}

    def routes(self, app: web.Application) -> None:
        app.router.add_route("*", "/base/slow", self._slow)
        app.router.add_get("/base/big", self._big)
        app.router.add_get("/base/counted/{name}", self._counted)
        app.router.add_route("*", "/base/{tail:.*}", self._echo)

    async def _echo(self, request: web.Request) -> web.Response:
        record = {"method": request.method, "path_qs": request.path_qs,
                  "headers": dict(request.headers), "body": (await request.read()).decode()}
        self.seen.append(record)
        headers = CIMultiDict({"X-Upstream": "yes"})
        if "vary" in request.query:  # a response that varies on the named request headers
            headers["Vary"] = request.query["vary"]
        for line in request.query.getall("set", ()):  # `Name: value`, one field line each
            name, _, value = line.partition(":")
            headers.add(name.strip(), value.strip())
        if "pad" in request.query:  # a body at least this many bytes long
            record["pad"] = "x" * int(request.query["pad"])
        return web.json_response(record, headers=headers)

    async def _counted(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        self.counts[name] = self.counts.get(name, 0) + 1
        await asyncio.sleep(0.3)
        headers = {"Cache-Control": "no-store"} if name.startswith("nostore") else {}
        return web.json_response({"calls": self.counts[name]}, headers=headers)

    async def _slow(self, _request: web.Request) -> web.Response:
        await asyncio.sleep(3)
        return web.json_response({"late": True})

    async def _big(self, request: web.Request) -> web.StreamResponse:
        megabytes = int(request.query.get("mb", "50"))
        response = web.StreamResponse()
        response.content_length = megabytes * 1024 * 1024
        await response.prepare(request)
        chunk = b"x" * (1024 * 1024)
        for _ in range(megabytes):
            await response.write(chunk)
        await response.write_eof()
        return response


class Relay(LoopbackServer):
    """Another proxy in front of the gateway (as a CDN or a second gateway would be): it
    forwards every GET under /base to the gateway, `Via` extended, and answers what it got."""

    def __init__(self, gateway_url: str) -> None:
        super().__init__()
        self.gateway_url = gateway_url
        self.calls = 0

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/base/{tail:.*}", self._relay)

    async def _relay(self, request: web.Request) -> web.Response:
        import aiohttp

        self.calls += 1
        via = ", ".join([*request.headers.getall("Via", []), "1.1 relay"])
        async with aiohttp.ClientSession() as session, session.get(
                self.gateway_url + request.path_qs.removeprefix("/base"),
                headers={"Via": via}) as answer:
            return web.Response(status=answer.status, body=await answer.read(),
                                content_type="application/json")


# --- calls and users -----------------------------------------------------------------------


def call(stack: Stack, method: str, path: str, body: Any = None, token: str | None = None,
         headers: dict[str, str] | None = None) -> Response:
    """One request through the gateway (`token` as a bearer token)."""
    all_headers = dict(headers or {})
    if token:
        all_headers["Authorization"] = f"Bearer {token}"
    return request_json(method, stack.gateway_url + path, body, all_headers, timeout=30)


def raw(stack: Stack, method: str, path: str, data: bytes,
        headers: dict[str, str] | None = None) -> Response:
    """A request whose body is sent byte for byte (malformed or oversized JSON)."""
    request = urllib.request.Request(stack.gateway_url + path, method=method, data=data,
                                     headers={"Content-Type": "application/json",
                                              **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read()), dict(response.headers)
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read()), dict(error.headers)


@dataclass
class Client:
    """One caller of the gateway: a user with an access token (or nobody, token None)."""

    base_url: str
    token: str | None = None
    user_id: str = ""
    email: str = ""

    def call(self, method: str, path: str, body: Any = None,
             query: dict[str, Any] | None = None) -> Response:
        url = f"{self.base_url}{path}" + (f"?{urlencode(query)}" if query else "")
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        return request_json(method, url, body, headers)

    def ok(self, method: str, path: str, body: Any = None, status: int = 200,
           query: dict[str, Any] | None = None) -> Any:
        """The body of a call that must succeed with `status`."""
        got, answer, _ = self.call(method, path, body, query)
        assert got == status, (method, path, got, answer)
        return answer


def register(stack: Stack, tag: str = "dev") -> Client:
    """A new developer (a unique email starting with `tag`)."""
    email = f"{tag}-{uuid.uuid4().hex[:12]}@example.com"
    status, body, _ = call(stack, "POST", "/api/v1/auth/register",
                           {"email": email, "password": PASSWORD, "name": "E2E User"})
    assert status == 201, body
    return Client(stack.gateway_url, body["accessToken"], body["user"]["id"], email)


def with_role(stack: Stack, client: Client, role: str) -> Client:
    """Set the role with the operator CLI, then log in again for a token that carries it."""
    stack.cli("set-role", client.email, role)
    status, body, _ = call(stack, "POST", "/api/v1/auth/login",
                           {"email": client.email, "password": PASSWORD})
    assert status == 200 and body["user"]["role"] == role, body
    return Client(stack.gateway_url, body["accessToken"], client.user_id, client.email)


def developer(stack: Stack) -> str:
    """The access token of a new developer."""
    token = register(stack).token
    assert token is not None
    return token


def sql(stack: Stack, database: str, statement: str, *args: Any) -> str:
    """Run one statement on the stack's `database` ("auth" or "project"), as an operator could;
    returns its status (e.g. `UPDATE 1`)."""
    async def run() -> str:
        connection = await asyncpg.connect(stack.env[f"{database.upper()}_DATABASE_URL"])
        try:
            return await connection.execute(statement, *args)
        finally:
            await connection.close()

    return asyncio.run(run())


# --- assertions ----------------------------------------------------------------------------


def header(headers: dict[str, str], name: str) -> str | None:
    return next((v for k, v in headers.items() if k.lower() == name.lower()), None)


def parse_time(value: str) -> datetime:
    assert ISO_MS.match(value), value
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def assert_error(response: Response, status: int, code: str, message: str | None = None
                 ) -> dict[str, Any]:
    """The error envelope of docs/api.md section 2, with its request id echoed in the header;
    returns its body."""
    got, body, headers = response
    assert got == status, body
    assert body["error"] == code and body["statusCode"] == status, body
    if message is not None:
        assert body["message"] == message, body
    assert isinstance(body["message"], str) and body["message"], body
    assert ISO_MS.match(body["timestamp"]), body
    assert UUID4.match(body["requestId"]), body
    assert body["requestId"] == header(headers, "X-Request-Id")
    allowed = {"error", "message", "statusCode", "timestamp", "requestId"}
    if code == "VALIDATION_ERROR":
        allowed.add("details")
    if status == 429:
        allowed.add("retryAfter")
    assert set(body) <= allowed, body
    return body


def assert_invalid(response: Response, location: str, *fields: str,
                   code: str | None = None) -> list[dict[str, str]]:
    """400 VALIDATION_ERROR whose details name exactly `fields`, all in `location` (and all
    with the zod `code` when given)."""
    body = assert_error(response, 400, "VALIDATION_ERROR", "Request validation failed")
    details = body["details"]
    for item in details:
        assert set(item) == {"field", "location", "message", "code"}, item
        assert item["code"] in ZOD_CODES and item["message"], item
        if code is not None:
            assert item["code"] == code, item
    assert {(d["field"], d["location"]) for d in details} == {(f, location) for f in fields}, \
        details
    return details


def assert_not_found(response: Response, message: str) -> None:
    assert_error(response, 404, "NOT_FOUND", message)


# --- upstream route configs and polling ----------------------------------------------------


def project_with_route(stack: Stack, token: str, upstream: Upstream, path: str,
                       **route) -> tuple[str, dict]:
    status, project, _ = call(stack, "POST", "/api/v1/projects", {"name": "Proxy test"}, token)
    assert status == 201, project
    body = {"path": path, "method": "GET", "upstreamUrl": f"http://127.0.0.1:{upstream.port}/base",
            "authRequired": False, **route}
    status, config, _ = call(stack, "POST", f"/api/v1/projects/{project['id']}/routes", body,
                             token)
    assert status == 201, config
    return project["id"], config


def eventually(check, within_s: float = 3.0):
    """Poll `check()` until it returns a truthy value (config events take a moment)."""
    until = time.monotonic() + within_s
    while True:
        result = check()
        if result or time.monotonic() > until:
            return result
        time.sleep(0.05)


def wait_for_entry(stack: Stack, token: str, request_id: str,
                   within_s: float = GATEWAY_ENTRY_WITHIN_S) -> dict[str, Any] | None:
    """The log entry of `request_id` once `token` can read it (gateway entries arrive by
    event), else None."""
    def read() -> dict[str, Any] | None:
        status, body, _ = call(stack, "GET", f"/api/v1/logs/{request_id}", token=token)
        return body if status == 200 else None

    return eventually(read, within_s)




# --- events on the broker ------------------------------------------------------------------


class BrokerTap:
    """A queue of the test's own bound to `gw.events` under `routing_key`, read through the
    management API (what a monitor relay would receive)."""

    def __init__(self, stack: Stack, routing_key: str) -> None:
        from urllib.parse import quote

        from tests.support import rabbit_api

        self._api = rabbit_api
        vhost = quote(stack.env["AMQP_URL"].rsplit("/", 1)[1], safe="")
        self._queue = f"/queues/{vhost}/tap-{uuid.uuid4().hex[:12]}"
        rabbit_api("PUT", self._queue, {"durable": False, "auto_delete": False})
        name = self._queue.rsplit("/", 1)[1]
        rabbit_api("POST", f"/bindings/{vhost}/e/gw.events/q/{name}",
                   {"routing_key": routing_key})

    def events(self) -> list[dict[str, Any]]:
        """The events of every message that arrived since the last call."""
        messages = self._api("POST", f"{self._queue}/get", {
            "count": 1000, "ackmode": "ack_requeue_false", "encoding": "auto"})
        return [event for message in messages  # type: ignore[union-attr]
                for event in json.loads(message["payload"])["events"]]

    def close(self) -> None:
        self._api("DELETE", self._queue)


def clear_limits(redis_url: str) -> None:
    """Empty the limiter's buckets and the login throttle's counters (every test client is
    127.0.0.1, so one module's flood would otherwise limit the next ones, and a module that
    sets a small address tier starts from buckets filled under a much higher one)."""
    import redis

    client = redis.Redis.from_url(redis_url)
    for pattern in ("rl:*", "auth:login-failures:*"):
        for key in client.scan_iter(pattern, count=1000):
            client.delete(key)
    client.close()
