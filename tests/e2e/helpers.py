"""Helpers of the end-to-end tests: a real local upstream server and small API calls."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid

from aiohttp import web

from tests.e2e.conftest import Stack
from tests.support import request_json

PASSWORD = "Passw0rdX"


class Upstream:
    """A real HTTP server on loopback, in a thread of its own."""

    def __init__(self) -> None:
        self.seen: list[dict] = []
        self.counts: dict[str, int] = {}
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    def start(self) -> None:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._serve(), self._loop).result(10)

    async def _serve(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/base/slow", self._slow)
        app.router.add_get("/base/big", self._big)
        app.router.add_get("/base/counted/{name}", self._counted)
        app.router.add_route("*", "/base/{tail:.*}", self._echo)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]

    async def _echo(self, request: web.Request) -> web.Response:
        record = {"method": request.method, "path_qs": request.path_qs,
                  "headers": dict(request.headers), "body": (await request.read()).decode()}
        self.seen.append(record)
        return web.json_response(record, headers={"X-Upstream": "yes"})

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

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)


def call(stack: Stack, method: str, path: str, body=None, token=None, headers=None):
    all_headers = dict(headers or {})
    if token:
        all_headers["Authorization"] = f"Bearer {token}"
    return request_json(method, stack.gateway_url + path, body, all_headers, timeout=30)


def developer(stack: Stack) -> str:
    email = f"dev-{uuid.uuid4().hex[:10]}@example.com"
    status, body, _ = call(stack, "POST", "/api/v1/auth/register",
                           {"email": email, "password": PASSWORD, "name": "Dev"})
    assert status == 201, body
    return body["accessToken"]


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


