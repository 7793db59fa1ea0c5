"""Every response through the gateway becomes one `request.completed` event on gw.events."""

from __future__ import annotations

import asyncio
import dataclasses

import orjson
import pytest

from contracts.amqp import declare_events_exchange
from contracts.messages import RequestCompleted, RequestError, RpcRequest, decode_events
from contracts.names import Service
from contracts.operations import Operation
from contracts.routes import ROUTES, Access, Route
from contracts.rpc import RpcServer
from gateway.app import build_app

PING = Route("GET", "/api/v1/ping/:id", Operation("test.ping", Service.AUTH), Access.PUBLIC,
             "ping")


async def ping(_request: RpcRequest):
    return {"pong": True}


@pytest.fixture
async def events(amqp, unique):
    channel = await (await amqp("event-reader")).channel()
    exchange = await declare_events_exchange(channel)
    queue = await channel.declare_queue(unique, exclusive=True)
    await queue.bind(exchange, "request.completed")
    return queue


async def read_events(queue, expected: int) -> list[tuple[RequestCompleted, dict]]:
    """Typed events with their wire form, as a consumer would decode them."""
    found: list[tuple[RequestCompleted, dict]] = []
    for _ in range(100):
        message = await queue.get(fail=False)
        if message is None:
            if len(found) >= expected:
                break
            await asyncio.sleep(0.05)
            continue
        batch = decode_events(message.routing_key, message.body)
        assert batch.malformed == []  # what the gateway publishes always decodes
        found.extend(zip(batch.events, orjson.loads(message.body)["events"], strict=True))
        await message.ack()
    return found


async def test_every_response_is_an_event(aiohttp_client, settings, amqp, events):
    server = RpcServer(await amqp("svc"), "rpc.auth", {"test.ping": ping, "health": ping})
    await server.start()
    app = build_app(dataclasses.replace(settings, rate_limit_ip=3), (*ROUTES, PING))
    client = await aiohttp_client(app)

    answers = [await client.get("/api/v1/ping/7?x=1", headers={"User-Agent": "probe/1"})
               for _ in range(4)]  # 200, 200, 200, 429
    answers.append(await client.get("/nowhere"))  # 404 (its own bucket)
    answers.append(await client.get("/api/v1/auth/profile"))  # 401

    found = await read_events(events, 6)
    by_id = {event.request_id: event for event, _wire in found}
    assert len(by_id) == 6
    assert all(isinstance(event, RequestCompleted) for event in by_id.values())
    assert all(wire["source"] == "gateway" for _event, wire in found)
    for answer in answers:
        event = by_id[answer.headers["X-Request-Id"]]
        assert event.status_code == answer.status
        assert event.ip == "127.0.0.1"
        assert event.timestamp.endswith("Z") and event.latency >= 0
    first = by_id[answers[0].headers["X-Request-Id"]]
    assert first.path == "/api/v1/ping/7?x=1" and first.route == "/api/v1/ping/:id"
    assert first.method == "GET" and first.user_agent == "probe/1"
    assert first.error is None and first.user_id is None
    limited = by_id[answers[3].headers["X-Request-Id"]]
    assert limited.status_code == 429
    assert limited.error == RequestError("CLIENT_ERROR", "Too Many Requests", None)
    assert by_id[answers[4].headers["X-Request-Id"]].route is None
    unauthorized = by_id[answers[5].headers["X-Request-Id"]]
    assert unauthorized.status_code == 401 and unauthorized.error.code == "CLIENT_ERROR"
    await server.stop()
