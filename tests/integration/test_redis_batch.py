"""gateway.redis_batch against the real Redis: replies in order, one command's error reply
only for its caller, a dead server fails every caller of the batch."""

from __future__ import annotations

import asyncio
import os
import uuid

import pytest
from redis.asyncio import Redis
from redis.exceptions import DataError, RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from gateway.redis_batch import REDIS_COMMANDS, REDIS_WRITES, RedisBatcher


def counted(role: str) -> tuple[float, float]:
    return REDIS_WRITES.labels(role)._value.get(), REDIS_COMMANDS.labels(role)._value.get()


async def test_a_tick_of_commands_gets_each_its_own_reply():
    redis = Redis.from_url(os.environ["REDIS_URL"])
    role = f"tick-{uuid.uuid4().hex[:8]}"
    batcher = RedisBatcher(redis, role=role)
    key = f"batch:{uuid.uuid4().hex}"
    try:
        replies = await asyncio.gather(
            batcher.call("SET", key, "v"), batcher.call("GET", key),
            batcher.call("INCR", key),  # an error reply: not an integer
            batcher.call("HGETALL", f"{key}:missing"), batcher.call("GET", key),
            return_exceptions=True)
        assert replies[0] is True or replies[0] == b"OK"
        assert replies[1] == b"v" and replies[4] == b"v"
        assert isinstance(replies[2], ResponseError)
        assert replies[3] in ([], {})
        assert counted(role) == (1, 5)  # the tick went out as one write (one round trip)
    finally:
        await redis.delete(key)
        await batcher.close()
        await redis.aclose()


async def test_an_unreachable_server_fails_every_caller():
    redis = Redis.from_url("redis://127.0.0.1:1/0")
    batcher = RedisBatcher(redis, role="test", timeout_s=0.5)
    replies = await asyncio.gather(*(batcher.call("GET", "k") for _ in range(5)),
                                   return_exceptions=True)
    assert all(isinstance(reply, Exception) for reply in replies)
    with pytest.raises(Exception):  # noqa: B017 - any connection failure
        await batcher.call("GET", "k")
    await batcher.close()
    await redis.aclose()


async def test_commands_reach_the_clients_database_with_every_argument_type():
    redis = Redis.from_url(os.environ["REDIS_URL"])  # a database other than 0: SELECT
    batcher = RedisBatcher(redis, role="test")
    key = f"batch:{uuid.uuid4().hex}"
    try:
        await batcher.call("HSET", key, "text", "ünï", "raw", b"\x00\xff", "int", 7,
                           "float", 0.5)
        assert await redis.hgetall(key) == {b"text": "ünï".encode(), b"raw": b"\x00\xff",
                                            b"int": b"7", b"float": b"0.5"}
        with pytest.raises(DataError):
            await batcher.call("SET", key, None)
    finally:
        await redis.delete(key)
        await batcher.close()
        await redis.aclose()


async def test_a_late_reply_fails_its_callers_and_the_next_tick_connects_anew():
    redis = Redis.from_url(os.environ["REDIS_URL"])
    batcher = RedisBatcher(redis, role="test", timeout_s=0.3)
    key = f"batch:{uuid.uuid4().hex}"
    try:
        blocked, behind = await asyncio.gather(
            batcher.call("BLPOP", key, 2), batcher.call("PING"), return_exceptions=True)
        assert isinstance(blocked, RedisTimeoutError)
        assert isinstance(behind, RedisTimeoutError)
        assert await batcher.call("PING") in (b"PONG", True)
    finally:
        await batcher.close()
        await redis.aclose()


async def test_refused_credentials_fail_the_callers_with_redis_error():
    redis = Redis.from_url(os.environ["REDIS_URL"], username=f"nobody-{uuid.uuid4().hex}",
                           password="not-the-password")
    batcher = RedisBatcher(redis, role="test", timeout_s=0.5)
    with pytest.raises(RedisError):
        await batcher.call("PING")
    await batcher.close()
    await redis.aclose()


async def test_a_tick_is_late_even_when_its_last_caller_gave_up():
    redis = Redis.from_url(os.environ["REDIS_URL"])
    batcher = RedisBatcher(redis, role="test", timeout_s=0.3)
    try:
        blocked = batcher.call("BLPOP", f"batch:{uuid.uuid4().hex}", 2)
        batcher.call("PING").cancel()  # the tick's last caller is gone
        with pytest.raises(RedisTimeoutError):
            await blocked
    finally:
        await batcher.close()
        await redis.aclose()


async def test_a_closed_batcher_refuses_calls():
    redis = Redis.from_url(os.environ["REDIS_URL"])
    batcher = RedisBatcher(redis, role="test")
    assert await batcher.call("PING") in (b"PONG", True)
    await batcher.close()
    with pytest.raises(RedisError):
        await batcher.call("PING")
    await redis.aclose()
