"""Builds the gateway application from its settings and the route table."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack

from aio_pika.abc import AbstractRobustConnection
from aiohttp import web

from contracts import operations as op
from contracts.amqp import connect, declare_topology
from contracts.events import EventPublisher
from contracts.readiness import NotReady, Readiness, connected
from contracts.redis_clients import RedisClient, client_for
from contracts.routes import ROUTES, Route
from contracts.rpc import RpcClient
from contracts.settings import Settings
from contracts.spans import span_export
from contracts.upstream import OwnAddresses, UpstreamPolicy
from gateway.alert_bridge import emit_alert
from gateway.api_keys import ApiKeys
from gateway.client_ip import ClientAddress
from gateway.config_follower import ConfigFollower
from gateway.console import add_console
from gateway.docs import add_docs
from gateway.forwarders.http import UPSTREAM_PROXY, UpstreamProxy, proxy_or_not_found
from gateway.health import READINESS, health, livez, metrics, readyz
from gateway.monitor.hub import MONITOR_HUB, MonitorHub
from gateway.monitor.page import add_monitor_page
from gateway.oauth_page import add_signed_in_page
from gateway.pipeline import PLANS, Plans, install
from gateway.route_configs import RouteConfigTable
from gateway.router import CATCH_ALL, add_routes
from gateway.server_adapter import GatewayRunner
from gateway.state import STATE, GatewayState
from gateway.steps.authenticator import VERIFIED_TOKENS, VerifiedTokens
from gateway.steps.rate_limiter import RATE_LIMITER, RateLimiter
from gateway.steps.request_context import add_response_headers
from gateway.steps.response_cache import RESPONSE_CACHE, ResponseCache

LOCAL_HANDLERS = {op.HEALTH: health, op.LIVEZ: livez, op.READYZ: readyz,
                  op.ALERT_EMIT: emit_alert}
CONFIG_FOLLOWER = web.AppKey("config_follower", ConfigFollower)
STATUS_LISTENER = web.AppKey("status_listener", web.AppRunner)


async def start_status_listener(settings: Settings, readiness: Readiness) -> web.AppRunner:
    """Operator data off the public port (docs/api.md section 10): `GET /metrics` on
    GATEWAY_STATUS_PORT, bound like the services' ports, with `/livez` and `/readyz` for
    probes that should not share the public port. With several workers each one binds it
    (SO_REUSEPORT), so a scrape or a probe reads one worker."""
    status = web.Application()
    status[READINESS] = readiness
    status.router.add_get("/metrics", metrics)
    status.router.add_get("/livez", livez)
    status.router.add_get("/readyz", readyz)
    runner = GatewayRunner(status, access_log=None)  # its refusals in the envelope too
    await runner.setup()
    await web.TCPSite(runner, settings.service_host, settings.gateway_status_port,
                      reuse_port=settings.gateway_workers > 1).start()
    return runner


def build_app(settings: Settings, routes: tuple[Route, ...] = ROUTES) -> web.Application:
    app = web.Application(client_max_size=settings.max_body_bytes)
    app[PLANS] = Plans()
    # before `install`: the pipeline closes connections while the process drains
    app[READINESS] = Readiness()
    app.on_response_prepare.append(add_response_headers)
    app[VERIFIED_TOKENS] = VerifiedTokens()
    add_docs(app, routes)
    monitor = MonitorHub(settings)
    monitor.attach(app)  # /socket.io/
    app[MONITOR_HUB] = monitor
    add_monitor_page(app)
    add_signed_in_page(app)
    add_console(app)
    add_routes(app, routes, LOCAL_HANDLERS)
    # upstream route configs, else the JSON 404
    app.router.add_route("*", "/{tail:.*}", proxy_or_not_found, name=CATCH_ALL)
    install(app)  # last: every route above runs through the pipeline

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        # Everything opened goes into one exit stack: closed in reverse at shutdown, and at
        # once if start-up fails half-way (nothing opened before the failure stays open).
        async with AsyncExitStack() as stack:
            await open_resources(app, settings, monitor, stack)
            yield

    app.cleanup_ctx.append(lifecycle)
    return app


async def open_resources(app: web.Application, settings: Settings, monitor: MonitorHub,
                         stack: AsyncExitStack) -> None:
    """The gateway's connections and background parts, each pushed on `stack` when open."""
    grace = settings.shutdown_grace_s
    # first in, so last out: the spans of the requests answered during shutdown are sent
    await stack.enter_async_context(span_export(settings, "gateway"))
    connection = await connect(settings.amqp_url, name="gateway")
    stack.push_async_callback(connection.close)
    await declare_topology(connection)
    rpc = RpcClient(connection, default_timeout_ms=settings.rpc_timeout_ms)
    await rpc.start()
    stack.push_async_callback(rpc.close)
    publisher = EventPublisher(connection, max_buffer=settings.event_buffer_max)
    await publisher.start()
    stack.push_async_callback(publisher.close, timeout=grace)
    # standalone, Cluster or Sentinel, as configured (contracts.redis_clients)
    redis = client_for(settings, "state", max_connections=64, socket_connect_timeout=1,
                       socket_timeout=1)
    stack.push_async_callback(redis.aclose)
    route_configs = RouteConfigTable()
    api_keys = ApiKeys(redis, rpc)
    stack.push_async_callback(api_keys.close)
    app[STATE] = GatewayState(settings, connection, rpc, publisher, redis,
                              ClientAddress(settings.trusted_proxies), route_configs,
                              api_keys)
    limiter = RateLimiter(redis, fail_closed=settings.rate_limit_fail_closed)
    stack.push_async_callback(limiter.close)
    app[RATE_LIMITER] = limiter
    # the cache's own instance (docs/api.md section 13.2): it can never evict limiter keys
    cache = ResponseCache(
        client_for(settings, "cache", max_connections=32, socket_connect_timeout=1,
                   socket_timeout=1),
        max_body_bytes=settings.cache_max_body_bytes,
        project_budget_bytes=settings.cache_project_budget_bytes)
    stack.push_async_callback(cache.close)
    app[RESPONSE_CACHE] = cache
    own = await OwnAddresses.of(settings.app_url, settings.gateway_port)
    proxy = UpstreamProxy(UpstreamPolicy(settings.upstream_allow_private, own),
                          connect_timeout_s=settings.upstream_connect_timeout_s,
                          total_timeout_s=settings.upstream_timeout_s,
                          max_header_bytes=settings.upstream_max_header_bytes,
                          max_header_fields=settings.upstream_max_header_fields)
    await proxy.start()
    stack.push_async_callback(proxy.close)
    app[UPSTREAM_PROXY] = proxy
    follower = ConfigFollower(connection, rpc, route_configs, api_keys)
    await follower.start()
    stack.push_async_callback(follower.close)
    app[CONFIG_FOLLOWER] = follower
    await monitor.start(redis, connection, publisher)
    stack.push_async_callback(monitor.close)
    require_dependencies(app[READINESS], connection, redis, follower,
                         fail_closed=settings.rate_limit_fail_closed)
    status = await start_status_listener(settings, app[READINESS])
    stack.push_async_callback(status.cleanup)
    app[STATUS_LISTENER] = status


def require_dependencies(readiness: Readiness, connection: AbstractRobustConnection,
                         redis: RedisClient, follower: ConfigFollower, *,
                         fail_closed: bool) -> None:
    """What this gateway cannot serve well without (`/readyz`): the broker (every platform
    route is an RPC), the limiter's Redis when limits fail closed (failing open, a gateway
    without Redis still serves: taking every gateway out of a load balancer at once for a
    Redis outage would be worse), and a first snapshot of the route configs (until then
    every upstream route would be a 404). Later reloads failing do not count: the snapshot
    in memory stays good."""
    readiness.require("rabbitmq", connected(lambda: connection.is_closed))
    if fail_closed:
        readiness.require("redis", redis.ping)

    async def route_configs() -> None:
        if not follower.synced.is_set():
            raise NotReady("not loaded yet")

    readiness.require("route-configs", route_configs)
