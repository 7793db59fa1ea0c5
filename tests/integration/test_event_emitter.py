"""Every response through the gateway becomes one `request.completed` event on gw.events."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest

from contracts.amqp import declare_events_exchange
from contracts.events import decode_batch
from contracts.names import Service
from contracts.routes import ROUTES, Access, Route
from contracts.rpc import RpcServer
from gateway.app import build_app

PING = Route("GET", "/api/v1/ping/:id", "test.ping", Access.PUBLIC, "ping",
             service=Service.AUTH)


async def ping(_params):
    return {"pong": True}


@pytest.fixture
async def events(amqp, unique):
    channel = await (await amqp("event-reader")).channel()
    exchange = await declare_events_exchange(channel)
    queue = await channel.declare_queue(unique, exclusive=True)
    await queue.bind(exchange, "request.completed")
    return queue


async def read_events(queue, expected: int) -> list[dict]:
    found: list[dict] = []
    for _ in range(100):
        message = await queue.get(fail=False)
        if message is None:
            if len(found) >= expected:
                break
            await asyncio.sleep(0.05)
            continue
        found.extend(decode_batch(message.body))
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
    by_id = {event["requestId"]: event for event in found}
    assert len(by_id) == 6
    for answer in answers:
        event = by_id[answer.headers["X-Request-Id"]]
        assert event["statusCode"] == answer.status
        assert event["source"] == "gateway"
        assert event["ip"] == "127.0.0.1"
        assert event["timestamp"].endswith("Z") and event["latency"] >= 0
    first = by_id[answers[0].headers["X-Request-Id"]]
    assert first["path"] == "/api/v1/ping/7?x=1" and first["route"] == "/api/v1/ping/:id"
    assert first["method"] == "GET" and first["userAgent"] == "probe/1"
    assert first["error"] is None and first["userId"] is None
    limited = by_id[answers[3].headers["X-Request-Id"]]
    assert limited["statusCode"] == 429
    assert limited["error"] == {"code": "CLIENT_ERROR", "message": "Too Many Requests",
                                "stack": None}
    assert by_id[answers[4].headers["X-Request-Id"]]["route"] is None
    await server.stop()
