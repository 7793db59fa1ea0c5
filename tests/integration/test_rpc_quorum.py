"""RPC queues are quorum queues (docs/architecture.md section 2.1): the caller's deadline still
expires requests in them, a classic queue left by an earlier version is replaced, and an
idempotent call whose connection drops is made again on the restored connection."""

from __future__ import annotations

import asyncio

import aio_pika
import pytest

from contracts.errors import ServiceUnavailable
from contracts.messages import RpcRequest
from contracts.names import rpc_queue
from contracts.operations import Operation
from contracts.rpc import Reply, RpcClient, RpcServer
from tests.conftest import TEST_VHOST
from tests.support import rabbit_api

ECHO = Operation("echo", None)


def queue_info(name: str) -> dict:
    info = rabbit_api("GET", f"/queues/{TEST_VHOST}/{name}")
    assert isinstance(info, dict)
    return info


async def test_rpc_queues_are_quorum_queues_and_expire_requests_by_deadline(amqp, unique):
    server = RpcServer(await amqp("server"), rpc_queue(unique), {})
    await server.start()
    await server.stop()  # the queue stays, with no consumer
    assert queue_info(rpc_queue(unique))["type"] == "quorum"

    channel = await (await amqp("raw")).channel()
    for expiration in (0.2, 0.2, 60):
        await channel.default_exchange.publish(
            aio_pika.Message(b"{}", type="echo", expiration=expiration),
            routing_key=rpc_queue(unique))
    await asyncio.sleep(1.0)
    # the broker dropped the two expired requests (from the head of the queue) unprocessed
    declared = await channel.declare_queue(rpc_queue(unique), passive=True)
    assert declared.declaration_result.message_count == 1


async def test_a_classic_rpc_queue_of_an_earlier_version_is_replaced(amqp, unique):
    channel = await (await amqp("earlier-version")).channel()
    await channel.declare_queue(rpc_queue(unique), durable=True)
    # a request still waiting in it: served or expired before the queue goes
    await channel.default_exchange.publish(
        aio_pika.Message(b"{}", type="echo", expiration=0.5), routing_key=rpc_queue(unique))
    assert queue_info(rpc_queue(unique))["type"] == "classic"

    async def echo(request: RpcRequest) -> Reply:
        return Reply({"echo": request.body})

    server = RpcServer(await amqp("server"), rpc_queue(unique), {"echo": echo})
    await server.start()
    assert queue_info(rpc_queue(unique))["type"] == "quorum"
    client = RpcClient(await amqp("client"), default_timeout_ms=3000)
    await client.start()
    result = await client.call(rpc_queue(unique), ECHO, RpcRequest(body={"a": 1}))
    assert result.body == {"echo": {"a": 1}}
    # a second replica starting later finds the quorum queue as it is
    second = RpcServer(await amqp("server-2"), rpc_queue(unique), {"echo": echo})
    await second.start()
    assert queue_info(rpc_queue(unique))["type"] == "quorum"
    await second.stop()
    await server.stop()
    await client.close()


@pytest.mark.parametrize("idempotent", [True, False])
async def test_a_call_whose_connection_drops_is_made_again_only_if_idempotent(
        amqp, unique, idempotent):
    calls = 0
    first_arrived = asyncio.Event()
    release = asyncio.Event()

    async def slow_echo(request: RpcRequest) -> Reply:
        nonlocal calls
        calls += 1
        if calls == 1:
            first_arrived.set()
            await release.wait()
        return Reply({"echo": request.body})

    server = RpcServer(await amqp("server"), rpc_queue(unique), {"echo": slow_echo})
    await server.start()
    connection = await amqp("client")
    client = RpcClient(connection, default_timeout_ms=8000)
    await client.start()
    call = asyncio.create_task(client.call(rpc_queue(unique), ECHO, RpcRequest(body=1),
                                          idempotent=idempotent))
    await first_arrived.wait()
    # the client's connection drops while its call is being served (the reply is lost)
    transport = connection.transport
    assert transport is not None
    await transport.connection.close(ConnectionError("test: connection dropped"))
    if idempotent:
        result = await call
        assert result.body == {"echo": 1}
        assert calls == 2  # made again on the restored connection
    else:
        with pytest.raises(ServiceUnavailable):
            await call
        assert calls == 1
    release.set()
    await server.stop()
    await client.close()
