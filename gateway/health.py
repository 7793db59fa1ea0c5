"""`GET /health` (docs/api.md section 10): the gateway, each service over RPC, Redis, RabbitMQ.

200 when every part answered, 503 naming the failing parts otherwise, so a load balancer can
act on the status code alone.

`/livez` and `/readyz` (contracts.readiness) on the public port and on the status listener:
this process only, no service asked, so a load balancer probing every gateway often costs the
services nothing.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from contracts import operations as op
from contracts.errors import ApiError
from contracts.names import SERVICES
from contracts.readiness import LIVE, Readiness, status_of
from contracts.timeutil import iso_now
from gateway.responses import json_response
from gateway.state import GatewayState, state_of

READINESS = web.AppKey("readiness", Readiness)
_LIVE = LIVE.model_dump(mode="json")


async def health(request: web.Request) -> web.Response:
    state = state_of(request)
    timeout_ms = state.settings.health_timeout_ms
    probes = [_probe_service(state, info.rpc_queue, info.public_name, timeout_ms)
              for info in SERVICES.values()]
    *services, redis_status = await asyncio.gather(*probes, _probe_redis(state, timeout_ms))
    dependencies = [redis_status, _probe_broker(state)]
    healthy = all(part["status"] == "ok" for part in (*services, *dependencies))
    body = {
        "status": "ok" if healthy else "degraded",
        "service": "gateway",
        "timestamp": iso_now(),
        "uptime": round(time.monotonic() - state.started_monotonic, 3),
        "services": services,
        "dependencies": dependencies,
    }
    return json_response(body, status=200 if healthy else 503)


async def _probe_service(state: GatewayState, queue: str, name: str, timeout_ms: int
                         ) -> dict[str, Any]:
    started = time.perf_counter()
    try:
        await state.rpc.call(queue, op.SERVICE_HEALTH, timeout_ms=timeout_ms)
    except ApiError as exc:
        return {"name": name, "status": "error", "error": exc.message}
    return {"name": name, "status": "ok", "latency": _ms_since(started)}


async def _probe_redis(state: GatewayState, timeout_ms: int) -> dict[str, Any]:
    started = time.perf_counter()
    try:
        await asyncio.wait_for(state.redis.ping(), timeout_ms / 1000)
    except Exception as exc:
        return {"name": "redis", "status": "error", "error": type(exc).__name__}
    return {"name": "redis", "status": "ok", "latency": _ms_since(started)}


def _probe_broker(state: GatewayState) -> dict[str, Any]:
    if state.connection.is_closed:
        return {"name": "rabbitmq", "status": "error", "error": "connection closed"}
    return {"name": "rabbitmq", "status": "ok"}


async def livez(_request: web.Request) -> web.Response:
    return json_response(_LIVE)


async def readyz(request: web.Request) -> web.Response:
    ready = await request.app[READINESS].state()
    return json_response(ready.model_dump(mode="json"), status=status_of(ready))


async def metrics(_request: web.Request) -> web.Response:
    return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})


def _ms_since(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 2)
