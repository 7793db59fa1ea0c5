"""Socket.IO `/monitor` on this gateway process (docs/api.md section 11).

- Handshake: the access token from `auth: {token}`, else `Authorization: Bearer`, else the
  `token` query parameter; refused with `connect_error` data `{error: UNAUTHORIZED |
  TOKEN_EXPIRED | TOO_MANY_CONNECTIONS}`. A socket is disconnected when its token expires.
- Views: an admin's socket sees all traffic, anybody else's the requests whose userId or
  ownerId is theirs (the rules of analytics and logs), engine alerts of their own rules.
- Relay: every process follows `request.completed`, `alert.*` and `monitor.connections`
  through its own exclusive queue (contracts.events.ExclusiveSubscription), so a client sees
  the traffic of every process whichever one it is connected to; traffic messages are not
  even decoded while no socket is connected to the process.
- Load: `log:entry`/`log:error` are capped per socket per second (the rest dropped, counted,
  and reported as `log:dropped`), and a socket whose send queue is not draining gets none
  until it drains: nothing is buffered without bound for a slow client. `stats` is computed
  every second per view from the relayed events.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

import socketio
from aio_pika.abc import AbstractRobustConnection
from aiohttp import web
from prometheus_client import Counter

from contracts.errors import ApiError, TokenExpired, Unauthorized
from contracts.events import EventPublisher, ExclusiveSubscription
from contracts.identity import Role, verify_access_token
from contracts.logging import get_logger
from contracts.messages import (
    AlertEmitted,
    AlertTriggered,
    Event,
    MonitorConnectionsChanged,
    RequestCompleted,
    WebhookDisabled,
)
from contracts.names import RoutingKey
from contracts.redis_clients import RedisClient
from contracts.settings import Settings
from contracts.tasks import stop_task
from contracts.tenancy import ALL_TRAFFIC
from contracts.timeutil import iso_now
from gateway.monitor.presence import HEARTBEAT_S, Presence
from gateway.monitor.stats import WindowStats

log = get_logger(__name__)

NAMESPACE = "/monitor"
SOCKETIO_PATH = "socket.io"
# Packets waiting in a socket's send queue beyond which it gets no more log events.
MAX_QUEUED = 200

LOG_EVENTS_DROPPED = Counter("monitor_log_events_dropped_total",
                             "log:entry/log:error not sent to a socket (cap or slow client)")
LOG_EVENTS_SENT = Counter("monitor_log_events_sent_total", "log:entry/log:error sent")


@dataclass
class Watcher:
    """One connected socket."""

    sid: str
    view: str
    second: int = 0
    sent_this_second: int = 0
    dropped: int = 0
    expiry: asyncio.Task[None] | None = None


class MonitorHub:
    """Built with the application (Socket.IO's routes join its router); started with the
    process's broker connection and Redis client."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._cap = settings.monitor_max_events_per_s
        # Long-polling needs every request of a session on one process: websocket only unless
        # an operator with a sticky load balancer allows it (gateway.steps.monitor_transport
        # refuses a polling request before it gets here; docs/architecture.md section 10).
        transports = None if settings.monitor_allow_polling else ["websocket"]
        self.sio = socketio.AsyncServer(async_mode="aiohttp", cors_allowed_origins=[],
                                        transports=transports, namespaces=[NAMESPACE])
        self.sio.on("connect", self._connect, namespace=NAMESPACE)
        self.sio.on("disconnect", self._disconnect, namespace=NAMESPACE)
        self._publisher: EventPublisher | None = None
        self._presence: Presence | None = None
        self._subscription: ExclusiveSubscription | None = None
        self._watchers: dict[str, Watcher] = {}
        self._views: dict[str, set[str]] = defaultdict(set)
        self._stats: dict[str, WindowStats] = {}
        self._ticker: asyncio.Task[None] | None = None

    def attach(self, app: web.Application) -> None:
        self.sio.attach(app, socketio_path=SOCKETIO_PATH)

    async def start(self, redis: RedisClient, connection: AbstractRobustConnection,
                    publisher: EventPublisher) -> None:
        self._publisher = publisher
        self._presence = Presence(redis, f"{os.getpid()}-{uuid.uuid4().hex[:8]}",
                                  self._settings.monitor_max_sockets_per_user)
        self._subscription = ExclusiveSubscription(
            connection, "gateway.monitor",
            [RoutingKey.REQUEST_COMPLETED, "alert.*", RoutingKey.MONITOR_CONNECTIONS],
            self._relay, wanted=self._wanted)
        await self._subscription.start()
        self._ticker = asyncio.create_task(self._tick_forever(), name="monitor-ticker")

    async def close(self) -> None:
        await stop_task(self._ticker)
        if self._subscription is not None:
            await self._subscription.close()
        for sid in list(self._watchers):
            with contextlib.suppress(Exception):
                await self.sio.disconnect(sid, namespace=NAMESPACE)
        if self._presence is not None:
            with contextlib.suppress(Exception):
                await self._presence.forget_all()

    # --- connections ---------------------------------------------------------------------

    async def _connect(self, sid: str, environ: dict[str, Any], auth: Any = None) -> None:
        if self._presence is None or self._publisher is None:
            raise _refused("UNAVAILABLE", "The monitor is starting")
        token = _token_of(environ, auth)
        try:
            if not token:
                raise Unauthorized("Missing token")
            identity = verify_access_token(self._settings.access_token_secret, token)
        except TokenExpired:
            raise _refused("TOKEN_EXPIRED", "Token expired") from None
        except ApiError:
            raise _refused("UNAUTHORIZED", "A valid access token is required") from None
        if not await self._presence.admit(sid, identity.user_id):
            raise _refused("TOO_MANY_CONNECTIONS", "Too many monitor connections for this user")
        view = ALL_TRAFFIC if identity.role is Role.ADMIN else identity.user_id
        watcher = Watcher(sid, view)
        watcher.expiry = asyncio.create_task(self._expire(sid, identity.expires_at))
        self._watchers[sid] = watcher
        self._views[view].add(sid)
        self._stats.setdefault(view, WindowStats())
        self._publisher.publish(MonitorConnectionsChanged(iso_now()))

    async def _disconnect(self, sid: str, *_reason: Any) -> None:
        watcher = self._watchers.pop(sid, None)
        if watcher is None:
            return
        if watcher.expiry is not None and watcher.expiry is not asyncio.current_task():
            watcher.expiry.cancel()
        sockets = self._views.get(watcher.view)
        if sockets is not None:
            sockets.discard(sid)
            if not sockets:
                del self._views[watcher.view]
                self._stats.pop(watcher.view, None)
        if self._presence is not None and self._publisher is not None:
            await self._presence.leave(sid)
            self._publisher.publish(MonitorConnectionsChanged(iso_now()))

    async def _expire(self, sid: str, expires_at: int) -> None:
        await asyncio.sleep(max(0.0, expires_at - time.time()))
        await self.sio.disconnect(sid, namespace=NAMESPACE)

    # --- relay ---------------------------------------------------------------------------

    def _wanted(self, routing_key: str) -> bool:
        """Traffic events are decoded only while somebody here watches: a gateway nobody
        monitors spends (almost) nothing on them."""
        return routing_key != RoutingKey.REQUEST_COMPLETED or bool(self._watchers)

    async def _relay(self, events: list[Event]) -> None:
        for event in events:
            if isinstance(event, RequestCompleted):
                await self._relay_request(event)
            elif isinstance(event, AlertTriggered):
                await self._send_to_views({ALL_TRAFFIC, event.user_id}, "alert:new",
                                          event.monitor_payload())
            elif isinstance(event, AlertEmitted):
                await self._send_to_views({ALL_TRAFFIC}, "alert:new", event.monitor_payload())
            elif isinstance(event, WebhookDisabled):
                await self._send_to_views({ALL_TRAFFIC, event.user_id}, "alert:new",
                                          event.monitor_payload())
            elif isinstance(event, MonitorConnectionsChanged) and self._presence is not None:
                await self.sio.emit("connections:active",
                                    {"count": await self._presence.count()},
                                    namespace=NAMESPACE)

    async def _relay_request(self, event: RequestCompleted) -> None:
        views = {ALL_TRAFFIC}
        for person in (event.user_id, event.owner_id):
            if person is not None:
                views.add(person)
        second = int(time.time())
        entry = {"method": event.method, "path": event.path, "status": event.status_code,
                 "latency": event.latency, "userId": event.user_id}
        error = None
        if event.status_code >= 400:
            error = {"method": event.method, "path": event.path,
                     "statusCode": event.status_code,
                     "error": "Internal Error" if event.status_code >= 500 else "Client Error",
                     "userId": event.user_id}
        for view in views:
            stats = self._stats.get(view)
            if stats is None:
                continue  # nobody watches this view here
            stats.add(second, event.status_code, event.latency)
            for sid in list(self._views.get(view, ())):
                watcher = self._watchers.get(sid)
                if watcher is not None:
                    await self._send_log(watcher, second, entry, error)

    async def _send_log(self, watcher: Watcher, second: int, entry: dict[str, Any],
                        error: dict[str, Any] | None) -> None:
        if watcher.second != second:
            watcher.second, watcher.sent_this_second = second, 0
        messages = [("log:entry", entry)] + ([("log:error", error)] if error else [])
        for name, payload in messages:
            if watcher.sent_this_second >= self._cap or self._backlog(watcher.sid) > MAX_QUEUED:
                watcher.dropped += 1
                LOG_EVENTS_DROPPED.inc()
                continue
            watcher.sent_this_second += 1
            LOG_EVENTS_SENT.inc()
            await self.sio.emit(name, payload, to=watcher.sid, namespace=NAMESPACE)

    async def _send_to_views(self, views: set[str], name: str, payload: dict[str, Any]) -> None:
        for view in views:
            for sid in list(self._views.get(view, ())):
                await self.sio.emit(name, payload, to=sid, namespace=NAMESPACE)

    def _backlog(self, sid: str) -> int:
        """Packets waiting to be written to this socket's transport."""
        try:
            eio_sid = self.sio.manager.eio_sid_from_sid(sid, NAMESPACE)
            waiting: int = self.sio.eio.sockets[eio_sid].queue.qsize()
            return waiting
        except (KeyError, AttributeError):
            return 0

    # --- every second --------------------------------------------------------------------

    async def _tick_forever(self) -> None:
        last_heartbeat = 0.0
        while True:
            await asyncio.sleep(1 - time.time() % 1)
            try:
                await self._tick()
                if self._presence is not None and \
                        time.monotonic() - last_heartbeat >= HEARTBEAT_S:
                    await self._presence.heartbeat()
                    last_heartbeat = time.monotonic()
            except Exception:
                log.exception("monitor tick failed")

    async def _tick(self) -> None:
        second = int(time.time())
        for view, sockets in list(self._views.items()):
            stats = self._stats.get(view)
            if stats is None:
                continue
            snapshot = stats.snapshot(second)
            for sid in list(sockets):
                await self.sio.emit("stats", snapshot, to=sid, namespace=NAMESPACE)
        for watcher in list(self._watchers.values()):
            if watcher.dropped:
                count, watcher.dropped = watcher.dropped, 0
                await self.sio.emit("log:dropped", {"count": count}, to=watcher.sid,
                                    namespace=NAMESPACE)


def _refused(code: str, message: str) -> socketio.exceptions.ConnectionRefusedError:
    """`connect_error` with `message` and `data: {error: code}` (docs/api.md section 11)."""
    return socketio.exceptions.ConnectionRefusedError(message, {"error": code})


def _token_of(environ: dict[str, Any], auth: Any) -> str | None:
    if isinstance(auth, dict):
        token = auth.get("token")
        if isinstance(token, str):
            return token
    header: str = environ.get("HTTP_AUTHORIZATION", "")
    if header.startswith("Bearer ") and header[7:]:
        return header[7:]
    values = parse_qs(environ.get("QUERY_STRING", "")).get("token")
    return values[0] if values else None


MONITOR_HUB = web.AppKey("monitor_hub", MonitorHub)
