"""The proxy's HTTP/1.1 client: keep-alive connections to upstreams, responses parsed by
httptools (llhttp, the parser uvicorn uses).

Why not aiohttp's client: profiled behind the bench's reference proxy it cost about 80 of the
proxy's 137 µs of CPU per request (a bare proxy on this client: 55 µs), and the gateway pays it
on every upstream request. What a reverse proxy needs is small: write a request, parse a
response, stream its body with backpressure, reuse the connection.

- One pool of idle connections per (scheme, host, port), most recently used first; a
  connection idle longer than `IDLE_S` is closed instead of reused, one the upstream closed
  leaves the pool at once.
- New connections go to addresses the resolver returned (it refuses forbidden ones: the SSRF
  rules at connect time) within `connect_timeout_s`; TLS for https, verified against the
  URL's host name.
- Every exchange has one deadline (`total_timeout_s`, the response body included): past it
  the connection is aborted and the waiting side gets TimeoutError.
- Request bodies stream with the socket's backpressure: Content-Length when the client gave
  one, chunked otherwise. Response bodies stream too: past `HIGH_WATER` unread bytes the
  socket stops being read until the reader catches up, so memory stays flat for any size.
- An answer's head is bounded: past `max_header_bytes` bytes (status line, header lines and
  any informational answers before it) or `max_header_fields` fields the exchange is broken
  (UpstreamBroken) and the connection closed. The bytes are counted as they arrive, before
  the parser sees them, so reading stops at the bound: httptools would otherwise gather a
  header line of any length, and a head of any size, in memory.
- Errors: `UpstreamConnectError` when no connection could be made (nothing was sent),
  `UpstreamBroken` when the upstream broke the exchange, TimeoutError past the deadline.
  An idempotent request without a body is sent again once, on a new connection, when
  nothing of it can have reached the upstream's application: the connection could not be
  made, or it was a reused one the upstream had already closed (no answer came back).
- A connection goes back to the pool only when its answer was read to the end (and the
  upstream keeps it alive); anything else, a cancelled exchange included, closes it, as does
  a byte arriving after the end of an answer (no request is pipelined).
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

import httptools
from multidict import CIMultiDict
from yarl import URL

# below the keep-alive timeouts servers commonly use (Node's is 5 s): an idle connection is
# closed here before its upstream closes it under a request
IDLE_S = 4.0
# sent again after a stale kept-alive connection: repeating them changes nothing
IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})
HIGH_WATER = 256 * 1024
LOW_WATER = 64 * 1024
# the defaults of UPSTREAM_MAX_HEADER_BYTES / UPSTREAM_MAX_HEADER_FIELDS (contracts/settings.py)
MAX_HEADER_BYTES = 64 * 1024
MAX_HEADER_FIELDS = 100

# (host, port) -> addresses to connect to, checked by the policy
Resolve = Callable[[str, int], Awaitable[Sequence[str]]]


class UpstreamConnectError(OSError):
    """No connection to the upstream: nothing of the request was sent."""


class UpstreamBroken(Exception):
    """The upstream broke the exchange (closed early, malformed response)."""


class _Stale(UpstreamBroken):
    """A reused connection was closed before any of the response came back."""


class UpstreamResponse:
    """Status and headers of an upstream's answer, and its body to read once."""

    def __init__(self, connection: _Connection, status: int, reason: str,
                 headers: CIMultiDict[str], content_length: int | None) -> None:
        self._connection = connection
        self.status = status
        self.reason = reason
        self.headers = headers
        self.content_length = content_length

    async def read(self, up_to: int | None = None) -> tuple[bytes, bool]:
        """The body, or its first `up_to` bytes (stopping when more arrived): (bytes, whole)."""
        parts: list[bytes] = []
        size = 0
        async for chunk in self.chunks():
            parts.append(chunk)
            size += len(chunk)
            if up_to is not None and size > up_to:
                return b"".join(parts), False
        return b"".join(parts), True

    async def chunks(self) -> AsyncIterator[bytes]:
        connection = self._connection
        while True:
            chunk = await connection.next_chunk()
            if chunk is None:
                return
            yield chunk

    def release(self) -> None:
        """Back to the pool when the body was read to its end, else closed."""
        self._connection.release()


