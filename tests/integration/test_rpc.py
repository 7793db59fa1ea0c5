"""RPC over the real RabbitMQ: round trips, concurrency, deadlines, restarts, poison messages."""

from __future__ import annotations

import asyncio
from typing import Any

import aio_pika
import orjson
import pytest

from contracts.errors import NotFound, ServiceUnavailable, Unauthorized, UpstreamTimeout
from contracts.identity import Caller, Role
from contracts.messages import RpcRequest
from contracts.names import DIRECT_REPLY_TO, HEADER_DEAD_REASON, dead_letter_queue, rpc_queue
from contracts.operations import Operation
from contracts.rpc import PRESENCE_TTL_S, Reply, RpcClient, RpcServer


def named(name: str) -> Operation:
    """An operation of these transport tests (served by raw handlers, not by a service)."""
    return Operation(name, None)


async def echo(request: RpcRequest) -> Reply:
    return Reply({"echo": request.body}, status=201)


def body(value: Any) -> RpcRequest:
    return RpcRequest(body=value)


async def test_round_trip(amqp, unique):
    received: list[RpcRequest] = []

    async def record(request: RpcRequest) -> Reply:
        received.append(request)
        return Reply({"echo": request.body}, status=201)

    server = RpcServer(await amqp("server"), rpc_queue(unique), {"echo": record})
    await server.start()
    client = RpcClient(await amqp("client"), default_timeout_ms=3000)
    await client.start()

    sent = RpcRequest(body={"a": 1, "list": [1, "x", None]}, query={"page": 2},
                      params={"id": "p-1"}, caller=Caller("u-1", "a@b.co", Role.VIEWER),
                      request_id="r-1", client_ip="10.0.0.9")
    result = await client.call(rpc_queue(unique), named("echo"), sent)

    assert (result.status, result.body) == (201, {"echo": {"a": 1, "list": [1, "x", None]}})
    assert received == [sent]  # the handler gets the request typed, caller included
    assert isinstance(received[0].caller, Caller) and received[0].caller.role is Role.VIEWER
    await server.stop()
    await client.close()


async def test_a_call_without_a_request_sends_an_empty_one(amqp, unique):
    received: list[RpcRequest] = []

    async def record(request: RpcRequest) -> None:
        received.append(request)

    async def whoami(request: RpcRequest) -> str:
        return named("whoami").decode(request).authenticated.user_id

    server = RpcServer(await amqp("server"), rpc_queue(unique),
                       {"record": record, "whoami": whoami})
    await server.start()
    client = RpcClient(await amqp("client"), default_timeout_ms=3000)
    await client.start()

    result = await client.call(rpc_queue(unique), named("record"))
    assert (result.status, result.body) == (200, None)
    assert received == [RpcRequest()]
    with pytest.raises(Unauthorized):  # no caller where one is required: a 401, not a crash
        await client.call(rpc_queue(unique), named("whoami"))
    caller = Caller("u-7", "a@b.co", Role.ADMIN)
    assert (await client.call(rpc_queue(unique), named("whoami"), RpcRequest(caller=caller))).body \
        == "u-7"
    await server.stop()
    await client.close()


async def test_errors_cross_the_wire_as_envelopes(amqp, unique):
    async def missing(_request: RpcRequest) -> None:
        raise NotFound("Project not found")

    async def broken(_request: RpcRequest) -> None:
        raise RuntimeError("secret internals")

    server = RpcServer(await amqp("server"), rpc_queue(unique),
                       {"missing": missing, "broken": broken})
    await server.start()
    client = RpcClient(await amqp("client"), default_timeout_ms=3000)
    await client.start()

    with pytest.raises(NotFound) as not_found:
        await client.call(rpc_queue(unique), named("missing"))
    assert not_found.value.message == "Project not found"
    with pytest.raises(Exception) as internal:
        await client.call(rpc_queue(unique), named("broken"))
    assert internal.value.status == 500
    assert "secret" not in internal.value.message
    with pytest.raises(NotFound):
        await client.call(rpc_queue(unique), named("no-such-operation"))
    await server.stop()
    await client.close()


async def test_hundred_concurrent_calls_each_get_their_own_reply(amqp, unique):
    async def slow_echo(request: RpcRequest) -> dict[str, Any]:
        await asyncio.sleep(0.01 * (request.body["i"] % 7))  # replies come back out of order
        return request.body

    server = RpcServer(await amqp("server"), rpc_queue(unique), {"echo": slow_echo})
    await server.start()
    client = RpcClient(await amqp("client"), default_timeout_ms=5000)
    await client.start()

    results = await asyncio.gather(
        *(client.call(rpc_queue(unique), named("echo"), body({"i": i})) for i in range(100))
    )

    assert [r.body["i"] for r in results] == list(range(100))
    await server.stop()
    await client.close()


