"""(e) measured in pairs: one process, pinned where wrk runs, alternates a direct RPC call to
`auth.profile` with the gateway's RPC route for the same caller over one keep-alive HTTP
connection, and reports the median of the pairs' differences (route - direct).

Why pairs: a direct RPC call's latency here is mostly the broker's quorum-queue write and
drifts by a millisecond within minutes, more than the gateway adds; two p50s taken seconds
apart (wrk, then a direct client) carry that drift into their difference. A pair's two
calls are made back to back, in alternating order, so the drift cancels out of each
difference. The HTTP side is a bare socket (a request written once, an answer read by its
Content-Length), lighter than the RPC client on the direct side, so nothing is added to the
route that the direct call does not pay too.

    python bench/rpc_pairs.py AMQP_URL GATEWAY_URL ACCESS_TOKEN CALLER_JSON PAIRS

prints one JSON object: {"route_p50", "direct_p50", "overhead_p50", "pairs"} in ms.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
import time
import urllib.parse
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from contracts import operations as op
from contracts.amqp import connect
from contracts.identity import Caller
from contracts.messages import RpcRequest
from contracts.rpc import RpcClient

ROUTE = "/api/v1/auth/profile"


class Route:
    """GET ROUTE on one keep-alive connection; an answer read by its Content-Length."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 request: bytes) -> None:
        self._reader, self._writer, self._request = reader, writer, request

    @classmethod
    async def open(cls, gateway_url: str, token: str) -> Route:
        url = urllib.parse.urlsplit(gateway_url)
        reader, writer = await asyncio.open_connection(url.hostname, url.port)
        request = (f"GET {ROUTE} HTTP/1.1\r\nHost: {url.netloc}\r\n"
                   f"Authorization: Bearer {token}\r\n\r\n").encode()
        return cls(reader, writer, request)

    async def call(self) -> None:
        self._writer.write(self._request)
        head = await self._reader.readuntil(b"\r\n\r\n")
        status = head[9:12]
        if status != b"200":
            raise RuntimeError(f"the route answered {head[:200]!r}")
        length = next(int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length:"))
        await self._reader.readexactly(length)

    def close(self) -> None:
        self._writer.close()


async def measure(amqp_url: str, gateway_url: str, token: str, caller: dict,
                  pairs: int) -> dict[str, float]:
    connection = await connect(amqp_url, name="bench-rpc-pairs")
    client = RpcClient(connection, default_timeout_ms=5000)
    await client.start()
    route = await Route.open(gateway_url, token)
    request = RpcRequest(caller=Caller.from_wire(caller), request_id="bench")

    async def direct() -> None:
        await client.call("rpc.auth", op.AUTH_PROFILE, request)

    timings: dict[str, list[float]] = {"route": [], "direct": []}
    try:
        for n in range(pairs + pairs // 10):  # the first tenth warms up, uncounted
            order = (("route", route.call), ("direct", direct))
            for name, call in order if n % 2 else order[::-1]:
                started = time.perf_counter()
                await call()
                if n >= pairs // 10:
                    timings[name].append((time.perf_counter() - started) * 1000)
    finally:
        route.close()
        await client.close()
        await connection.close()
    differences = [r - d for r, d in zip(timings["route"], timings["direct"], strict=True)]
    return {"route_p50": statistics.median(timings["route"]),
            "direct_p50": statistics.median(timings["direct"]),
            "overhead_p50": statistics.median(differences), "pairs": len(differences)}


def main() -> None:
    amqp_url, gateway_url, token, caller, pairs = sys.argv[1:6]
    print(json.dumps(asyncio.run(measure(amqp_url, gateway_url, token, json.loads(caller),
                                         int(pairs)))))


if __name__ == "__main__":
    main()
