"""Alert events in PostgreSQL (ALERT_EVENT_STORE=postgresql, the default): the `alert_events`
table of the analytics database (migrations/002_alert_events.sql), on the service's pool.

- An event's primary key is the 12 bytes of its Mongo `_id` (derived from rule and slot), so
  the same slot stored twice is one row (`ON CONFLICT DO NOTHING`) and `_id` is the same in
  either store.
- Lists are index range scans newest first, (ts, id) descending: an owner's on
  (user_id, ts, id), an admin's on (ts, id), open events on partial indexes of both; `total`
  is an exact count of the same filter.
- Acknowledging is one UPDATE by primary key, the owner a condition of it; the engine's
  cool-down check reads a rule's latest event from (rule_id, ts).
- A stored event and an acknowledgement write their domain event (`alert.triggered`,
  `alert.acknowledged`, for webhooks) into the outbox in the same transaction
  (contracts/outbox.py), and nudge the relay.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import asyncpg

from analytics_svc.alert_store import AlertRule, EventFilter, event_document, triggered_of
from contracts.identity import Caller
from contracts.messages import AlertTriggered, DomainEvent, DomainEventType
from contracts.outbox import OutboxRelay, add_to_outbox, domain_event
from contracts.schemas.alerts import AlertEvent, AlertEventPage

# alert_events' columns, in the order of `row_of` (also for COPY: bench/alerts.py seeds so)
COLUMNS = ("id", "ts", "user_id", "rule_id", "project_id", "service", "severity",
           "acknowledged", "acknowledged_by", "acknowledged_at", "rule_name", "metric", "value",
           "threshold", "operator", "message")
_COLUMNS = ", ".join(COLUMNS)
_INSERT = f"""
INSERT INTO alert_events ({_COLUMNS})
VALUES ({", ".join(f"${n}" for n in range(1, len(COLUMNS) + 1))})
ON CONFLICT DO NOTHING
"""
_LAST = "SELECT ts FROM alert_events WHERE rule_id = $1 ORDER BY ts DESC LIMIT 1"
_ACKNOWLEDGE = f"""
UPDATE alert_events SET acknowledged = true, acknowledged_by = $2, acknowledged_at = $3
WHERE id = $1 AND ($4::text IS NULL OR user_id = $4)
RETURNING {_COLUMNS}
"""


def milliseconds(moment: datetime) -> datetime:
    """`moment` as MongoDB keeps it (milliseconds), so both stores order and bound alike."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


def row_of(document: dict[str, Any]) -> tuple[Any, ...]:
    """An event as analytics_svc.alert_store.event_document makes it, as a row (COLUMNS)."""
    acknowledged_at = document.get("acknowledgedAt")
    return (document["_id"].binary, milliseconds(document["timestamp"]), document["userId"],
            str(document["ruleId"]), document.get("projectId"), document["service"],
            document["severity"], bool(document.get("acknowledged", False)),
            document.get("acknowledgedBy"),
            milliseconds(acknowledged_at) if acknowledged_at else None, document["ruleName"],
            document["metric"], float(document["value"]), float(document["threshold"]),
            document["operator"], document["message"])


def _view(row: asyncpg.Record) -> AlertEvent:
    """docs/api.md's AlertEvent of a row (its columns are the answer's fields but for the id,
    kept as the ObjectId's 12 bytes, and `ts`)."""
    event_id = bytes(row["id"]).hex()
    return AlertEvent.view(row, id=event_id, mongo_id=event_id, timestamp=row["ts"])


def _where(caller: Caller, where: EventFilter) -> tuple[str, list[Any]]:
    """The SQL condition of the caller's view narrowed by `where`, and its arguments."""
    conditions: list[str] = []
    arguments: list[Any] = []

    def add(condition: str, argument: Any) -> None:
        arguments.append(argument)
        conditions.append(condition.format(f"${len(arguments)}"))

    if not caller.is_admin:
        add("user_id = {}", caller.user_id)
    if where.acknowledged is not None:
        # literal, so the planner matches the partial indexes of open events
        conditions.append("acknowledged" if where.acknowledged else "NOT acknowledged")
    if where.severity is not None:
        add("severity = {}", where.severity)
    if where.service is not None:
        add("service = {}", where.service)
    if where.since is not None:
        add("ts >= {}", where.since)
    if where.until is not None:
        add("ts <= {}", where.until)
    return (" AND ".join(conditions) or "true"), arguments


def _announced(event_type: DomainEventType, row: asyncpg.Record) -> DomainEvent:
    """The domain event of a stored alert event: its project, or none (then its webhooks are
    those of the rule owner's projects)."""
    return domain_event(event_type, _view(row), project_id=row["project_id"],
                        owner_id=row["user_id"])


class PostgresAlertEventStore:
    def __init__(self, pool: asyncpg.Pool, relay: OutboxRelay | None = None) -> None:
        self._pool = pool
        self._relay = relay

    async def store_event(self, rule: AlertRule, slot: int, *, value: float, severity: str,
                          message: str, at: datetime) -> AlertTriggered | None:
        document = event_document(rule, slot, value=value, severity=severity, message=message,
                                  at=milliseconds(at))
        async with self._pool.acquire() as connection, connection.transaction():
            row = await connection.fetchrow(_INSERT + f" RETURNING {_COLUMNS}",
                                            *row_of(document))
            if row is None:
                return None  # the slot's event exists already
            await add_to_outbox(connection, _announced("alert.triggered", row))
        self._nudge()
        return triggered_of(rule, document)

    def _nudge(self) -> None:
        if self._relay is not None:
            self._relay.nudge()

    async def last_event_at(self, rule_id: str) -> datetime | None:
        moment: datetime | None = await self._pool.fetchval(_LAST, rule_id)
        return moment

    async def events(self, caller: Caller, where: EventFilter, *, limit: int,
                     offset: int) -> AlertEventPage:
        condition, arguments = _where(caller, where)
        n = len(arguments)
        rows = await self._pool.fetch(
            f"SELECT {_COLUMNS} FROM alert_events WHERE {condition}"
            f" ORDER BY ts DESC, id DESC LIMIT ${n + 1} OFFSET ${n + 2}",
            *arguments, limit, offset)
        if offset == 0 and len(rows) < limit:
            total = len(rows)
        else:
            total = await self._pool.fetchval(
                f"SELECT count(*) FROM alert_events WHERE {condition}", *arguments)
        return AlertEventPage(events=[_view(row) for row in rows], total=total, limit=limit,
                              offset=offset)

    async def acknowledge(self, caller: Caller, event_id: str,
                          by: str) -> AlertEvent | None:
        try:
            key = bytes.fromhex(event_id)
        except ValueError:
            return None
        async with self._pool.acquire() as connection, connection.transaction():
            row = await connection.fetchrow(
                _ACKNOWLEDGE, key, by, milliseconds(datetime.now(UTC)),
                None if caller.is_admin else caller.user_id)
            if row is None:
                return None
            await add_to_outbox(connection, _announced("alert.acknowledged", row))
        self._nudge()
        return _view(row)