class _Connection(asyncio.Protocol):
    def __init__(self, pool: UpstreamClient, key: tuple[str, str, int]) -> None:
        self._pool = pool
        self.key = key
        self._max_header_bytes = pool.max_header_bytes
        self._max_header_fields = pool.max_header_fields
        self.transport: asyncio.Transport | None = None
        self.idle_since = 0.0
        self.reused = False
        self._parser = httptools.HttpResponseParser(self)
        self._readable: asyncio.Future[None] | None = None
        self._writable: asyncio.Future[None] | None = None
        self._failure: BaseException | None = None  # the connection is unusable after it
        self._closed = False
        self._paused = False
        self._timer: asyncio.TimerHandle | None = None
        self._head: asyncio.Future[UpstreamResponse] | None = None
        self._answer(head_only=False)

    def _answer(self, *, head_only: bool) -> None:
        """The state of one answer, fresh for each exchange on the connection."""
        self._chunks: deque[bytes] = deque()
        self._buffered = 0
        self._complete = False
        self._keep_alive = False  # as the parser said at the end of the answer
        self._got_bytes = False
        self._until_close = False  # a body delimited by the end of the connection
        self._no_body = head_only  # the answer to a HEAD request
        self._status = 0
        self._reason = ""
        self._headers: CIMultiDict[str] = CIMultiDict()
        self._in_head = True  # until the final (non-informational) head is complete
        self._head_room = self._max_header_bytes

    # --- one exchange ----------------------------------------------------------------------

    def begin(self, deadline: float, head_only: bool) -> asyncio.Future[UpstreamResponse]:
        """Only on a fresh or pooled connection: neither paused nor failed (see `release`)."""
        loop = asyncio.get_running_loop()
        self._answer(head_only=head_only)
        self._head = loop.create_future()
        self._timer = loop.call_at(deadline, self._expired)
        return self._head

    def write(self, data: bytes) -> None:
        assert self.transport is not None
        self.transport.write(data)

    async def drain(self) -> None:
        if self._writable is not None and self._failure is None:
            await self._writable  # resolved when writing resumes or the connection ends
        if self._failure is not None:
            raise self._failure

    async def next_chunk(self) -> bytes | None:
        while not self._chunks:
            if self._complete:
                return None
            if self._failure is not None:
                raise self._failure
            self._readable = asyncio.get_running_loop().create_future()
            await self._readable
        chunk = self._chunks.popleft()
        self._buffered -= len(chunk)
        if self._paused and self._buffered <= LOW_WATER and self.transport is not None:
            self._paused = False
            self.transport.resume_reading()
        return chunk

    def release(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._complete and self._keep_alive and self._failure is None and not (
                self._closed or self._no_body or self._paused or self._chunks):
            self._pool.give_back(self)
        else:
            self.close()

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            if self.transport is not None:
                self.transport.close()

    def _expired(self) -> None:
        self._timer = None
        if not self._complete:  # an answer read to its end but not yet released is whole
            self._fail(TimeoutError("Upstream did not answer in time"))
        self.close()

    def _fail(self, error: BaseException) -> None:
        if self._failure is None:
            self._failure = error
        if self._head is not None and not self._head.done():
            self._head.set_exception(error)
        if self._readable is not None and not self._readable.done():
            self._readable.set_exception(error)
        if self._writable is not None and not self._writable.done():
            self._writable.set_result(None)  # drain() raises the failure

    def _wake_reader(self) -> None:
        if self._readable is not None and not self._readable.done():
            self._readable.set_result(None)

    # --- asyncio.Protocol ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self._got_bytes = True
        try:
            if self._in_head:
                if len(data) > self._head_room:
                    self._feed_up_to_the_bound(data)
                    return
                self._head_room -= len(data)
            self._parser.feed_data(data)
        except (httptools.HttpParserError, httptools.HttpParserUpgrade) as exc:
            # (no upgrade was asked for: Upgrade and Connection are never forwarded)
            self._fail(UpstreamBroken(f"malformed response: {exc!r}"))
            self.close()

    def _feed_up_to_the_bound(self, data: bytes) -> None:
        """`data` is more than the head may still take: the parser gets that much, and the
        rest only when the head ended within it (the rest is body)."""
        view = memoryview(data)  # slices without copying
        room, self._head_room = self._head_room, 0
        self._parser.feed_data(view[:room])
        if self._in_head:
            self._fail(UpstreamBroken("bytes after the end of the answer" if self._complete
                                      else f"answer head over {self._max_header_bytes} bytes"))
            self.close()
        elif not self._closed:
            self._parser.feed_data(view[room:])

    def eof_received(self) -> bool | None:
        return None  # close the transport: connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        self._pool.forget(self)
        if self._until_close and not self._complete and exc is None and self._failure is None:
            self._complete = True  # the orderly end of the connection ends this body
            self._wake_reader()
        elif not self._complete or (self._head is not None and not self._head.done()):
            if self.reused and not self._got_bytes:
                self._fail(_Stale("the upstream had closed the kept-alive connection"))
            else:
                self._fail(UpstreamBroken("the upstream closed the connection early"))
        if self._failure is None and not self._complete:
            self._failure = UpstreamBroken("the connection closed")
        if self._writable is not None and not self._writable.done():
            self._writable.set_result(None)  # drain() raises the failure

    def pause_writing(self) -> None:
        self._writable = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        if self._writable is not None and not self._writable.done():
            self._writable.set_result(None)
        self._writable = None

    # --- httptools callbacks ---------------------------------------------------------------

    def on_status(self, reason: bytes) -> None:
        self._reason += reason.decode("latin-1")

    def on_header(self, name: bytes, value: bytes) -> None:
        headers = self._headers
        headers.add(name.decode("latin-1"), value.decode("utf-8", "surrogateescape"))
        if len(headers) > self._max_header_fields:
            error = UpstreamBroken(f"answer head over {self._max_header_fields} header fields")
            self._fail(error)
            raise error  # stops the parser: data_received closes the connection

    def on_headers_complete(self) -> None:
        status = self._parser.get_status_code()
        if 100 <= status < 200:  # informational (100 Continue...): the answer follows
            self._headers = CIMultiDict()
            self._reason = ""
            return
        self._status = status
        self._in_head = False
        length = self._headers.get("Content-Length")
        content_length = int(length) if length is not None and length.isdigit() else None
        chunked = "chunked" in self._headers.get("Transfer-Encoding", "").lower()
        if self._no_body or status in (204, 304):
            content_length = 0
        elif content_length is None and not chunked:
            self._until_close = True
        head = self._head
        if head is not None and not head.done():
            head.set_result(UpstreamResponse(self, status, self._reason, self._headers,
                                             content_length))
        if self._no_body:  # a HEAD answer announces a body that never comes
            self._complete = True

    def on_body(self, body: bytes) -> None:
        if self._no_body:
            return
        self._chunks.append(body)
        self._buffered += len(body)
        if self._buffered > HIGH_WATER and not self._paused and self.transport is not None:
            self._paused = True
            self.transport.pause_reading()
        self._wake_reader()

    def on_message_complete(self) -> None:
        if self._status == 0:  # the end of an informational answer
            return
        # asked now: after this callback the parser has moved on to the next message
        self._keep_alive = self._parser.should_keep_alive()
        self._complete = True
        # Nothing may come before the next request (none is pipelined): a byte more breaks the
        # connection, so an upstream cannot feed the parser of a pooled connection for free.
        self._in_head, self._head_room = True, 0
        self._wake_reader()


class UpstreamClient:
    def __init__(self, resolve: Resolve, *, connect_timeout_s: float, total_timeout_s: float,
                 max_header_bytes: int = MAX_HEADER_BYTES,
                 max_header_fields: int = MAX_HEADER_FIELDS) -> None:
        self._resolve = resolve
        self.max_header_bytes = max_header_bytes
        self.max_header_fields = max_header_fields
        self._connect_timeout_s = connect_timeout_s
        self._total_timeout_s = total_timeout_s
        self._idle: dict[tuple[str, str, int], list[_Connection]] = {}
        self._tls = ssl.create_default_context()

    async def close(self) -> None:
        for connections in self._idle.values():
            for connection in connections:
                connection.close()
        self._idle.clear()

    async def request(self, method: str, target: URL, headers: Sequence[tuple[str, str]],
                      body: AsyncIterator[bytes] | None = None,
                      body_length: int | None = None) -> UpstreamResponse:
        """Sends the request and returns once the response's head is in; read its body (or
        not) and `release()` it. `target` is absolute; `headers` go as given, after Host."""
        deadline = asyncio.get_running_loop().time() + self._total_timeout_s
        head = _request_head(method, target, headers, body, body_length)
        key = (target.scheme, target.raw_host or "", target.port or 80)
        repeatable = body is None and method in IDEMPOTENT
        for attempt in (1, 2):
            again = repeatable and attempt == 1
            connection = self._idle_connection(key) if attempt == 1 else None
            if connection is None:
                try:
                    connection = await self._connect(key, target, deadline)
                except UpstreamConnectError:
                    if again:
                        continue
                    raise
            waiting = connection.begin(deadline, head_only=method == "HEAD")
            try:
                connection.write(head)
                if body is not None:
                    await _send_body(connection, body, chunked=body_length is None)
                return await waiting
            except _Stale:
                connection.release()
                if again:
                    continue
                raise UpstreamBroken("the upstream closed the connection") from None
            except BaseException:
                connection.release()
                if not waiting.done():
                    waiting.cancel()
                elif not waiting.cancelled():
                    waiting.exception()  # retrieved: the error raised here says it all
                raise
        raise AssertionError("unreachable")

    def give_back(self, connection: _Connection) -> None:
        connection.idle_since = time.monotonic()
        connection.reused = True
        self._idle.setdefault(connection.key, []).append(connection)

    def forget(self, connection: _Connection) -> None:
        idle = self._idle.get(connection.key)
        if idle and connection in idle:
            idle.remove(connection)

    def _idle_connection(self, key: tuple[str, str, int]) -> _Connection | None:
        idle = self._idle.get(key)
        now = time.monotonic()
        while idle:
            connection = idle.pop()
            if not connection.closed and now - connection.idle_since < IDLE_S:
                return connection
            connection.close()
        return None

    async def _connect(self, key: tuple[str, str, int], target: URL, deadline: float
                       ) -> _Connection:
        loop = asyncio.get_running_loop()
        scheme, host, port = key
        connection = _Connection(self, key)
        tls: dict[str, Any] = {"ssl": self._tls, "server_hostname": host} if (
            scheme == "https") else {}
        timeout = min(self._connect_timeout_s, max(0.0, deadline - loop.time()))
        error: BaseException | None = None
        try:
            async with asyncio.timeout(timeout):
                addresses = await self._resolve(host, port)
                for address in addresses:
                    try:
                        await loop.create_connection(lambda: connection, address, port, **tls)
                        return connection
                    except OSError as exc:
                        error = exc
        except TimeoutError:
            raise TimeoutError("Upstream connection timed out") from None
        except OSError as exc:  # resolution failed or was refused
            raise UpstreamConnectError(str(exc)) from None
        raise UpstreamConnectError(str(error or "no address to connect to"))


def _request_head(method: str, target: URL, headers: Sequence[tuple[str, str]],
                  body: AsyncIterator[bytes] | None, body_length: int | None) -> bytes:
    lines = [f"{method} {target.raw_path_qs} HTTP/1.1\r\nHost: {target.host_port_subcomponent}"]
    for name, value in headers:
        lines.append(f"{name}: {value}")
    if body is not None:
        lines.append(f"Content-Length: {body_length}" if body_length is not None
                     else "Transfer-Encoding: chunked")
    elif method in ("POST", "PUT", "PATCH"):  # some servers want a length even for none
        lines.append("Content-Length: 0")
    lines.append("\r\n")
    return "\r\n".join(lines).encode("utf-8", "surrogateescape")


async def _send_body(connection: _Connection, body: AsyncIterator[bytes], *,
                     chunked: bool) -> None:
    async for chunk in body:
        if not chunk:
            continue
        connection.write(b"%x\r\n%s\r\n" % (len(chunk), chunk) if chunked else chunk)
        await connection.drain()
    if chunked:
        connection.write(b"0\r\n\r\n")
