"""RPC over RabbitMQ: one quorum queue per service, replies on direct reply-to.

Wire format (both sides live here, so they cannot drift):

- request: `type` = operation name, body = `contracts.messages.RpcRequest` as JSON
  (`{"body", "query", "params", "caller", "requestId", "clientIp", "traceparent"}`),
  `correlation_id`, `reply_to` = `amq.rabbitmq.reply-to`, `expiration` = the caller's
  remaining time, and the absolute deadline in a header (the broker drops a request that
  expires in the queue; the server drops one it fetched too late, so a request whose caller
  gave up is never processed);
- `traceparent` (W3C Trace Context, contracts.tracing): the caller's span the call is made
  in, set by the client for a call made while a span is current (`contracts.spans.CURRENT`:
  a gateway request, or an RPC the calling service is handling), absent otherwise. The
  server handles a traced call in a span of its own parented on it, with its trace id on
  every log line the handler writes; an absent or unparsable one makes the call untraced,
  never refused;
- reply: JSON `{"ok": true, "status": 200, "result": ...}` or `{"ok": false, "error": {...}}`.

A service's operations are methods marked `@handles(OPERATION)` (the declarations of
`contracts.operations`); `operations_of(obj)` returns them bound, for
`ServiceProcess.add_handlers`.
"""

from __future__ import annotations

import asyncio
import math
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any, TypeVar

import aio_pika
import aiormq
import orjson
from aio_pika.abc import (
    AbstractChannel,
    AbstractIncomingMessage,
    AbstractRobustChannel,
    AbstractRobustConnection,
)

from contracts.amqp import QueueConsumer, declare_rpc_queue, publish_dead_letter
from contracts.errors import (
    ApiError,
    BadRequest,
    InternalError,
    NotFound,
    ServiceUnavailable,
    UpstreamTimeout,
)
from contracts.logging import get_logger
from contracts.messages import MalformedMessage, RpcRequest
from contracts.metrics import (
    MESSAGES_DEAD_LETTERED,
    RPC_CLIENT_SECONDS,
    RPC_EXPIRED_DROPPED,
    RPC_RETRIED,
    RPC_SERVER_SECONDS,
)
from contracts.names import DIRECT_REPLY_TO, HEADER_DEADLINE
from contracts.operations import Call, Operation, Redirect
from contracts.spans import CURRENT, Span, recorder, working_in
from contracts.timeutil import now_ms
from contracts.tracing import parse_traceparent

log = get_logger(__name__)

# How long a queue's consumer count is trusted before it is checked again (in the background).
PRESENCE_TTL_S = 1.0
# How long after its consumers were last seen a queue without any still takes calls (they
# wait in the durable queue, within their deadline) instead of failing fast: a service's
# replicas that lost their broker node reconnect to another one within this time.
RECONNECT_GRACE_S = 5.0


@dataclass(frozen=True)
class _Presence:
    consumers: int
    checked_at: float  # monotonic
    consumed_at: float  # monotonic time consumers were last seen; -inf: never


@dataclass(frozen=True)
class Reply:
    """What a handler returns when the answer is not a plain 200."""

    body: Any
    status: int = 200


@dataclass(frozen=True)
class RpcResult:
    status: int
    body: Any


Handler = Callable[[RpcRequest], Awaitable[Any]]
HandlerMethod = TypeVar("HandlerMethod", bound=Callable[..., Awaitable[Any]])
_OPERATION_ATTR = "__rpc_operation__"


def handles(declared: Operation) -> Callable[[HandlerMethod], HandlerMethod]:
    """Mark a method as the handler of `declared`: it takes the operation's `Call` and
    returns its answer (`contracts.operations`)."""

    def mark(method: HandlerMethod) -> HandlerMethod:
        setattr(method, _OPERATION_ATTR, declared)
        return method

    return mark


def declared_operations(cls: type) -> dict[Operation, str]:
    """Operation -> method name of every `@handles` method of `cls`."""
    found: dict[Operation, str] = {}
    for klass in reversed(cls.__mro__):
        for attribute, value in vars(klass).items():
            declared = getattr(value, _OPERATION_ATTR, None)
            if declared is not None:
                if declared in found and found[declared] != attribute:
                    raise ValueError(f"{declared} handled twice in {cls.__name__}")
                found[declared] = attribute
    return found


