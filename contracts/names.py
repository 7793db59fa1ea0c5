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
    ALERT_WEBHOOK_DISABLED = "alert.webhook_disabled"
    MONITOR_CONNECTIONS = "monitor.connections"
    CONFIG_ROUTE_CHANGED = "config.route.changed"
    CONFIG_KEY_REVOKED = "config.key.revoked"
    CONFIG_PROJECT_DELETED = "config.project.deleted"
    # a webhook delivery's next attempt is due (project_svc/webhook_dispatch.py)
    WEBHOOK_DELIVERY_DUE = "webhook.delivery.due"


# Changes of resources that webhooks may subscribe to, published through the outbox of the
# service that made them (contracts/outbox.py) as `domain.<type>` (contracts.messages
# DomainEvent).
DOMAIN_EVENT_TYPES = (
    "project.created", "project.updated", "project.deleted",
    "api_key.created", "api_key.revoked",
    "route.created", "route.updated", "route.deleted",
    "alert.triggered", "alert.acknowledged",
    "user.registered",
)


def domain_routing_key(event_type: str) -> str:
    return f"domain.{event_type}"


@dataclass(frozen=True)
class EventQueue:
    """A durable work queue bound to gw.events, consumed by competing replicas of one service."""

    name: str
    bindings: tuple[str, ...]


LOGGING_REQUESTS = EventQueue("logging.requests", (RoutingKey.REQUEST_COMPLETED,))
ANALYTICS_REQUESTS = EventQueue("analytics.requests", (RoutingKey.REQUEST_COMPLETED,))

# the project service's webhook intake (every domain event) and its dispatchers' jobs
WEBHOOK_EVENTS = EventQueue("webhook.events",
                            tuple(domain_routing_key(t) for t in DOMAIN_EVENT_TYPES))
WEBHOOK_DELIVERIES = EventQueue("webhook.deliveries", (RoutingKey.WEBHOOK_DELIVERY_DUE,))

EVENT_QUEUES: tuple[EventQueue, ...] = (LOGGING_REQUESTS, ANALYTICS_REQUESTS, WEBHOOK_EVENTS,
                                        WEBHOOK_DELIVERIES)


def dead_letter_queue(source_queue: str) -> str:
    return f"{source_queue}.dead"


# Message headers of our own.
HEADER_DEADLINE = "x-deadline-ms"  # absolute Unix time in ms after which nobody waits for a reply
HEADER_RETRIES = "x-retries"  # how often an event message was retried after handler failures
HEADER_ROUTING_KEY = "x-routing-key"  # the original key of a retried event message
HEADER_DEAD_REASON = "x-dead-reason"
HEADER_SOURCE_QUEUE = "x-source-queue"
HEADER_BATCH_SIZE = "x-batch-size"
