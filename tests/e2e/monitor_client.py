"""A real Socket.IO client of `/monitor` for the tests (python-socketio `AsyncClient`)."""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from typing import Any

import socketio

NAMESPACE = "/monitor"
EVENTS = ("connections:active", "log:entry", "log:error", "alert:new", "stats", "log:dropped")


class Watcher:
    """A connected monitor client and everything it received, by event name."""

    def __init__(self) -> None:
        self.client = socketio.AsyncClient(reconnection=False)
        self.received: dict[str, list[Any]] = defaultdict(list)
        self.arrived: dict[str, list[float]] = defaultdict(list)  # time.monotonic() of each
        self.refusal: Any = None
        self.disconnected = asyncio.Event()
        for name in EVENTS:
            self.client.on(name, self._keep(name), namespace=NAMESPACE)
        self.client.on("connect_error", self._refused, namespace=NAMESPACE)
        self.client.on("disconnect", self._gone, namespace=NAMESPACE)

    def _keep(self, name: str):
        async def keep(data: Any) -> None:
            self.received[name].append(data)
            self.arrived[name].append(time.monotonic())
        return keep

    async def _refused(self, data: Any) -> None:
        self.refusal = data

    async def _gone(self, *_args: Any) -> None:
        self.disconnected.set()

    async def connect(self, url: str, token: str | None = None, *,
                      headers: dict[str, str] | None = None, query: str = "") -> Watcher:
        await self.client.connect(f"{url}{query}", namespaces=[NAMESPACE],
                                  auth={"token": token} if token else None,
                                  headers=headers or {}, transports=["websocket"],
                                  wait_timeout=10)
        return self

    async def until(self, check, within_s: float = 5.0) -> Any:
        """Wait until `check(received)` is truthy; return its value (or the last falsy one)."""
        until = time.monotonic() + within_s
        while True:
            result = check(self.received)
            if result or time.monotonic() > until:
                return result
            await asyncio.sleep(0.05)

    async def close(self) -> None:
        if self.client.connected:
            await self.client.disconnect()


async def refusal_of(url: str, token: str | None = None, **kwargs: Any) -> Any:
    """The `data` of the `connect_error` the server answers a connection attempt with (the
    error packet is `{message, data}`, as a browser's `err.message` and `err.data`)."""
    watcher = Watcher()
    try:
        await watcher.connect(url, token, **kwargs)
    except socketio.exceptions.ConnectionError:
        assert isinstance(watcher.refusal, dict) and watcher.refusal.get("message"), \
            watcher.refusal
        return watcher.refusal.get("data")
    await watcher.close()
    raise AssertionError("the connection was accepted")
