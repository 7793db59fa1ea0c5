"""The request path's Redis commands, pipelined on one connection of their own.

The rate limiter sends one command per request and the response cache one per lookup. Under
load hundreds of requests share an event-loop tick, so their commands go out as one write,
and ticks follow each other on the connection without waiting for earlier replies (Redis
answers in order, so replies are matched to callers first in, first out).

Why not redis-py's connection pool for these: per command it checks a connection out and
back in (with its observability hooks), and encodes arguments through chains of type
checks; profiled under load that cost the rate limiter's one command more CPU than
the rest of the step. Here a command is encoded in one pass and the replies are parsed by
hiredis, the C parser redis-py itself uses, with redis-py's mapping of error replies, so
callers see the same reply types and exception classes (NoScriptError...).

Guarantees:
- each caller gets its own command's raw reply (RESP types as hiredis gives them, e.g.
  HGETALL as a flat list), or its own error reply raised as redis-py's exception for it;
  one command's error reply does not affect the others;
- a connection failure, or a tick whose replies are not all in within `timeout_s`, fails
  every caller still waiting on the connection (redis-py's ConnectionError/TimeoutError,
  both RedisError), and the connection is dropped (its stream position is unknown); the
  next tick connects anew;
- the connection follows the Redis client's settings: host and port or Unix socket, TLS,
  username/password (AUTH) and database (SELECT).
"""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from typing import Any, cast

import hiredis
from redis.asyncio import Redis
from redis.asyncio.connection import SSLConnection, UnixDomainSocketConnection
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import DataError, InvalidResponse, RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from gateway.library_internals import redis_error_of

Command = tuple[Any, ...]


def encode(command: Command) -> bytes:
    """One command as a RESP array of bulk strings."""
    parts = [b"*%d\r\n" % len(command)]
    for arg in command:
        if isinstance(arg, str):
            data = arg.encode()
        elif isinstance(arg, bytes):
            data = arg
        elif isinstance(arg, int) and not isinstance(arg, bool):
            data = b"%d" % arg
        elif isinstance(arg, float):
            data = repr(arg).encode()
        else:
            raise DataError(f"Invalid argument type {type(arg).__name__} for a Redis command")
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