async def test_call_past_its_deadline_is_504_and_never_processed(amqp, unique):
    ran: list[int] = []
    release = asyncio.Event()

    async def blocking(request: RpcRequest) -> int:
        ran.append(request.body["i"])
        if request.body["i"] == 0:
            await release.wait()
        return request.body["i"]

    # prefetch 1: while call 0 blocks, call 1 waits in the broker's queue past its deadline
    server = RpcServer(await amqp("server"), rpc_queue(unique), {"op": blocking}, prefetch=1)
    await server.start()
    client = RpcClient(await amqp("client"), default_timeout_ms=5000)
    await client.start()

    first = asyncio.create_task(client.call(rpc_queue(unique), named("op"), body({"i": 0})))
    await asyncio.sleep(0.2)
    with pytest.raises(UpstreamTimeout) as timed_out:
        await client.call(rpc_queue(unique), named("op"), body({"i": 1}), timeout_ms=300)
    assert timed_out.value.status == 504
    release.set()
    assert (await first).body == 0
    await asyncio.sleep(0.3)  # time for call 1 to reach the handler, were it delivered

    assert ran == [0]
    await server.stop()
    await client.close()


async def test_no_consumer_is_503_and_later_calls_fail_fast(amqp, unique):
    server = RpcServer(await amqp("server"), rpc_queue(unique), {"echo": echo})
    await server.start()
    await server.stop()  # the queue stays, nobody consumes it
    client = RpcClient(await amqp("client"), default_timeout_ms=5000)
    await client.start()

    with pytest.raises(ServiceUnavailable):
        await client.call(rpc_queue(unique), named("echo"), timeout_ms=300)
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(ServiceUnavailable):
        await client.call(rpc_queue(unique), named("echo"), timeout_ms=3000)
    assert loop.time() - started < 1.0  # remembered, not waited for again
    await client.close()


async def test_calls_wait_for_consumers_seen_moments_ago_instead_of_failing_fast(amqp, unique):
    # A service's replicas whose broker node stopped are away for the time of a reconnect:
    # calls made then wait in the durable queue. Only a queue without consumers for longer
    # than the grace fails fast (the chaos test on the cluster caught two 503s here).
    client = RpcClient(await amqp("client"), default_timeout_ms=8000, reconnect_grace_s=3.0)
    await client.start()
    first = RpcServer(await amqp("server-1"), rpc_queue(unique), {"echo": echo})
    await first.start()
    await client.call(rpc_queue(unique), named("echo"))  # its consumer counted
    await asyncio.sleep(PRESENCE_TTL_S + 0.1)
    await client.call(rpc_queue(unique), named("echo"))  # counted again, still there
    await first.stop()
    await asyncio.sleep(PRESENCE_TTL_S + 0.1)
    waiting = [asyncio.create_task(client.call(rpc_queue(unique), named("echo"), body(i)))
               for i in range(2)]  # the first starts a check that finds no consumer
    await asyncio.sleep(0.3)
    waiting.append(asyncio.create_task(client.call(rpc_queue(unique), named("echo"), body(2))))
    await asyncio.sleep(0.3)
    second = RpcServer(await amqp("server-2"), rpc_queue(unique), {"echo": echo})
    await second.start()
    assert [result.body["echo"] for result in await asyncio.gather(*waiting)] == [0, 1, 2]
    await second.stop()

    await asyncio.sleep(3.0 + PRESENCE_TTL_S)  # gone for longer than the grace
    with pytest.raises((ServiceUnavailable, UpstreamTimeout)):
        await client.call(rpc_queue(unique), named("echo"), timeout_ms=500)
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(ServiceUnavailable):
        await client.call(rpc_queue(unique), named("echo"), timeout_ms=3000)
    assert loop.time() - started < 1.0  # known absent now: fails fast
    await client.close()


async def test_unknown_queue_is_503(amqp, unique):
    client = RpcClient(await amqp("client"), default_timeout_ms=5000)
    await client.start()
    with pytest.raises(ServiceUnavailable):
        await client.call(rpc_queue(unique), named("echo"), timeout_ms=300)
    await client.close()


async def test_service_restarted_mid_traffic_loses_no_call(amqp, unique):
    client = RpcClient(await amqp("client"), default_timeout_ms=8000)
    await client.start()
    first = RpcServer(await amqp("server-1"), rpc_queue(unique), {"echo": echo})
    await first.start()

    async def traffic() -> list[Any]:
        calls = []
        for i in range(60):
            call = client.call(rpc_queue(unique), named("echo"), body({"i": i}))
            calls.append(asyncio.create_task(call))
            await asyncio.sleep(0.01)
        return await asyncio.gather(*calls)

    running = asyncio.create_task(traffic())
    await asyncio.sleep(0.2)
    await first.stop()  # finishes what it took, takes nothing more
    await asyncio.sleep(0.3)  # calls made now wait in the durable queue
    second = RpcServer(await amqp("server-2"), rpc_queue(unique), {"echo": echo})
    await second.start()

    results = await running
    assert [r.body["echo"]["i"] for r in results] == list(range(60))
    await second.stop()
    await client.close()


