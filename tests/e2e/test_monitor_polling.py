"""MONITOR_ALLOW_POLLING=true (an operator behind a sticky load balancer): the monitor accepts
Engine.IO long-polling as well as the websocket transport."""

from __future__ import annotations

import asyncio
import urllib.request

import pytest

from tests.e2e.conftest import Stack


@pytest.fixture(scope="module")
def gw_settings() -> dict[str, str]:
    return {"MONITOR_ALLOW_POLLING": "true"}


async def test_a_polling_handshake_is_answered_when_allowed(gw: Stack):
    def handshake() -> tuple[int, str]:
        url = f"{gw.gateway_url}/socket.io/?EIO=4&transport=polling"
        with urllib.request.urlopen(url, timeout=10) as answer:
            return answer.status, answer.read().decode()

    status, body = await asyncio.to_thread(handshake)
    # Engine.IO's open packet ("0" then the session as JSON), not the error envelope
    assert status == 200 and body.startswith("0{") and '"sid"' in body, body