def operations_of(handlers: object) -> dict[str, Handler]:
    """The `@handles` methods of `handlers`, bound to their operations, by the operation's
    name on the wire: each decodes the request into the operation's types, runs the method
    and writes its answer as the operation declares it."""
    return {declared.name: _bound(declared, getattr(handlers, attribute))
            for declared, attribute in declared_operations(type(handlers)).items()}


def _bound(declared: Operation, method: Callable[[Call[Any, Any, Any]], Awaitable[Any]]
           ) -> Handler:
    async def run(request: RpcRequest) -> Reply:
        answer = await method(declared.decode(request))
        if declared.redirects and isinstance(answer, Redirect):
            return Reply({"location": answer.location}, Redirect.STATUS)
        return Reply(declared.encode(answer), declared.status)

    return run


class BrokerConnectionLost(ServiceUnavailable):
    """The call's connection to the broker dropped (or could not publish) before its answer
    came: 503, unless the call is idempotent and may be made again."""


class RpcClient:
    """Many calls in flight on one channel; each waits on its own future by correlation id."""

    def __init__(self, connection: AbstractRobustConnection, *, default_timeout_ms: int,
                 reconnect_grace_s: float = RECONNECT_GRACE_S) -> None:
        self._connection = connection
        self._default_timeout_ms = default_timeout_ms
        self._reconnect_grace_s = reconnect_grace_s
        self._pending: dict[str, asyncio.Future[dict[str, Any]]] = {}
        # queue -> its consumers as last checked: lets calls to a stopped service fail fast
        # with 503 instead of waiting for their deadline.
        self._presence: dict[str, _Presence] = {}
        self._presence_checks: dict[str, asyncio.Task[int | None]] = {}
        self._probe_lock = asyncio.Lock()  # one probe channel, one passive declare at a time
        self._channel: AbstractRobustChannel | None = None
        self._probe_channel: AbstractChannel | None = None
        # set (and replaced) at each reconnect: what a call waits on before it is made again
        self._reconnected = asyncio.Event()

    async def start(self) -> None:
        # Direct reply-to needs the consumer and the publisher on the same channel.
        # No publisher confirms (they would add a broker round trip to every call), so the
        # broker's basic.return is not seen: presence checks find a missing queue instead.
        self._channel = await self._connection.channel(publisher_confirms=False)
        reply_queue = await self._channel.declare_queue(DIRECT_REPLY_TO, passive=True)
        await reply_queue.consume(self._on_reply, no_ack=True)
        # Replies to calls made before a connection loss can never arrive: fail them now.
        self._connection.close_callbacks.add(self._on_connection_lost)
        # aio-pika calls these once every channel is restored, the reply consumer included
        self._connection.reconnect_callbacks.add(self._on_reconnected)

    async def close(self) -> None:
        self._connection.close_callbacks.discard(self._on_connection_lost)
        self._connection.reconnect_callbacks.discard(self._on_reconnected)
        self._fail_all(ServiceUnavailable("RPC client closed"))
        for channel in (self._channel, self._probe_channel):
            if channel is not None and not channel.is_closed:
                await channel.close()

    async def call(
        self,
        queue: str,
        declared: Operation,
        request: RpcRequest | None = None,
        *,
        timeout_ms: int | None = None,
        deadline_ms: int | None = None,
        idempotent: bool = False,
    ) -> RpcResult:
        """Call `declared` on the service behind `queue`; raise the ApiError it answered with.

        The deadline is the earlier of now + timeout and the caller's own `deadline_ms`. An
        `idempotent` call (a GET) whose broker connection dropped before its answer came is
        made once more, on the restored connection (possibly another node), within the same
        deadline; any other call is answered 503, since it may have been carried out.
        """
        started = time.perf_counter()
        outcome = "error"
        operation = declared.name
        deadline = now_ms() + (timeout_ms or self._default_timeout_ms)
        if deadline_ms is not None:
            deadline = min(deadline, deadline_ms)
        request = request or RpcRequest()
        span = _client_span(queue, operation, request)
        if span is not None:
            request = replace(request, traceparent=span.context.traceparent)
        reconnected = self._reconnected
        try:
            try:
                result = await self._call(queue, operation, request, deadline)
            except BrokerConnectionLost:
                if not idempotent or not await _set_before(reconnected, deadline):
                    raise
                RPC_RETRIED.labels(operation).inc()
                result = await self._call(queue, operation, request, deadline)
            outcome = "ok"
            return result
        except ApiError as exc:
            outcome = exc.code.lower() if exc.status >= 500 else "ok"
            raise
        finally:
            RPC_CLIENT_SECONDS.labels(operation, outcome).observe(time.perf_counter() - started)
            if span is not None:
                span.end(error=outcome != "ok")

    async def _call(
        self,
        queue: str,
        operation: str,
        request: RpcRequest,
        deadline: int,
    ) -> RpcResult:
        if self._channel is None:
            raise RuntimeError("RpcClient.start() was not called")
        remaining_ms = deadline - now_ms()
        if remaining_ms <= 0:
            raise UpstreamTimeout(f"Deadline passed before calling {operation}")
        # Known absent: confirm with one passive declare (cheap, and only paid while the
        # service is away) so a service that just came back is not refused from stale memory.
        if self._known_absent(queue) and await self._check_presence(queue) == 0:
            raise ServiceUnavailable(f"{_service_of(queue)} is unavailable")

        correlation_id = uuid.uuid4().hex
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[correlation_id] = future
        try:
            message = aio_pika.Message(
                orjson.dumps(request.to_wire()),
                content_type="application/json",
                type=operation,
                correlation_id=correlation_id,
                reply_to=DIRECT_REPLY_TO,
                expiration=remaining_ms / 1000,
                headers={HEADER_DEADLINE: deadline},
            )
            try:
                # Not past the deadline while the connection is being restored, and not
                # before the channel is whole again: a request whose reply-to consumer is
                # not back yet is refused with a channel error (PRECONDITION_FAILED - fast
                # reply consumer does not exist).
                async with asyncio.timeout(remaining_ms / 1000):
                    await self._channel.ready()
                    await self._channel.default_exchange.publish(
                        message, routing_key=queue, mandatory=False
                    )
            except (aio_pika.exceptions.AMQPError, ConnectionError, RuntimeError,
                    TimeoutError) as exc:
                raise BrokerConnectionLost("Message broker unavailable") from exc
            try:
                reply = await asyncio.wait_for(future, max(deadline - now_ms(), 0) / 1000)
            except TimeoutError:
                if await self._check_presence(queue) == 0:
                    raise ServiceUnavailable(f"{_service_of(queue)} is unavailable") from None
                raise UpstreamTimeout(
                    f"{operation} did not answer within {remaining_ms} ms"
                ) from None
        finally:
            self._pending.pop(correlation_id, None)
        return _result_from_reply(reply)

    def _known_absent(self, queue: str) -> bool:
        """True when the last check found no consumer and none was seen within the reconnect
        grace (replicas moving to another broker node are not a stopped service); refresh a
        stale check off the path."""
        known = self._presence.get(queue)
        now = time.monotonic()
        if known is None or now - known.checked_at > PRESENCE_TTL_S:
            if queue not in self._presence_checks:
                task = asyncio.create_task(self._check_presence(queue))
                self._presence_checks[queue] = task
                task.add_done_callback(lambda _t: self._presence_checks.pop(queue, None))
        return (known is not None and known.consumers == 0
                and now - known.consumed_at > self._reconnect_grace_s)

    async def _check_presence(self, queue: str) -> int | None:
        """The queue's consumer count (0 when the queue does not exist), remembered; None
        when the broker did not say (a timeout, a lost connection, a queue between leaders):
        not knowing is no reason to refuse a call."""
        count: int | None = None
        async with self._probe_lock:
            try:
                async with asyncio.timeout(1.5):  # a stalled broker must not hold callers
                    count = await self._probe(queue)
            except aiormq.exceptions.ChannelNotFoundEntity:
                count = 0  # no such queue: nobody consumes it
                self._probe_channel = None  # the broker closed it
            except Exception as exc:
                log.info("consumer count of a queue unknown", queue=queue, error=repr(exc))
                self._probe_channel = None
        if count is None:
            return None
        now = time.monotonic()
        previous = self._presence.get(queue)
        consumed_at = now if count else previous.consumed_at if previous else -math.inf
        self._presence[queue] = _Presence(count, now, consumed_at)
        return count

    async def _probe(self, queue: str) -> int:
        if self._probe_channel is None or self._probe_channel.is_closed:
            self._probe_channel = await self._connection.channel(publisher_confirms=False)
        channel = await self._probe_channel.get_underlay_channel()
        declared = await channel.queue_declare(queue, passive=True)
        return declared.consumer_count or 0

    async def _on_reply(self, message: AbstractIncomingMessage) -> None:
        future = self._pending.get(message.correlation_id or "")
        if future is None or future.done():
            return  # a reply after its caller gave up
        try:
            future.set_result(orjson.loads(message.body))
        except orjson.JSONDecodeError:
            future.set_exception(InternalError())

    def _on_connection_lost(self, *_: Any) -> None:
        self._fail_all(BrokerConnectionLost("Connection to the message broker lost"))

    def _on_reconnected(self, *_: Any) -> None:
        # A failed publish may be seen before the connection's loss is (its channel closes
        # first): waiting for a reconnect after the call began, not for "connected now",
        # keeps the second attempt off the connection that is going away.
        self._reconnected.set()
        self._reconnected = asyncio.Event()

    def _fail_all(self, error: ApiError) -> None:
        for future in self._pending.values():
            if not future.done():
                future.set_exception(error)


