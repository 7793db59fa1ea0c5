"""Keeps this gateway process in step with configuration changes.

- loads every active route config over RPC at start (retrying until the project service
  answers), and again every RESYNC_S as a safety net and after a broker reconnect;
- consumes `config.*` events on a queue of its own (exclusive: it lives and dies with this
  process) and applies them: route configs change in memory, cached API key verdicts of
  revoked keys and deleted projects are dropped from Redis.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from typing import Any

from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractRobustConnection

from contracts.amqp import declare_events_exchange
from contracts.errors import ApiError
from contracts.events import decode_batch
from contracts.logging import get_logger
from contracts.names import SERVICES, RoutingKey, Service
from contracts.rpc import RpcClient
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
        self._channel: AbstractChannel | None = None
        self._resync_task: asyncio.Task[None] | None = None
        self._resync_now = asyncio.Event()
        self.synced = asyncio.Event()
        self._route_events = 0  # route changes applied so far (resync compares it)

    async def start(self) -> None:
        self._channel = await self._connection.channel()
        exchange = await declare_events_exchange(self._channel)
        queue = await self._channel.declare_queue(
            f"gateway.config.{os.getpid()}.{uuid.uuid4().hex[:8]}", exclusive=True,
            auto_delete=True)
        await queue.bind(exchange, "config.#")
        await queue.consume(self._on_message)
        self._connection.reconnect_callbacks.add(lambda *_: self._resync_now.set())
        self._resync_task = asyncio.create_task(self._resync_loop(), name="config-resync")

    async def close(self) -> None:
        if self._resync_task is not None:
            self._resync_task.cancel()
            await asyncio.gather(self._resync_task, return_exceptions=True)
        if self._channel is not None and not self._channel.is_closed:
            await self._channel.close()

    async def resync(self) -> None:
        """Replace the snapshot; if route events arrived while the snapshot was on its way,
        it may predate them, so fetch again (a few times) rather than undo a newer change."""
        for _ in range(3):
            seen = self._route_events
            result = await self._rpc.call(PROJECT_QUEUE, "route.active_set", timeout_ms=5000)
            if self._route_events == seen:
                self._routes.replace_all(result.body["routes"])
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

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        async with message.process(requeue=False, ignore_processed=True):
            try:
                events = decode_batch(message.body)
            except ValueError:
                log.error("malformed config event dropped", routing_key=message.routing_key)
                return
            for event in events:
                await self._apply(message.routing_key or "", event)

    async def _apply(self, routing_key: str, event: dict[str, Any]) -> None:
        try:
            if routing_key == RoutingKey.CONFIG_ROUTE_CHANGED:
                self._route_events += 1
                self._routes.apply(event["action"], event["route"])
            elif routing_key == RoutingKey.CONFIG_KEY_REVOKED:
                await self._keys.forget([event["keyHash"]])
            elif routing_key == RoutingKey.CONFIG_PROJECT_DELETED:
                self._route_events += 1
                await self._keys.forget(list(event.get("keyHashes", [])), "Key not found")
                self._routes.remove(list(event.get("routeIds", [])))
        except (KeyError, TypeError) as exc:
            log.error("config event not understood", routing_key=routing_key, error=repr(exc))
