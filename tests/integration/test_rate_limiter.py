"""The rate limiter against the real Redis: atomicity across gateways, the sliding window,
headers, quota not consumed by rejections, failing open."""

from __future__ import annotations

import asyncio
import dataclasses
import time
import uuid

import pytest

from contracts.messages import RpcRequest
from contracts.names import Service
from contracts.operations import Operation
from contracts.routes import ROUTES, Access, Route
from contracts.rpc import RpcServer
from gateway.app import build_app
from gateway.steps.rate_limiter import WINDOW_MS, RateLimiter

PING = Route("GET", "/api/v1/ping", Operation("test.ping", Service.AUTH), Access.PUBLIC,
             "ping")
TABLE = (*ROUTES, PING)


async def ping(_request: RpcRequest):
    return {"pong": True}


@pytest.fixture
async def ping_service(amqp):
    server = RpcServer(await amqp("svc-auth"), "rpc.auth", {"test.ping": ping,
                                                            "health": ping})
    await server.start()
    yield
    await server.stop()


def limited(settings, **changes):
    return dataclasses.replace(settings, **{"rate_limit_ip": 10, **changes})


async def test_forty_concurrent_requests_across_two_gateways_let_exactly_ten_through(
        aiohttp_client, settings, ping_service, redis):
    await redis.flushdb()
    first = await aiohttp_client(build_app(limited(settings), TABLE))
    second = await aiohttp_client(build_app(limited(settings), TABLE))

    responses = await asyncio.gather(*(
        (first if i % 2 else second).get("/api/v1/ping") for i in range(40)))

    statuses = sorted(r.status for r in responses)
    assert statuses.count(200) == 10 and statuses.count(429) == 30
    for response in responses:
        assert response.headers["X-RateLimit-Limit"] == "10"
        assert "X-RateLimit-Remaining" in response.headers
        assert "X-RateLimit-Reset" in response.headers
        assert response.headers["RateLimit-Policy"] == '"default";q=10;w=60'
    rejected = next(r for r in responses if r.status == 429)
    body = await rejected.json()
    assert body["error"] == "TOO_MANY_REQUESTS"
    assert 1 <= int(rejected.headers["Retry-After"]) <= 60
    assert body["retryAfter"] == int(rejected.headers["Retry-After"])
    assert body["message"] == f"Rate limit exceeded. Try again in {body['retryAfter']} seconds."
    assert rejected.headers["X-RateLimit-Remaining"] == "0"


async def test_the_window_slides_and_rejections_consume_no_quota(redis):
    limiter = RateLimiter(redis)
    bucket, start = f"rl:test:{uuid.uuid4().hex}", 1_000_000_000_000
    for i in range(10):  # one request every second
        assert (await limiter.hit(bucket, 10, now_ms=start + i * 1000)).allowed
    for i in range(20):  # rejected ones are not recorded
        refused = await limiter.hit(bucket, 10, now_ms=start + 30_000 + i)
        assert not refused.allowed
    assert refused.retry_after_s == 30  # the oldest leaves the window at start + 60 s
    assert refused.reset_unix_s == (start + WINDOW_MS) // 1000

    # The first request leaves the window: exactly one slot frees up.
    assert (await limiter.hit(bucket, 10, now_ms=start + 60_001)).allowed
    assert not (await limiter.hit(bucket, 10, now_ms=start + 60_002)).allowed
    slid = await limiter.hit(bucket, 10, now_ms=start + 61_001)
    assert slid.allowed and slid.remaining == 0


async def test_remaining_counts_down_and_reset_is_now_plus_window(redis):
    limiter = RateLimiter(redis)
    bucket, now = f"rl:test:{uuid.uuid4().hex}", int(time.time() * 1000)
    first = await limiter.hit(bucket, 3, now_ms=now)
    assert (first.remaining, first.reset_unix_s) == (2, -(-(now + WINDOW_MS) // 1000))
    assert (await limiter.hit(bucket, 3, now_ms=now + 1)).remaining == 1


async def test_every_response_carries_the_headers_even_404s(aiohttp_client, settings,
                                                            ping_service):
    client = await aiohttp_client(build_app(limited(settings, rate_limit_ip=1000), TABLE))
    for path in ("/api/v1/ping", "/nowhere", "/api/v1/auth/profile"):
        response = await client.get(path)
        assert response.headers["X-RateLimit-Limit"] == "1000", path
    preflight = await client.options("/api/v1/ping", headers={
        "Origin": "https://app.example", "Access-Control-Request-Method": "GET"})
    assert "X-RateLimit-Limit" not in preflight.headers
    # any other OPTIONS counts (docs/api.md section 13.1)
    bare = await client.options("/api/v1/ping")
    assert bare.headers["X-RateLimit-Limit"] == "1000"


async def test_redis_down_fails_open_without_500(aiohttp_client, settings, ping_service):
    app = build_app(limited(settings, redis_url="redis://127.0.0.1:1/0"), TABLE)
    client = await aiohttp_client(app)
    for _ in range(15):  # above the limit of 10: nothing counts while the store is away
        response = await client.get("/api/v1/ping")
        assert response.status == 200
        assert "X-RateLimit-Limit" not in response.headers


async def test_redis_down_can_fail_closed(aiohttp_client, settings, ping_service):
    app = build_app(limited(settings, redis_url="redis://127.0.0.1:1/0",
                            rate_limit_fail_closed=True), TABLE)
    client = await aiohttp_client(app)
    response = await client.get("/api/v1/ping")
    assert response.status == 503
    assert (await response.json())["error"] == "SERVICE_UNAVAILABLE"


async def test_bad_tokens_count_under_the_address(aiohttp_client, settings, redis):
    await redis.flushdb()
    client = await aiohttp_client(build_app(limited(settings, rate_limit_ip=3), TABLE))
    statuses = [(await client.get("/api/v1/auth/profile",
                                  headers={"Authorization": "Bearer bad"})).status
                for _ in range(5)]
    assert statuses == [401, 401, 401, 429, 429]


async def test_a_burst_is_decided_exactly_in_one_tick(redis):
    limiter = RateLimiter(redis)
    bucket = f"rl:test:{uuid.uuid4().hex}"
    decisions = await asyncio.gather(*(limiter.hit(bucket, 100) for _ in range(1000)))
    assert None not in decisions  # no fail-open under load
    assert sum(d.allowed for d in decisions) == 100


async def test_survives_a_flushed_script_cache(redis):
    limiter = RateLimiter(redis)
    bucket = f"rl:test:{uuid.uuid4().hex}"
    assert (await limiter.hit(bucket, 5)).allowed
    await redis.script_flush()  # as after a Redis restart
    decision = await limiter.hit(bucket, 5)
    assert decision.allowed and decision.count == 2
