"""Prometheus metrics shared by the messaging helpers (one registry per process)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from contracts.names import RoutingKey

RPC_CLIENT_SECONDS = Histogram(
    "rpc_client_seconds", "RPC round trip seen by the caller", ["operation", "outcome"],
    buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
RPC_SERVER_SECONDS = Histogram(
    "rpc_server_seconds", "RPC handler time", ["operation", "outcome"],
    buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
RPC_EXPIRED_DROPPED = Counter(
    "rpc_expired_dropped_total", "RPC requests dropped unprocessed because their caller gave up",
    ["queue"],
)
RPC_RETRIED = Counter(
    "rpc_retried_total",
    "Idempotent RPC calls made again after their broker connection dropped", ["operation"],
)
MESSAGES_DEAD_LETTERED = Counter(
    "messages_dead_lettered_total", "Messages moved to a dead-letter queue", ["queue", "reason"],
)
EVENTS_PUBLISHED = Counter(
    "events_published_total", "Events confirmed by the broker", ["routing_key"],
)
EVENTS_SHED = Counter(
    "events_shed_total", "Events dropped because the publish buffer was full", ["routing_key"],
)
# every series at 0 from the start: a counter born at its first shed would jump from nothing
# to N, which `increase()` cannot see, and the first shedding would raise no alert
for _key in RoutingKey:
    EVENTS_SHED.labels(_key)
EVENT_BUFFER_DEPTH = Gauge("event_buffer_depth", "Events waiting to be published")
EVENTS_CONSUMED = Counter(
    "events_consumed_total", "Event messages handled", ["queue", "outcome"],
)
