"""Redis commands issued in one event-loop tick go out together: one connection checkout, one
write, the replies read in order, one deadline for the lot.

The rate limiter sends one command per request and the response cache one per cache lookup.
Under load hundreds of requests share a tick, so they share the pool checkout, the timeout
and the system calls that redis-py's per-command path (or its Pipeline object, with its
retry wrapper and a timeout per reply) would spend on each of them.

Guarantees:
- each caller gets its own command's raw reply (RESP types as the parser gives them, e.g.
  HGETALL as a flat list), or its own error reply raised as redis-py's exception for it
  (NoScriptError...); one command's error reply does not affect the others;
- a connection failure or a batch past its deadline fails every caller still waiting in that
  batch with that exception, and the connection is dropped instead of going back to the pool
  (its stream position is unknown).
"""

from __future__ import annotations

import asyncio
import math
from typing import Any

from redis.asyncio import BlockingConnectionPool, Redis
from redis.exceptions import ResponseError

Command = tuple[Any, ...]


class RedisBatcher:
    def __init__(self, redis: Redis, *, timeout_s: float = 1.0, max_connections: int = 32
                 ) -> None:
        # Connections of its own to the same server, without a per-operation socket timeout:
        # the batch's one deadline bounds the checkout, the write and every read.
        template = redis.connection_pool
        self._pool = BlockingConnectionPool(
            connection_class=template.connection_class, max_connections=max_connections,
            timeout=timeout_s, **{**template.connection_kwargs, "socket_timeout": None,
                                  "socket_connect_timeout": timeout_s})
        self._timeout_s = timeout_s
        self._pending: list[tuple[Command, asyncio.Future[Any]]] = []
        self._flushing: set[asyncio.Task[None]] = set()  # referenced until done

    async def close(self) -> None:
        await self._pool.disconnect()

    def call(self, *command: Any) -> asyncio.Future[Any]:
        """The reply of `command` (e.g. `call("HGETALL", key)`), sent with this tick's others."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._pending.append((command, future))
        if len(self._pending) == 1:
            loop.call_soon(self._start_flush)
        return future

    def _start_flush(self) -> None:
        batch, self._pending = self._pending, []
        task = asyncio.ensure_future(self._flush(batch))
        self._flushing.add(task)
        task.add_done_callback(self._flushing.discard)

    async def _flush(self, batch: list[tuple[Command, asyncio.Future[Any]]]) -> None:
        connection = None
        done = 0
        try:
            async with asyncio.timeout(self._timeout_s):
                connection = await self._pool.get_connection()
                await connection.send_packed_command(
                    connection.pack_commands([command for command, _ in batch]),
                    check_health=False)
                for _, future in batch:
                    try:
                        reply = await connection.read_response(timeout=math.inf)
                    except ResponseError as error:  # this command's error reply only
                        _settle(future, error=error)
                    else:
                        _settle(future, reply=reply)
                    done += 1
        except BaseException as exc:  # every waiting caller must hear of it
            failure = exc if isinstance(exc, Exception) else ConnectionError("batch cancelled")
            for _, future in batch[done:]:
                _settle(future, error=failure)
            if connection is not None:
                await connection.disconnect()
            if not isinstance(exc, Exception):
                raise
        finally:
            if connection is not None:
                await self._pool.release(connection)


def _settle(future: asyncio.Future[Any], *, reply: Any = None,
            error: BaseException | None = None) -> None:
    if future.done():  # the caller was cancelled meanwhile
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(reply)
