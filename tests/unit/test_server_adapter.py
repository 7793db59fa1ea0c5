"""gateway.server_adapter: a server run by GatewayRunner answers its own refusals in the
envelope and names no versions. That the aiohttp internals it takes (through
gateway.library_internals) are still there is tests/unit/test_library_internals.py's."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from aiohttp import web, web_response

from gateway import server_adapter
from gateway.server_adapter import GatewayRunner

UUID4 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")

# --- a server run by GatewayRunner -----------------------------------------------------------


Exchange = Callable[[bytes], Awaitable[tuple[int, dict[str, str], bytes]]]


@pytest.fixture
async def exchange(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Exchange]:
    """A GatewayRunner serving a small app on loopback; sends raw bytes, returns the answer
    (status, headers with lower-case names, body)."""
    monkeypatch.setattr(web_response, "SERVER_SOFTWARE", web_response.SERVER_SOFTWARE)
    server_adapter.hide_server_versions()  # undone by monkeypatch after the test

    async def fine(_request: web.Request) -> web.Response:
        return web.Response(text="fine")

    async def kept(_request: web.Request) -> web.Response:
        return web.Response(text="kept", headers={"Server": "upstream-x/1.0"})

    async def broken(_request: web.Request) -> web.Response:
        raise RuntimeError("a bug")

    app = web.Application()
    app.router.add_get("/fine", fine)
    app.router.add_get("/kept", kept)
    app.router.add_get("/broken", broken)
    runner = GatewayRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]

    async def send(data: bytes) -> tuple[int, dict[str, str], bytes]:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(data)
        answer = await asyncio.wait_for(reader.read(), 5)  # each answer closes here
        writer.close()
        head, _, body = answer.partition(b"\r\n\r\n")
        status_line, *lines = head.decode("latin-1").split("\r\n")
        headers = {k.lower(): v for k, _, v in (line.partition(": ") for line in lines)}
        return int(status_line.split()[1]), headers, body

    yield send
    await runner.cleanup()


def assert_envelope(answer: tuple[int, dict[str, str], bytes], status: int, code: str) -> None:
    got, headers, body = answer
    assert got == status, body
    assert headers["content-type"].startswith("application/json")
    envelope = json.loads(body)
    assert set(envelope) == {"error", "message", "statusCode", "timestamp", "requestId"}
    assert (envelope["error"], envelope["statusCode"]) == (code, status)
    assert UUID4.match(envelope["requestId"]) and headers["x-request-id"] == envelope["requestId"]
    assert headers["server"] == "gateway"


@pytest.mark.parametrize("request_bytes", [
    b"GARBAGE\r\n\r\n",
    b"GET /fine HTTP/1.1\r\nHost: x\r\nNoColonHere\r\n\r\n",
    b"GET /fine HTTP/1.1\r\nHost: x\r\nBad Name: y\r\n\r\n",
    b"GET /" + b"a" * 10_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
], ids=["request-line", "no-colon", "space-in-name", "long-line"])
async def test_parser_refusals_are_answered_in_the_envelope(exchange: Exchange,
                                                            request_bytes: bytes):
    answer = await exchange(request_bytes)
    assert_envelope(answer, 400, "BAD_REQUEST")
    assert json.loads(answer[2])["message"] == "Malformed HTTP request"


async def test_an_error_escaping_a_handler_is_a_500_envelope(exchange: Exchange):
    answer = await exchange(b"GET /broken HTTP/1.1\r\nHost: x\r\n\r\n")
    assert_envelope(answer, 500, "INTERNAL_ERROR")
    assert json.loads(answer[2])["message"] == "An unexpected error occurred"


async def test_answers_name_no_versions_and_keep_a_server_header_of_their_own(
        exchange: Exchange):
    status, headers, body = await exchange(
        b"GET /fine HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert (status, headers["server"], body) == (200, "gateway", b"fine")
    status, headers, _ = await exchange(
        b"GET /kept HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert (status, headers["server"]) == (200, "upstream-x/1.0")

