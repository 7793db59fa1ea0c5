"""gateway.forwarders.upstream_client against real HTTP servers on loopback: an aiohttp app
for well-formed answers, raw asyncio servers for the shapes aiohttp will not produce
(close-delimited bodies, informational answers, a kept-alive connection closed under us)."""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from aiohttp import web
from yarl import URL

from gateway.forwarders.upstream_client import (
    HIGH_WATER,
    UpstreamBroken,
    UpstreamClient,
    UpstreamConnectError,
)


async def as_is(host: str, _port: int) -> list[str]:
    return [host]


def client(**timeouts: float) -> UpstreamClient:
    return UpstreamClient(as_is, connect_timeout_s=timeouts.get("connect", 2.0),
                          total_timeout_s=timeouts.get("total", 5.0))


@pytest.fixture
async def upstream(aiohttp_server):
    seen: list[web.Request] = []

    async def echo(request: web.Request) -> web.StreamResponse:
        seen.append(request)
        body = await request.read()
        if request.path == "/slow":
            await asyncio.sleep(2)
        if request.path == "/stream":
            response = web.StreamResponse()
            response.enable_chunked_encoding()
            await response.prepare(request)
            for _ in range(64):
                await response.write(b"x" * 65536)
            await response.write_eof()
            return response
        response = web.Response(body=body or b"hello", status=201 if body else 200)
        response.headers.add("Set-Cookie", "a=1")
        response.headers.add("Set-Cookie", "b=2")
        response.headers["X-Length-Seen"] = str(request.content_length)
        response.headers["X-Chunked-Seen"] = request.headers.get("Transfer-Encoding", "")
        return response

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", echo)
    server = await aiohttp_server(app)
    server.seen = seen
    return server


Serve = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@pytest.fixture
async def http():
    upstream_client = client()
    yield upstream_client
    await upstream_client.close()


