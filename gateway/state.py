"""What the gateway's steps and handlers share, held on the application under one key."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from functools import cached_property
from urllib.parse import urlsplit

from aio_pika.abc import AbstractRobustConnection
from aiohttp import web

from contracts.events import EventPublisher
from contracts.redis_clients import RedisClient
from contracts.rpc import RpcClient
from contracts.settings import Settings
from gateway.api_keys import ApiKeys
from gateway.client_ip import ClientAddress
from gateway.route_configs import RouteConfigTable


@dataclass
class GatewayState:
    settings: Settings
    connection: AbstractRobustConnection
    rpc: RpcClient
    publisher: EventPublisher
    redis: RedisClient
    client_address: ClientAddress
    route_configs: RouteConfigTable
    api_keys: ApiKeys
    started_monotonic: float = field(default_factory=time.monotonic)

    @cached_property
    def via(self) -> str:
        """This deployment's `Via` entry (RFC 9110 section 7.6.3), added to proxied requests."""
        return f"1.1 {self.settings.gateway_id}"

    @cached_property
    def public_host(self) -> str:
        """The host clients reach the gateway at (APP_URL), as upstreams are told."""
        return urlsplit(self.settings.app_url).netloc


STATE = web.AppKey("gateway_state", GatewayState)


def state_of(request: web.Request) -> GatewayState:
    return request.app[STATE]