class _Connection(asyncio.Protocol):
    """One connection: writes what it is given, hands replies to waiting callers in order."""

    def __init__(self, decode: str | None) -> None:
        self.transport: asyncio.Transport | None = None
        self.waiting: deque[asyncio.Future[Any]] = deque()
        self.failure: Exception | None = None
        # commands written and replies read so far: a tick is late while `replied` has not
        # reached the count it ended at (whether or not its callers are still waiting)
        self.sent = 0
        self.replied = 0
        options: dict[str, Any] = {"encoding": decode} if decode else {}
        self._reader = hiredis.Reader(protocolError=InvalidResponse,
                                      replyError=redis_error_of, **options)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # a stream connection's (asyncio types the argument as any kind of transport)
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self._reader.feed(data)
        while True:
            try:
                reply = self._reader.gets()
            except InvalidResponse as exc:
                self.fail(exc)
                return
            if reply is False:  # no complete reply yet (RESP2 has no boolean replies)
                return
            if not self.waiting:
                self.fail(InvalidResponse("Redis sent a reply nobody asked for"))
                return
            future = self.waiting.popleft()
            self.replied += 1
            if future.done():  # the caller was cancelled meanwhile
                continue
            if isinstance(reply, RedisError):  # an error reply, as parse_error mapped it
                future.set_exception(reply)
            else:
                future.set_result(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        self.fail(RedisConnectionError(f"Redis connection lost: {exc!r}" if exc
                                       else "Redis closed the connection"))

    def send(self, data: bytes, futures: list[asyncio.Future[Any]]) -> None:
        assert self.transport is not None
        self.waiting.extend(futures)
        self.sent += len(futures)
        self.transport.write(data)

    def fail(self, error: Exception) -> None:
        """Every waiting caller hears of it; the connection is not used again."""
        if self.failure is None:
            self.failure = error
        while self.waiting:
            future = self.waiting.popleft()
            if not future.done():
                future.set_exception(error)
        if self.transport is not None:
            self.transport.abort()


class RedisBatcher:
    def __init__(self, redis: Redis, *, timeout_s: float = 1.0) -> None:
        pool = redis.connection_pool
        self._settings = dict(pool.connection_kwargs)
        self._connection_class = pool.connection_class
        self._timeout_s = timeout_s
        self._connection: _Connection | None = None
        self._connecting: asyncio.Task[_Connection] | None = None
        self._commands: list[bytes] = []
        self._futures: list[asyncio.Future[Any]] = []
        self._sending: set[asyncio.Task[None]] = set()  # referenced until done
        self._closed = False

    async def close(self) -> None:
        self._closed = True
        if self._connecting is not None:
            self._connecting.cancel()
        if self._connection is not None:
            self._connection.fail(RedisConnectionError("Redis batcher closed"))
            self._connection = None

    def call(self, *command: Any) -> asyncio.Future[Any]:
        """The reply of `command` (e.g. `call("HGETALL", key)`), sent with this tick's others."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        if self._closed:
            future.set_exception(RedisConnectionError("Redis batcher closed"))
            return future
        try:
            data = encode(command)
        except DataError as exc:
            future.set_exception(exc)
            return future
        self._commands.append(data)
        self._futures.append(future)
        if len(self._futures) == 1:
            loop.call_soon(self._send_tick)
        return future

    def _send_tick(self) -> None:
        data, futures = b"".join(self._commands), self._futures
        self._commands, self._futures = [], []
        connection = self._connection
        if connection is not None and connection.failure is None:
            self._send(connection, data, futures)
            return
        task = asyncio.ensure_future(self._connect_and_send(data, futures))
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _connect_and_send(self, data: bytes, futures: list[asyncio.Future[Any]]
                                ) -> None:
        try:
            if self._connecting is None:
                self._connecting = asyncio.ensure_future(self._connect())
            connecting = self._connecting
            try:
                connection = await asyncio.shield(connecting)
            finally:
                if self._connecting is connecting and connecting.done():
                    self._connecting = None
        except BaseException as exc:  # every caller of the tick must hear of it
            error = exc if isinstance(exc, RedisError) else (
                RedisConnectionError(f"Redis unreachable: {exc!r}"))
            for future in futures:
                if not future.done():
                    future.set_exception(error)
            if not isinstance(exc, Exception):
                raise
            return
        self._send(connection, data, futures)

    def _send(self, connection: _Connection, data: bytes,
              futures: list[asyncio.Future[Any]]) -> None:
        if connection.failure is not None:  # lost while this tick waited for it
            for future in futures:
                if not future.done():
                    future.set_exception(connection.failure)
            return
        connection.send(data, futures)
        # holds counts, not the callers' futures (nor their replies) for the timeout's length
        asyncio.get_running_loop().call_later(self._timeout_s, self._deadline, connection,
                                              connection.sent)

    def _deadline(self, connection: _Connection, tick_end: int) -> None:
        """Replies come in order: fewer than the tick's end read by now means it is late."""
        if connection.replied < tick_end and connection.failure is None:
            connection.fail(RedisTimeoutError(
                f"Redis did not answer within {self._timeout_s} s"))

    async def _connect(self) -> _Connection:
        settings = self._settings
        loop = asyncio.get_running_loop()
        connection = _Connection("utf-8" if settings.get("decode_responses") else None)
        timeout = settings.get("socket_connect_timeout") or self._timeout_s
        async with asyncio.timeout(timeout):
            if issubclass(self._connection_class, UnixDomainSocketConnection):
                await loop.create_unix_connection(lambda: connection, settings["path"])
            else:
                await loop.create_connection(
                    lambda: connection, settings.get("host", "localhost"),
                    settings.get("port", 6379), ssl=self._tls_context())
            greeting = []
            password = settings.get("password")
            if password:
                username = settings.get("username")
                greeting.append(("AUTH", username, password) if username else ("AUTH", password))
            if settings.get("db"):
                greeting.append(("SELECT", settings["db"]))
            if greeting:
                futures = [loop.create_future() for _ in greeting]
                connection.send(b"".join(encode(command) for command in greeting), futures)
                try:
                    await asyncio.gather(*futures)
                except BaseException:
                    connection.fail(RedisConnectionError("Redis refused AUTH or SELECT"))
                    raise
        if self._closed:
            connection.fail(RedisConnectionError("Redis batcher closed"))
            raise RedisConnectionError("Redis batcher closed")
        if self._connection is not None:
            self._connection.fail(RedisConnectionError("replaced"))
        self._connection = connection
        return connection

    def _tls_context(self) -> ssl.SSLContext | None:
        if not issubclass(self._connection_class, SSLConnection):
            return None
        settings = self._settings
        context = ssl.create_default_context(cafile=settings.get("ssl_ca_certs"))
        if settings.get("ssl_check_hostname") is False:
            context.check_hostname = False
        if settings.get("ssl_certfile"):
            context.load_cert_chain(settings["ssl_certfile"], settings.get("ssl_keyfile"))
        if settings.get("ssl_cert_reqs") in ("none", ssl.CERT_NONE):
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context