@pytest.fixture
async def raw():
    """Starts a raw server with a connection handler; its URL. Closed after the test."""
    servers: list[asyncio.Server] = []

    async def start(serve: Serve) -> URL:
        server = await asyncio.start_server(serve, "127.0.0.1", 0)
        servers.append(server)
        return URL(f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/")

    yield start
    for server in servers:
        server.close()


def answering(answer: bytes) -> Serve:
    """A handler that reads a request head, writes `answer` as it is and closes."""
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(answer)
        await writer.drain()
        writer.close()

    return serve


def answering_once_then_dropping(requests: list[int]) -> Serve:
    """A handler that answers the first request on a connection, then reads the next one and
    closes without an answer (a kept-alive connection its server ends under a request).
    `requests` counts, per connection, the requests that reached it."""
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        requests.append(1)
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()
        try:
            await reader.readuntil(b"\r\n\r\n")
            requests[-1] += 1
        except asyncio.IncompleteReadError:  # the client closed it first
            pass
        writer.close()

    return serve


async def body_of(*chunks: bytes) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk


async def test_a_kept_alive_connection_carries_the_next_request(upstream, http):
    target = URL(str(upstream.make_url("/one")))
    for _ in range(3):
        response = await http.request("GET", target, [("X-Test", "1")])
        body, whole = await response.read()
        response.release()
        assert (response.status, body, whole) == (200, b"hello", True)
        assert response.headers.getall("Set-Cookie") == ["a=1", "b=2"]
    ports = {request.transport.get_extra_info("peername")[1] for request in upstream.seen}
    assert len(ports) == 1  # one connection for the three
    assert upstream.seen[0].headers["X-Test"] == "1"
    assert upstream.seen[0].host == target.host_port_subcomponent


async def test_request_bodies_go_with_their_length_or_chunked(upstream, http):
    target = URL(str(upstream.make_url("/body")))
    response = await http.request("POST", target, [], body_of(b"ab", b"cd"), 4)
    assert (await response.read())[0] == b"abcd"
    assert response.headers["X-Length-Seen"] == "4"
    response.release()
    response = await http.request("POST", target, [], body_of(b"ab", b"", b"cd"), None)
    assert (await response.read())[0] == b"abcd"
    assert response.headers["X-Chunked-Seen"] == "chunked"
    response.release()


async def test_a_large_body_streams_in_bounded_pieces(upstream, http):
    response = await http.request("GET", URL(str(upstream.make_url("/stream"))), [])
    assert response.content_length is None
    total = 0
    async for chunk in response.chunks():
        assert len(chunk) <= HIGH_WATER + 256 * 1024  # what one socket read may add
        total += len(chunk)
        await asyncio.sleep(0)  # a slow reader: the socket is paused meanwhile
    response.release()
    assert total == 64 * 65536


async def test_read_up_to_stops_past_the_limit(upstream, http):
    response = await http.request("GET", URL(str(upstream.make_url("/stream"))), [])
    prefix, whole = await response.read(up_to=100_000)
    assert not whole and len(prefix) > 100_000
    response.release()  # not read to its end: closed, not pooled
    response = await http.request("GET", URL(str(upstream.make_url("/again"))), [])
    assert (await response.read())[0] == b"hello"
    response.release()


async def test_a_body_delimited_by_the_end_of_the_connection(http, raw):
    url = await raw(answering(b"HTTP/1.1 200 OK\r\nX-Shape: eof\r\n\r\nuntil the end"))
    response = await http.request("GET", url, [])
    assert await response.read() == (b"until the end", True)
    response.release()


async def test_informational_answers_are_skipped(http, raw):
    url = await raw(answering(b"HTTP/1.1 100 Continue\r\n\r\n"
                              b"HTTP/1.1 202 Accepted\r\nContent-Length: 2\r\n\r\nok"))
    response = await http.request("GET", url, [])
    assert (response.status, response.reason) == (202, "Accepted")
    assert await response.read() == (b"ok", True)
    response.release()


async def test_a_head_answer_has_no_body_whatever_its_length_says(upstream, http):
    response = await http.request("HEAD", URL(str(upstream.make_url("/one"))), [])
    assert response.status == 200
    assert await response.read() == (b"", True)
    response.release()


async def test_an_upstream_that_closes_early_is_broken(http, raw):
    url = await raw(answering(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort"))
    response = await http.request("GET", url, [])
    with pytest.raises(UpstreamBroken):
        await response.read()
    response.release()


async def test_a_malformed_answer_is_broken(http, raw):
    url = await raw(answering(b"NOT HTTP AT ALL\r\n\r\n"))
    with pytest.raises(UpstreamBroken):
        await http.request("GET", url, [])


async def test_a_stale_kept_alive_connection_is_replaced_once(http, raw):
    """The upstream answers, keeps the connection, then closes it as the next request goes
    out: the request goes again on a new connection."""
    requests: list[int] = []
    url = await raw(answering_once_then_dropping(requests))
    for _ in range(2):
        response = await http.request("GET", url, [])
        assert await response.read() == (b"ok", True)
        response.release()
    assert len(requests) == 2  # connections


async def test_no_answer_within_the_deadline_is_a_timeout(upstream):
    http = client(total=0.3)
    with pytest.raises(TimeoutError):
        await http.request("GET", URL(str(upstream.make_url("/slow"))), [])
    await http.close()


async def test_nobody_listening_is_a_connect_error(http):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(UpstreamConnectError):
        await http.request("GET", URL(f"http://127.0.0.1:{port}/"), [])


async def test_a_refused_address_is_a_connect_error():
    async def refuse(_host: str, _port: int) -> list[str]:
        raise OSError("address not allowed")

    http = UpstreamClient(refuse, connect_timeout_s=1, total_timeout_s=1)
    with pytest.raises(UpstreamConnectError, match="not allowed"):
        await http.request("GET", URL("http://internal.example/"), [])
    await http.close()


async def test_a_body_cut_off_by_a_reset_is_broken_not_whole(http, raw):
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\n\r\npart of it")
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.get_extra_info("socket").setsockopt(  # close with a reset, not a FIN
            socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.close()

    response = await http.request("GET", await raw(serve), [])
    with pytest.raises(UpstreamBroken):
        await response.read()
    response.release()


async def test_a_post_on_a_stale_connection_is_not_sent_twice(http, raw):
    requests: list[int] = []
    url = await raw(answering_once_then_dropping(requests))
    response = await http.request("GET", url, [])
    await response.read()
    response.release()
    with pytest.raises(UpstreamBroken):
        await http.request("POST", url, [])
    assert sum(requests) == 2


# --- bounded answer heads (issue 19, item 2) ------------------------------------------------


def answer(*fields: str, body: bytes = b"ok") -> bytes:
    """A 200 with `Content-Length` and `fields` ("Name: value")."""
    lines = ["HTTP/1.1 200 OK", f"Content-Length: {len(body)}", *fields]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def answer_with_head_of(size: int, body: bytes = b"ok") -> bytes:
    """A 200 whose head (status line to the empty line, inclusive) is exactly `size` bytes."""
    bare = answer("X-Pad: ", body=body)
    pad = size - bare.index(b"\r\n\r\n") - 4
    return answer("X-Pad: " + "p" * pad, body=body)


def answering_in_turn(answers: list[bytes], connections: list[int]) -> Serve:
    """A keep-alive handler: each request, on whichever connection, gets the next of
    `answers`; `connections` counts the connections made."""
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(1)
        try:
            while True:
                await reader.readuntil(b"\r\n\r\n")
                writer.write(answers.pop(0))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        writer.close()

    return serve


async def test_an_answer_head_over_the_byte_bound_is_broken_and_its_connection_dropped(raw):
    connections: list[int] = []
    url = await raw(answering_in_turn([
        answer_with_head_of(4096, body=b"b" * 100_000),  # a body after the head: not counted
        answer_with_head_of(4096),
        answer_with_head_of(4097),
        answer()], connections))
    http = UpstreamClient(as_is, connect_timeout_s=2, total_timeout_s=5, max_header_bytes=4096)
    for expected in (b"b" * 100_000, b"ok"):  # just under the bound: whole, and pooled
        response = await http.request("GET", url, [])
        assert (response.status, await response.read()) == (200, (expected, True))
        response.release()
    assert len(connections) == 1
    with pytest.raises(UpstreamBroken, match="head over 4096 bytes"):
        await http.request("GET", url, [])
    response = await http.request("GET", url, [])  # on a new connection
    assert await response.read() == (b"ok", True)
    response.release()
    assert len(connections) == 2
    await http.close()


async def test_an_answer_head_over_the_field_bound_is_broken_and_its_connection_dropped(raw):
    connections: list[int] = []
    fields = [f"X-Field-{n}: {n}" for n in range(9)]  # with Content-Length: 10 fields
    url = await raw(answering_in_turn(
        [answer(*fields), answer(*fields, "X-One-Too-Many: 1"), answer(*fields)], connections))
    http = UpstreamClient(as_is, connect_timeout_s=2, total_timeout_s=5, max_header_fields=10)
    response = await http.request("GET", url, [])
    assert len(response.headers) == 10
    assert await response.read() == (b"ok", True)
    response.release()
    with pytest.raises(UpstreamBroken, match="head over 10 header fields"):
        await http.request("GET", url, [])
    response = await http.request("GET", url, [])
    assert await response.read() == (b"ok", True)
    response.release()
    assert len(connections) == 2
    await http.close()


async def test_an_eight_megabyte_head_is_broken_at_the_default_bounds(http, raw):
    """The issue's upstream: 8,000 header lines of 1 KB."""
    lines = [f"X-Big-{n}: {'v' * 1000}" for n in range(8000)]
    url = await raw(answering(answer(*lines)))
    with pytest.raises(UpstreamBroken, match="head over 65536 bytes"):
        await http.request("GET", url, [])
    many = [f"X-F-{n}: 1" for n in range(150)]  # small, but too many fields
    url = await raw(answering(answer(*many)))
    with pytest.raises(UpstreamBroken, match="head over 100 header fields"):
        await http.request("GET", url, [])


async def test_reading_an_endless_head_stops_at_the_bound(http, raw):
    """An upstream that never ends its head: refused once the bound is passed, not at the
    exchange's deadline, and its connection is closed."""
    written: list[int] = []
    closed = asyncio.Event()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\n")
        line = b"X-Endless: " + b"v" * 1000 + b"\r\n"
        try:
            while True:
                writer.write(line)
                written.append(len(line))
                await writer.drain()
        except ConnectionError:
            closed.set()
        writer.close()

    url = await raw(serve)
    started = asyncio.get_running_loop().time()
    with pytest.raises(UpstreamBroken, match="head over 65536 bytes"):
        await http.request("GET", url, [])
    assert asyncio.get_running_loop().time() - started < 2  # the deadline is 5 s
    await asyncio.wait_for(closed.wait(), 2)


async def test_bytes_after_an_answer_drop_its_pooled_connection(http, raw):
    """Nothing may come before the next request: an upstream that keeps sending into a pooled
    connection (here the start of a head) loses it instead of filling its parser."""
    connections: list[int] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(1)
        try:
            while True:
                await reader.readuntil(b"\r\n\r\n")
                writer.write(answer())
                await writer.drain()
                await asyncio.sleep(0.05)
                writer.write(b"HTTP/1.1 200 OK\r\nX-Unasked: 1\r\n")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        writer.close()

    url = await raw(serve)
    for _ in range(2):
        response = await http.request("GET", url, [])
        assert await response.read() == (b"ok", True)
        response.release()
        await asyncio.sleep(0.2)
    assert len(connections) == 2