async def _set_before(event: asyncio.Event, deadline: int) -> bool:
    remaining_s = (deadline - now_ms()) / 1000
    if remaining_s <= 0:
        return False
    try:
        async with asyncio.timeout(remaining_s):
            await event.wait()
    except TimeoutError:
        return False
    return True


def _client_span(queue: str, operation: str, request: RpcRequest) -> Span | None:
    """The span of a call made while a span is current (and the request names no trace of
    its own): what the request's `traceparent` names."""
    parent = CURRENT.get()
    if parent is None or request.traceparent is not None:
        return None
    return recorder().client(operation, parent, {
        "rpc.system": "amqp", "rpc.method": operation, "messaging.system": "rabbitmq",
        "messaging.destination.name": queue} if parent.recording else None)


def _service_of(queue: str) -> str:
    """`rpc.project` -> `project service`: callers see a service, not the broker's names."""
    return queue.removeprefix("rpc.") + " service"


def _result_from_reply(reply: dict[str, Any]) -> RpcResult:
    if reply.get("ok") is True:
        return RpcResult(int(reply.get("status", 200)), reply.get("result"))
    error = reply.get("error")
    raise ApiError.from_wire(error if isinstance(error, dict) else {})


class RpcServer(QueueConsumer):
    """Consume one service queue; run handlers concurrently up to the prefetch count."""

    def __init__(
        self,
        connection: AbstractRobustConnection,
        queue: str,
        handlers: Mapping[str, Handler],
        *,
        prefetch: int = 64,
    ) -> None:
        super().__init__(queue)
        self._connection = connection
        self._queue_name = queue
        self._handlers = dict(handlers)
        self._prefetch = prefetch
        self._channel: AbstractChannel | None = None
        self._dead_letter_channel: AbstractChannel | None = None

    async def start(self) -> None:
        self._channel = await self._connection.channel(publisher_confirms=False)
        await self._channel.set_qos(prefetch_count=self._prefetch)  # per consumer
        self._dead_letter_channel = await self._connection.channel(publisher_confirms=True)
        queue = await declare_rpc_queue(self._connection, self._channel, self._queue_name)
        await self._consume(queue, [self._channel, self._dead_letter_channel])

    async def _process(self, message: AbstractIncomingMessage) -> None:
        operation = message.type or ""
        deadline = (message.headers or {}).get(HEADER_DEADLINE)
        try:
            if not operation:
                raise MalformedMessage("an RPC request names its operation as the type")
            if deadline is not None and not isinstance(deadline, int):
                raise MalformedMessage(f"{HEADER_DEADLINE} must be an integer")
            request = RpcRequest.from_wire(orjson.loads(message.body))
        except (orjson.JSONDecodeError, MalformedMessage) as exc:
            await self._dead_letter(message, f"malformed: {exc}")
            await self._reply(message, _error_reply(BadRequest("Malformed RPC request")))
            return

        if deadline is not None and now_ms() > deadline:
            RPC_EXPIRED_DROPPED.labels(self._queue_name).inc()
            log.info("dropped RPC request past its deadline", operation=operation)
            await message.ack()
            return

        await self._reply(message, await dispatch(self._handlers, operation, request))

    async def _reply(self, message: AbstractIncomingMessage, body: bytes) -> None:
        try:
            if message.reply_to and self._channel is not None:
                await self._channel.default_exchange.publish(
                    aio_pika.Message(
                        body, content_type="application/json",
                        correlation_id=message.correlation_id,
                    ),
                    routing_key=message.reply_to,
                    # With mandatory set, RabbitMQ both delivers a direct reply and returns it.
                    mandatory=False,
                )
            await message.ack()
        except Exception:  # channel closed mid-reply: the broker redelivers the request
            log.warning("could not reply or ack", queue=self._queue_name)

    async def _dead_letter(self, message: AbstractIncomingMessage, reason: str) -> None:
        assert self._dead_letter_channel is not None
        MESSAGES_DEAD_LETTERED.labels(self._queue_name, "malformed").inc()
        log.warning("dead-lettering a malformed RPC message", queue=self._queue_name,
                    reason=reason)
        await publish_dead_letter(
            self._dead_letter_channel, self._queue_name, message.body,
            dict(message.headers or {}), reason,
        )