async def test_poison_message_is_dead_lettered_and_consumer_keeps_going(amqp, unique):
    server_connection = await amqp("server")
    server = RpcServer(server_connection, rpc_queue(unique), {"echo": echo})
    await server.start()
    client = RpcClient(await amqp("client"), default_timeout_ms=3000)
    await client.start()

    raw = await (await amqp("raw")).channel()
    await raw.default_exchange.publish(
        aio_pika.Message(b"\x00not json", type="echo"), routing_key=rpc_queue(unique)
    )
    await raw.default_exchange.publish(
        aio_pika.Message(b'{"a": 1}'), routing_key=rpc_queue(unique)  # no operation
    )

    result = await client.call(rpc_queue(unique), named("echo"), body({"still": "alive"}))
    assert result.body == {"echo": {"still": "alive"}}

    dead = await raw.declare_queue(dead_letter_queue(rpc_queue(unique)), passive=True)
    bodies, reasons = [], []
    for _ in range(20):
        message = await dead.get(fail=False)
        if message is None:
            if len(bodies) == 2:
                break
            await asyncio.sleep(0.1)
            continue
        bodies.append(message.body)
        reasons.append(message.headers[HEADER_DEAD_REASON])
        await message.ack()
    assert bodies == [b"\x00not json", b'{"a": 1}']
    assert all(reason.startswith("malformed") for reason in reasons)
    await server.stop()
    await client.close()


async def test_graceful_stop_finishes_in_flight_calls(amqp, unique):
    async def slow(_request: RpcRequest) -> str:
        await asyncio.sleep(0.5)
        return "done"

    server = RpcServer(await amqp("server"), rpc_queue(unique), {"slow": slow})
    await server.start()
    client = RpcClient(await amqp("client"), default_timeout_ms=5000)
    await client.start()

    calls = [asyncio.create_task(client.call(rpc_queue(unique), named("slow"))) for _ in range(5)]
    await asyncio.sleep(0.1)
    await server.stop(grace_s=5)

    assert [(await c).body for c in calls] == ["done"] * 5
    await client.close()


@pytest.mark.parametrize("payload", [
    b"[1, 2]", b'"echo"', b"null", b"3",
    b'{"caller": "u-1"}',
    b'{"caller": {"userId": "u-1", "email": "a@b.co", "role": "ROOT"}}',
    b'{"caller": {"userId": 1, "email": "a@b.co", "role": "ADMIN"}}',
    b'{"caller": {"email": "a@b.co", "role": "ADMIN"}}',
    b'{"query": "page=2"}',
])
async def test_malformed_requests_are_dead_lettered_and_answered_400(amqp, unique, payload):
    calls: list[RpcRequest] = []

    async def record(request: RpcRequest) -> str:
        calls.append(request)
        return "handled"

    server = RpcServer(await amqp("server"), rpc_queue(unique), {"echo": record})
    await server.start()

    raw = await (await amqp("raw")).channel()
    replies: asyncio.Queue = asyncio.Queue()
    reply_queue = await raw.declare_queue(DIRECT_REPLY_TO, passive=True)
    await reply_queue.consume(replies.put, no_ack=True)
    await raw.default_exchange.publish(
        aio_pika.Message(payload, type="echo", correlation_id="c-1", reply_to=DIRECT_REPLY_TO),
        routing_key=rpc_queue(unique))

    reply = await asyncio.wait_for(replies.get(), 5)
    assert reply.correlation_id == "c-1"
    answer = orjson.loads(reply.body)
    assert answer["ok"] is False
    assert (answer["error"]["status"], answer["error"]["code"]) == (400, "BAD_REQUEST")
    assert calls == []

    dead = await raw.declare_queue(dead_letter_queue(rpc_queue(unique)), passive=True)
    message = None
    for _ in range(50):
        message = await dead.get(fail=False)
        if message is not None:
            break
        await asyncio.sleep(0.05)
    assert message is not None, "nothing dead-lettered"
    await message.ack()
    assert message.body == payload
    assert message.headers[HEADER_DEAD_REASON].startswith("malformed")

    # The server keeps serving well-formed requests.
    client = RpcClient(await amqp("client"), default_timeout_ms=3000)
    await client.start()
    assert (await client.call(rpc_queue(unique), named("echo"))).body == "handled"
    await server.stop()
    await client.close()
