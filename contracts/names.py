"""Names on the broker and on the network, in one place so no two processes can disagree."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Service(StrEnum):
    AUTH = "auth"
    PROJECT = "project"
    ANALYTICS = "analytics"
    LOGGING = "logging"


@dataclass(frozen=True)
class ServiceInfo:
    service: Service
    public_name: str  # as listed by GET /health (docs/api.md section 10)
    http_port: int  # /health and /metrics only

    @property
    def rpc_queue(self) -> str:
        return rpc_queue(self.service)


SERVICES: dict[Service, ServiceInfo] = {
    Service.AUTH: ServiceInfo(Service.AUTH, "auth-service", 4001),
    Service.PROJECT: ServiceInfo(Service.PROJECT, "project-service", 4002),
    Service.ANALYTICS: ServiceInfo(Service.ANALYTICS, "analytics-service", 4003),
    Service.LOGGING: ServiceInfo(Service.LOGGING, "logging-service", 4004),
}


def rpc_queue(service: str) -> str:
    return f"rpc.{service}"


# Asynchronous events: one durable topic exchange.
EVENTS_EXCHANGE = "gw.events"
# Poison messages land here (fanout-like use of a topic exchange: routed by their source queue).
DEAD_LETTER_EXCHANGE = "gw.dlx"

DIRECT_REPLY_TO = "amq.rabbitmq.reply-to"


class RoutingKey(StrEnum):
    REQUEST_COMPLETED = "request.completed"
    ALERT_TRIGGERED = "alert.triggered"
    ALERT_EMITTED = "alert.emitted"
    MONITOR_CONNECTIONS = "monitor.connections"
    CONFIG_ROUTE_CHANGED = "config.route.changed"
    CONFIG_KEY_REVOKED = "config.key.revoked"
    CONFIG_PROJECT_DELETED = "config.project.deleted"


@dataclass(frozen=True)
class EventQueue:
    """A durable work queue bound to gw.events, consumed by competing replicas of one service."""

    name: str
    bindings: tuple[str, ...]


LOGGING_REQUESTS = EventQueue("logging.requests", (RoutingKey.REQUEST_COMPLETED,))
ANALYTICS_REQUESTS = EventQueue("analytics.requests", (RoutingKey.REQUEST_COMPLETED,))

EVENT_QUEUES: tuple[EventQueue, ...] = (LOGGING_REQUESTS, ANALYTICS_REQUESTS)


def dead_letter_queue(source_queue: str) -> str:
    return f"{source_queue}.dead"


# Message headers of our own.
HEADER_DEADLINE = "x-deadline-ms"  # absolute Unix time in ms after which nobody waits for a reply
HEADER_RETRIES = "x-retries"  # how often an event message was retried after handler failures
HEADER_ROUTING_KEY = "x-routing-key"  # the original key of a retried event message
HEADER_DEAD_REASON = "x-dead-reason"
HEADER_SOURCE_QUEUE = "x-source-queue"
HEADER_BATCH_SIZE = "x-batch-size"
