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

`gateway_redis_writes_total` and `gateway_redis_commands_total` (by role: limiter, cache)
count the writes (round trips) and the commands they carried, so what pipelining saves can
be read off the metrics (`make bench` prints round trips per request).
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, cast

import hiredis
from prometheus_client import Counter
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.connection import Connection, SSLConnection, UnixDomainSocketConnection
from redis.asyncio.sentinel import SentinelConnectionPool
from redis.crc import REDIS_CLUSTER_HASH_SLOTS, key_slot
from redis.exceptions import (
    AskError,
    ClusterDownError,
    ClusterError,
    DataError,
    InvalidResponse,
    MovedError,
    ReadOnlyError,
    RedisError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from contracts.redis_clients import REDIS_FAILURES, RedisClient
from gateway.library_internals import cluster_startup_nodes, redis_error_of

Command = tuple[Any, ...]

REDIS_WRITES = Counter("gateway_redis_writes_total",
                       "Pipelined writes (round trips) of the request path to Redis", ["role"])
REDIS_COMMANDS = Counter("gateway_redis_commands_total",
                         "Commands the request path's pipelined writes carried", ["role"])


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


class _Channel:
    """The pipelined connection to one server: a tick's commands go out in one write."""

    def __init__(self, settings: dict[str, Any], connection_class: type,
                 locate: Callable[[], Awaitable[tuple[str, int]]] | None,
                 timeout_s: float, role: str) -> None:
        self._settings = settings
        self._writes = REDIS_WRITES.labels(role)
        self._commands_sent = REDIS_COMMANDS.labels(role)
        self._connection_class = connection_class
        # where the server is, asked anew for each connection (Sentinel: the current
        # primary); None: the settings' own address
        self._locate = locate
        self._timeout_s = timeout_s
        self._connection: _Connection | None = None
        self._connecting: asyncio.Task[_Connection] | None = None
        self._commands: list[bytes] = []
        self._futures: list[asyncio.Future[Any]] = []
        self._sending: set[asyncio.Task[None]] = set()  # referenced until done
        self._closed = False

    @property
    def located(self) -> bool:
        """Whether the server's address is asked for (it may change)."""
        return self._locate is not None

    async def close(self) -> None:
        self._closed = True
        if self._connecting is not None:
            self._connecting.cancel()
        if self._connection is not None:
            self._connection.fail(RedisConnectionError("Redis batcher closed"))
            self._connection = None

    def drop(self, error: Exception) -> None:
        """The server behind the connection is no longer the right one (a demoted primary):
        the next tick connects (and locates) anew."""
        if self._connection is not None:
            self._connection.fail(error)
            self._connection = None

    def call(self, data: bytes, future: asyncio.Future[Any]) -> None:
        if self._closed:
            future.set_exception(RedisConnectionError("Redis batcher closed"))
            return
        self._commands.append(data)
        self._futures.append(future)
        if len(self._futures) == 1:
            asyncio.get_running_loop().call_soon(self._send_tick)

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
        self._writes.inc()
        self._commands_sent.inc(len(futures))
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
                host, port = (await self._locate() if self._locate is not None else
                              (settings.get("host", "localhost"), settings.get("port", 6379)))
                await loop.create_connection(lambda: connection, host, port,
                                             ssl=self._tls_context())
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


def key_of(command: Command) -> Any:
    """The key a command is routed by: EVAL/EVALSHA's first key, else the first argument
    (every command the request path sends names its key there)."""
    if str(command[0]).upper() in ("EVAL", "EVALSHA"):
        return command[3] if int(command[2]) > 0 else None
    return command[1] if len(command) > 1 else None


# error replies after which the slot map is asked again: the node is gone, demoted, or the
# cluster is re-forming
_TOPOLOGY_ERRORS = (RedisConnectionError, RedisTimeoutError, ReadOnlyError, ClusterDownError)
# how often the slot map is asked again at most while errors keep coming
REFRESH_INTERVAL_S = 0.25
MAX_REDIRECTS = 5


class RedisBatcher:
    """Pipelined request-path commands for a redis-py client in any of its modes:
    - standalone (a `Redis` on a URL): one connection to its server;
    - Sentinel (a `Redis` from `Sentinel.master_for`): one connection to the primary the
      sentinels name, asked anew after the connection is lost or the server answers READONLY
      (it was demoted);
    - Cluster (a `RedisCluster`): each command goes to the master of its key's slot, one
      pipelined connection per master; MOVED updates the slot map and resends, ASK resends
      once to the importing node, TRYAGAIN waits a moment; a lost connection, READONLY or
      CLUSTERDOWN fails that call (the caller's policy applies) and makes the slot map be
      asked again, at most every REFRESH_INTERVAL_S, so a promoted replica is found.
    """

    def __init__(self, redis: RedisClient, *, role: str, timeout_s: float = 1.0) -> None:
        self._timeout_s = timeout_s
        self._role = role
        self._cluster: RedisCluster | None = None
        self._channels: dict[tuple[str, int], _Channel] = {}
        self._slots: list[tuple[str, int] | None] | None = None
        self._refreshing: asyncio.Task[None] | None = None
        self._refreshed_at = -REFRESH_INTERVAL_S
        self._prefer: tuple[str, int] | None = None
        self._avoid: tuple[str, int] | None = None
        self._closed = False
        if isinstance(redis, RedisCluster):
            self._cluster = redis
            self._settings = dict(redis.get_connection_kwargs())
            self._connection_class: type = self._settings.get("connection_class") or Connection
            self._single: _Channel | None = None
            return
        pool = redis.connection_pool
        locate = None
        if isinstance(pool, SentinelConnectionPool):
            locate = pool.get_master_address
        self._single = _Channel(dict(pool.connection_kwargs), pool.connection_class, locate,
                                timeout_s, role)

    async def close(self) -> None:
        self._closed = True
        if self._refreshing is not None:
            self._refreshing.cancel()
        if self._single is not None:
            await self._single.close()
        for channel in self._channels.values():
            await channel.close()

    def call(self, *command: Any) -> asyncio.Future[Any]:
        """The reply of `command` (e.g. `call("HGETALL", key)`), sent with this tick's others."""
        loop = asyncio.get_running_loop()
        try:
            data = encode(command)
        except DataError as exc:
            future: asyncio.Future[Any] = loop.create_future()
            future.set_exception(exc)
            return future
        single = self._single
        if single is not None:
            future = loop.create_future()
            single.call(data, future)
            if single.located:  # Sentinel: a READONLY reply means demoted
                future.add_done_callback(self._check_demoted)
            return future
        return asyncio.ensure_future(self._cluster_call(command, data))

    def _check_demoted(self, future: asyncio.Future[Any]) -> None:
        if (not future.cancelled() and isinstance(future.exception(), ReadOnlyError)
                and self._single is not None):
            self._single.drop(RedisConnectionError("the primary was demoted"))

    # --- Cluster ------------------------------------------------------------------------

    def _channel(self, address: tuple[str, int]) -> _Channel:
        channel = self._channels.get(address)
        if channel is None:
            settings = dict(self._settings, host=address[0], port=address[1])
            channel = self._channels[address] = _Channel(
                settings, self._connection_class, None, self._timeout_s, self._role)
        return channel

    def _send_to(self, address: tuple[str, int], *data: bytes) -> list[asyncio.Future[Any]]:
        """`data` (one command each) in this order, adjacent, on `address`'s connection."""
        loop = asyncio.get_running_loop()
        futures = [loop.create_future() for _ in data]
        channel = self._channel(address)
        for one, future in zip(data, futures, strict=True):
            channel.call(one, future)
        return futures

    async def _cluster_call(self, command: Command, data: bytes) -> Any:
        key = key_of(command)
        slot = key_slot(key if isinstance(key, bytes) else str(key).encode())
        asking: tuple[str, int] | None = None
        for _ in range(MAX_REDIRECTS):
            if self._slots is None:  # the first calls share one CLUSTER SLOTS
                if self._refreshing is None or self._refreshing.done():
                    self._refreshing = self._background(self._refresh())
                await asyncio.shield(self._refreshing)
            assert self._slots is not None
            address = asking or self._slots[slot]
            if address is None:
                self._refresh_soon()
                raise ClusterDownError(f"no master serves slot {slot}")
            try:
                if asking is not None:
                    ask_reply, reply = self._send_to(address, encode(("ASKING",)), data)
                    asking = None
                    await asyncio.gather(ask_reply, return_exceptions=True)
                    return await reply
                return await self._send_to(address, data)[0]
            except MovedError as exc:
                self._slots[exc.slot_id] = (exc.host, exc.port)
                # one slot moved: others may have moved along. The new owner is asked first:
                # a node that has not heard of the move yet would map the slot back.
                self._refresh_soon(prefer=(exc.host, exc.port))
            except AskError as exc:
                asking = (exc.host, exc.port)
            except TryAgainError:
                await asyncio.sleep(0.05)
            except _TOPOLOGY_ERRORS:
                self._refresh_soon(avoid=address)
                raise
        raise ClusterError(f"too many redirections for slot {slot}")

    def _background(self, refresh: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.ensure_future(refresh)
        # a failed background refresh is retried on the next error; nobody awaits it
        task.add_done_callback(lambda done: done.cancelled() or done.exception())
        return task

    def _refresh_soon(self, *, prefer: tuple[str, int] | None = None,
                      avoid: tuple[str, int] | None = None) -> None:
        if prefer is not None:
            self._prefer = prefer
        if avoid is not None:
            self._avoid = avoid
        if self._closed or (self._refreshing is not None and not self._refreshing.done()):
            return
        if time.monotonic() - self._refreshed_at < REFRESH_INTERVAL_S:
            # asked a moment ago: ask again when the interval is over, once
            self._refreshing = self._background(self._refresh_later())
            return
        self._refreshing = self._background(self._refresh())

    async def _refresh_later(self) -> None:
        await asyncio.sleep(REFRESH_INTERVAL_S - (time.monotonic() - self._refreshed_at))
        await self._refresh()

    async def _refresh(self) -> None:
        """The slot map, from the first node that answers CLUSTER SLOTS: the owner a MOVED
        named, the known masters, the client's other nodes, and last the node that failed."""
        assert self._cluster is not None
        self._refreshed_at = time.monotonic()
        prefer, avoid = self._prefer, self._avoid
        self._prefer = self._avoid = None
        known = set(self._slots or ()) - {None}
        candidates = list(dict.fromkeys(
            ([prefer] if prefer else []) + sorted(a for a in known if a is not None)
            + [(node.host, int(node.port)) for node in self._cluster.get_nodes()]
            + cluster_startup_nodes(self._cluster)))
        if avoid in candidates:
            candidates.remove(avoid)
            candidates.append(avoid)
        error: Exception = ClusterDownError("no cluster node known")
        for address in candidates:
            try:
                reply = await self._send_to(address, encode(("CLUSTER", "SLOTS")))[0]
            except REDIS_FAILURES as exc:
                error = exc
                continue
            slots: list[tuple[str, int] | None] = [None] * REDIS_CLUSTER_HASH_SLOTS
            for start, end, master, *_ in reply:
                host = master[0].decode() if isinstance(master[0], bytes) else master[0]
                where = (host or address[0], int(master[1]))
                slots[int(start):int(end) + 1] = [where] * (int(end) - int(start) + 1)
            self._slots = slots
            for gone in set(self._channels) - set(slots) - set(candidates):
                await self._channels.pop(gone).close()
            return
        raise error
