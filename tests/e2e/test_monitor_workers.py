"""The live monitor with two gateway processes on one port (GATEWAY_WORKERS=2, SO_REUSEPORT):
every process relays every event, and connections are counted across both."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from tests.e2e.conftest import Stack
from tests.e2e.helpers import Client, call
from tests.e2e.monitor_client import Watcher


@pytest.fixture(scope="module")
def gw_settings() -> dict[str, str]:
    return {"GATEWAY_WORKERS": "2"}


async def test_a_client_sees_requests_served_by_either_process(gw: Stack, admin: Client):
    # Each watcher and each request is a new TCP connection, which the kernel spreads over
    # the two processes: a relay that saw only its own process's requests would miss about
    # half of them (all 20 on one process happens with probability 2 ** -19).
    watchers = [await Watcher().connect(gw.gateway_url, admin.token) for _ in range(3)]
    mark = uuid.uuid4().hex[:8]
    for index in range(20):
        status, _, _ = await asyncio.to_thread(call, gw, "GET", f"/{mark}/{index}")
        assert status == 404
    for watcher in watchers:
        seen = await watcher.until(
            lambda r: len({e["path"] for e in r["log:entry"] if mark in e["path"]}) == 20
            and r, 8)
        assert seen, len([e for e in watcher.received["log:entry"] if mark in e["path"]])
    counts = [await w.until(lambda r: r["connections:active"]
                            and r["connections:active"][-1]["count"] == 3) for w in watchers]
    assert all(counts), [w.received["connections:active"][-3:] for w in watchers]
    for watcher in watchers:
        await watcher.close()


async def test_polling_is_refused_with_several_processes(gw: Stack):
    # an Engine.IO long-polling session breaks when its requests reach different processes
    status, body, _ = await asyncio.to_thread(
        call, gw, "GET", "/socket.io/?EIO=4&transport=polling")
    assert status == 400, body
    assert "websocket" in body["message"], body  # in the envelope, saying what to do