async def dispatch(handlers: Mapping[str, Handler], operation: str, request: RpcRequest
                   ) -> bytes:
    """The reply to one decoded request: the handler's answer, or the error it raised in the
    envelope (an unexpected exception is a logged 500); timed per operation and outcome. A
    traced request (a `traceparent` that parses) is handled in a span of its own, current
    while the handler runs and its trace id on every line the handler logs."""
    caller = parse_traceparent(request.traceparent) if request.traceparent else None
    if caller is None:
        reply, _status = await _answer(handlers, operation, request)
        return reply
    spans = recorder()
    span = spans.server(operation, caller, {"rpc.system": "amqp", "rpc.method": operation}
                        if spans.recording else None)
    status = 500
    try:
        with working_in(span):
            reply, status = await _answer(handlers, operation, request)
    finally:  # a cancelled call's span ends too
        span.end(error=status >= 500,
                 attributes={"rpc.response.status_code": status} if span.recording else None)
    return reply


async def _answer(handlers: Mapping[str, Handler], operation: str, request: RpcRequest
                  ) -> tuple[bytes, int]:
    """The reply and its status."""
    started = time.perf_counter()
    outcome = "ok"
    handler = handlers.get(operation)
    try:
        if handler is None:
            raise NotFound(f"Unknown operation {operation}")
        result = await handler(request)
        reply, status = _ok_reply(result), result.status if isinstance(result, Reply) else 200
    except ApiError as exc:
        outcome = exc.code.lower()
        reply, status = _error_reply(exc), exc.status
    except Exception:
        outcome = "internal_error"
        log.exception("RPC handler failed", operation=operation)
        reply, status = _error_reply(InternalError()), 500
    RPC_SERVER_SECONDS.labels(operation, outcome).observe(time.perf_counter() - started)
    return reply, status


def result_of(reply: bytes) -> RpcResult:
    """A reply as the caller reads it: the result, or the ApiError it carries, raised."""
    return _result_from_reply(orjson.loads(reply))


def _ok_reply(result: Any) -> bytes:
    if isinstance(result, Reply):
        return orjson.dumps({"ok": True, "status": result.status, "result": result.body})
    return orjson.dumps({"ok": True, "status": 200, "result": result})


def _error_reply(error: ApiError) -> bytes:
    return orjson.dumps({"ok": False, "error": error.to_wire()})
