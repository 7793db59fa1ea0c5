"""Keeps this gateway process in step with configuration changes.

- loads every active route config over RPC at start (retrying until the project service
  answers), and again every RESYNC_S as a safety net and after a broker reconnect;
- follows `config.*` events through this process's own exclusive subscription
  (`contracts.events.ExclusiveSubscription`) and applies them: route configs change in
  memory, cached API key verdicts of revoked keys and deleted projects are dropped from Redis.
"""

from __future__ import annotations

import asyncio

from aio_pika.abc import AbstractRobustConnection

from contracts import operations as op
from contracts.errors import ApiError
from contracts.events import ExclusiveSubscription
from contracts.logging import get_logger
from contracts.messages import (
    ConfigEvent,
    KeyRevoked,
    MalformedMessage,
    ProjectDeleted,
    RouteChanged,
    RouteConfigData,
)
from contracts.names import SERVICES, Service
from contracts.rpc import RpcClient
from contracts.tasks import stop_task
from gateway.api_keys import ApiKeys
from gateway.route_configs import RouteConfigTable

log = get_logger(__name__)

RESYNC_S = 30.0
PROJECT_QUEUE = SERVICES[Service.PROJECT].rpc_queue


class ConfigFollower:
    def __init__(self, connection: AbstractRobustConnection, rpc: RpcClient,
                 routes: RouteConfigTable, keys: ApiKeys) -> None:
        self._connection = connection
        self._rpc = rpc
        self._routes = routes
        self._keys = keys
        self._subscription = ExclusiveSubscription(connection, "gateway.config", ["config.#"],
                                                   self._apply_all)
        self._resync_task: asyncio.Task[None] | None = None
        self._resync_now = asyncio.Event()
        self.synced = asyncio.Event()
        self._route_events = 0  # route changes applied so far (resync compares it)

    async def start(self) -> None:
        await self._subscription.start()
        self._connection.reconnect_callbacks.add(lambda *_: self._resync_now.set())
        self._resync_task = asyncio.create_task(self._resync_loop(), name="config-resync")

    async def close(self) -> None:
        await stop_task(self._resync_task)
        await self._subscription.close()

    async def resync(self) -> None:
        """Replace the snapshot; if route events arrived while the snapshot was on its way,
        it may predate them, so fetch again (a few times) rather than undo a newer change."""
        for _ in range(3):
            seen = self._route_events
            result = await self._rpc.call(PROJECT_QUEUE, op.ROUTE_ACTIVE_SET,
                                          timeout_ms=5000)
            if self._route_events == seen:
                try:
                    configs = [RouteConfigData.from_wire(c) for c in result.body["routes"]]
                except (MalformedMessage, KeyError, TypeError) as exc:
                    log.error("route config snapshot not understood", error=repr(exc))
                    return
                self._routes.replace_all(configs)
                self.synced.set()
                return
        log.warning("route configs kept changing during resync; keeping the event-fed table")

    async def _resync_loop(self) -> None:
        delay = 0.5
        while True:
            try:
                await self.resync()
                delay = RESYNC_S
            except ApiError as exc:
                log.warning("route configs not loaded yet, retrying", error=exc.message)
                delay = min(max(delay, 0.5) * 2, RESYNC_S) if self.synced.is_set() else 1.0
            self._resync_now.clear()
            try:
                await asyncio.wait_for(self._resync_now.wait(), delay)
            except TimeoutError:
                pass

    async def _apply_all(self, events: list[ConfigEvent]) -> None:
        for event in events:
            await self._apply(event)

    async def _apply(self, event: ConfigEvent) -> None:
        match event:
            case RouteChanged():
                self._route_events += 1
                self._routes.apply(event)
            case KeyRevoked():
                await self._keys.forget([event.key_hash])
            case ProjectDeleted():
                self._route_events += 1
                await self._keys.forget(list(event.key_hashes), "Key not found")
                self._routes.remove(list(event.route_ids))
