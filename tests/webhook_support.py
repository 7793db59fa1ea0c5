"""Webhook receivers for the tests: real HTTP servers on loopback that record every request
and answer as a test scripts them: `receiving` in a test's own event loop (integration
tests), `ThreadedReceiver` in a thread of its own (end-to-end tests, which are synchronous)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from aiohttp import web

from tests.e2e.helpers import LoopbackServer


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float  # the event loop's clock


Answer = Callable[[Received], web.StreamResponse]


@dataclass
class Receiver:
    """`answers` are used in turn, the last one for every request after them."""

    answers: list[Answer] = field(default_factory=lambda: [lambda _: web.Response(text="ok")])
    delay_s: float = 0.0
    received: list[Received] = field(default_factory=list)
    url: str = ""

    async def handle(self, request: web.Request) -> web.StreamResponse:
        got = Received(request.path, dict(request.headers), await request.read(),
                       asyncio.get_running_loop().time())
        self.received.append(got)
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        answer = self.answers[min(len(self.received), len(self.answers)) - 1]
        return answer(got)


@asynccontextmanager
async def receiving(receiver: Receiver, host: str = "127.0.0.1") -> AsyncIterator[Receiver]:
    """`receiver` serving on `host` at a free port (its `url` set) until the block ends."""
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", receiver.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, host, 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    receiver.url = f"http://{host}:{port}/hook"
    try:
        yield receiver
    finally:
        await runner.cleanup()


def status(code: int, **headers: str) -> Answer:
    return lambda _: web.Response(status=code, headers=headers)


class ThreadedReceiver(LoopbackServer):
    """A `Receiver` served in a thread of its own on a free loopback port."""

    def __init__(self, receiver: Receiver | None = None) -> None:
        super().__init__()
        self.receiver = receiver or Receiver()

    def routes(self, app: web.Application) -> None:
        app.router.add_route("*", "/{tail:.*}", self.receiver.handle)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    @property
    def received(self) -> list[Received]:
        return self.receiver.received
