"""Webhooks, deliveries and attempts in the project database (migrations/002_webhooks.sql).

Tenancy is the project's: a webhook is visible to its project's owner and to admins, found
by joining its project (callers pass `Caller`); another tenant's ids are simply not found.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

import asyncpg
from pydantic import MISSING

from contracts.identity import Caller
from contracts.postgres import Connection, returned
from contracts.schemas.webhooks import WebhookPatch
from contracts.validation import or_none
from project_svc.store import refuse_past_limit

VISIBLE = "p.id = w.project_id AND ($2 OR p.user_id = $3)"


@dataclass(frozen=True)
class NewDelivery:
    id: str
    webhook_id: uuid.UUID
    event_id: str
    event_type: str
    payload: bytes


@dataclass(frozen=True)
class AttemptRecord:
    number: int
    at: datetime
    status_code: int | None
    error: str | None
    duration_ms: float
    answer: str


class WebhookStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    # --- webhooks -----------------------------------------------------------------------------

    async def create(self, project_id: uuid.UUID, webhook_id: uuid.UUID, *, name: str, url: str,
                     events: list[str], active: bool, secret_sealed: str, limit: int
                     ) -> asyncpg.Record:
        """Raise LimitReached when the project has `limit` webhooks (counted under a lock per
        project, so concurrent creates cannot overshoot)."""
        async with self.pool.acquire() as connection, connection.transaction():
            await refuse_past_limit(connection, f"webhooks-of:{project_id}",
                                    "SELECT count(*) FROM webhooks WHERE project_id = $1",
                                    project_id, limit)
            return returned(await connection.fetchrow(
                "INSERT INTO webhooks (id, project_id, name, url, events, active, secret_sealed)"
                " VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING *",
                webhook_id, project_id, name, url, events, active, secret_sealed))

    async def visible(self, caller: Caller, webhook_id: uuid.UUID) -> asyncpg.Record | None:
        """The webhook with its project's owner (`owner_id`), if the caller may see it."""
        return await self.pool.fetchrow(
            f"SELECT w.*, p.user_id AS owner_id FROM webhooks w, projects p"
            f" WHERE w.id = $1 AND {VISIBLE}", webhook_id, caller.is_admin, caller.user_id)

    async def by_id(self, webhook_id: uuid.UUID) -> asyncpg.Record | None:
        return await self.pool.fetchrow(
            "SELECT w.*, p.user_id AS owner_id FROM webhooks w JOIN projects p"
            " ON p.id = w.project_id WHERE w.id = $1", webhook_id)

    async def of_project(self, project_id: uuid.UUID, *, page: int, limit: int
                         ) -> tuple[list[asyncpg.Record], int]:
        rows = await self.pool.fetch(
            "SELECT *, count(*) OVER () AS total FROM webhooks WHERE project_id = $1"
            " ORDER BY created_at DESC, id LIMIT $2 OFFSET $3",
            project_id, limit, (page - 1) * limit)
        if rows:
            return rows, rows[0]["total"]
        return rows, await self.pool.fetchval(
            "SELECT count(*) FROM webhooks WHERE project_id = $1", project_id)

    async def update(self, webhook_id: uuid.UUID, changes: WebhookPatch) -> asyncpg.Record:
        """Only the fields the patch carries change; turning a webhook on again clears why it
        was disabled and its failing streak."""
        return returned(await self.pool.fetchrow(
            "UPDATE webhooks SET"
            " name = CASE WHEN $2 THEN $3 ELSE name END,"
            " url = CASE WHEN $4 THEN $5 ELSE url END,"
            " events = CASE WHEN $6 THEN $7::text[] ELSE events END,"
            " active = CASE WHEN $8 THEN $9 ELSE active END,"
            " disabled_reason = CASE WHEN $8 AND $9 THEN NULL ELSE disabled_reason END,"
            " failing_since = CASE WHEN $8 AND $9 THEN NULL ELSE failing_since END,"
            " updated_at = now() WHERE id = $1 RETURNING *",
            webhook_id,
            changes.name is not MISSING, or_none(changes.name),
            changes.url is not MISSING, or_none(changes.url),
            changes.events is not MISSING, or_none(changes.events),
            changes.active is not MISSING, bool(or_none(changes.active))))

    async def delete(self, webhook_id: uuid.UUID) -> None:
        await self.pool.execute("DELETE FROM webhooks WHERE id = $1", webhook_id)

    async def rotate(self, webhook_id: uuid.UUID, new_sealed: str, previous_sealed: str,
                     overlap_s: int) -> asyncpg.Record:
        return returned(await self.pool.fetchrow(
            "UPDATE webhooks SET secret_sealed = $2, previous_secret_sealed = $3,"
            " previous_secret_until = now() + make_interval(secs => $4), updated_at = now()"
            " WHERE id = $1 RETURNING *", webhook_id, new_sealed, previous_sealed, overlap_s))

    async def subscribers(self, connection: Connection, event_type: str,
                          project_ids: list[uuid.UUID] | None) -> list[asyncpg.Record]:
        """Active webhooks subscribed to `event_type` of these projects (None: of any
        project, for events that belong to none, such as user.registered, which only admins
        may subscribe to)."""
        return await connection.fetch(
            "SELECT id, project_id FROM webhooks WHERE active AND $1 = ANY(events)"
            " AND ($2::uuid[] IS NULL OR project_id = ANY($2::uuid[]))", event_type, project_ids)

    async def projects_of(self, connection: Connection, owner_id: str) -> list[uuid.UUID]:
        return [row["id"] for row in await connection.fetch(
            "SELECT id FROM projects WHERE user_id = $1", owner_id)]

    # --- deliveries ---------------------------------------------------------------------------

    async def add_deliveries(self, connection: Connection, deliveries: list[NewDelivery]
                             ) -> list[str]:
        """Record deliveries inside the caller's transaction; an event already recorded for a
        webhook is skipped (idempotent by event id). Returns the ids recorded now."""
        recorded = []
        for delivery in deliveries:
            row = await connection.fetchrow(
                "INSERT INTO webhook_deliveries (id, webhook_id, event_id, event_type, payload,"
                " next_attempt_at) VALUES ($1, $2, $3, $4, $5, now())"
                " ON CONFLICT (webhook_id, event_id) DO NOTHING RETURNING id",
                delivery.id, delivery.webhook_id, delivery.event_id, delivery.event_type,
                delivery.payload)
            if row is not None:
                recorded.append(row["id"])
        return recorded

    async def pending_again(self, connection: Connection, webhook_id: uuid.UUID,
                            delivery_id: str) -> int | None:
        """A delivery pending again, now (a redelivery a person asked for; its attempts stay
        in the log and numbering goes on); its attempts so far, or None if not found."""
        attempts: int | None = await connection.fetchval(
            "UPDATE webhook_deliveries SET status = 'pending', next_attempt_at = now()"
            " WHERE id = $1 AND webhook_id = $2 RETURNING attempts", delivery_id, webhook_id)
        return attempts

    async def delivery(self, webhook_id: uuid.UUID, delivery_id: str) -> asyncpg.Record | None:
        return await self.pool.fetchrow(
            "SELECT * FROM webhook_deliveries WHERE id = $1 AND webhook_id = $2",
            delivery_id, webhook_id)

    async def delivery_for_attempt(self, delivery_id: str) -> asyncpg.Record | None:
        """The delivery with what an attempt needs of its webhook."""
        return await self.pool.fetchrow(
            "SELECT d.*, w.url, w.active, w.secret_sealed, w.previous_secret_sealed,"
            " w.previous_secret_until > now() AS previous_secret_valid, w.project_id,"
            " w.failing_since, p.user_id AS owner_id"
            " FROM webhook_deliveries d JOIN webhooks w ON w.id = d.webhook_id"
            " JOIN projects p ON p.id = w.project_id WHERE d.id = $1", delivery_id)

    async def deliveries(self, webhook_id: uuid.UUID, *, status: str | None, page: int,
                         limit: int) -> tuple[list[asyncpg.Record], int]:
        rows = await self.pool.fetch(
            "SELECT *, count(*) OVER () AS total FROM webhook_deliveries WHERE webhook_id = $1"
            " AND ($2::text IS NULL OR status = $2) ORDER BY created_at DESC, id DESC"
            " LIMIT $3 OFFSET $4", webhook_id, status, limit, (page - 1) * limit)
        if rows:
            return rows, rows[0]["total"]
        return rows, await self.pool.fetchval(
            "SELECT count(*) FROM webhook_deliveries WHERE webhook_id = $1"
            " AND ($2::text IS NULL OR status = $2)", webhook_id, status)

    async def attempts(self, delivery_id: str) -> list[asyncpg.Record]:
        return await self.pool.fetch(
            "SELECT * FROM webhook_attempts WHERE delivery_id = $1 ORDER BY number",
            delivery_id)

    async def record_attempt(self, delivery_id: str, attempt: AttemptRecord, *,
                             delivered: bool, next_attempt_at: datetime | None,
                             disable_after_s: float) -> asyncpg.Record | None:
        """One attempt, the delivery's new state and the webhook's failing streak, in one
        transaction. Returns the webhook row when this attempt disabled it (every attempt
        failing for `disable_after_s`), else None. An attempt number already recorded (a
        redelivered job) changes nothing."""
        async with self.pool.acquire() as connection, connection.transaction():
            inserted = await connection.fetchval(
                "INSERT INTO webhook_attempts (delivery_id, number, at, status_code, error,"
                " duration_ms, answer) VALUES ($1, $2, $3, $4, $5, $6, $7)"
                " ON CONFLICT DO NOTHING RETURNING number",
                delivery_id, attempt.number, attempt.at, attempt.status_code, attempt.error,
                attempt.duration_ms, attempt.answer)
            if inserted is None:
                return None
            status = "delivered" if delivered else ("pending" if next_attempt_at else "failed")
            webhook_id = await connection.fetchval(
                "UPDATE webhook_deliveries SET status = $2, attempts = $3,"
                " last_status_code = $4, last_error = $5, last_attempt_at = $6,"
                " next_attempt_at = $7, duration_ms = $8 WHERE id = $1 RETURNING webhook_id",
                delivery_id, status, attempt.number, attempt.status_code, attempt.error,
                attempt.at, next_attempt_at, attempt.duration_ms)
            if delivered:
                await connection.execute(
                    "UPDATE webhooks SET failing_since = NULL WHERE id = $1", webhook_id)
                return None
            webhook = returned(await connection.fetchrow(
                "SELECT failing_since, active FROM webhooks WHERE id = $1 FOR UPDATE",
                webhook_id))
            failing_since = webhook["failing_since"] or attempt.at
            disable = webhook["active"] and (
                (attempt.at - failing_since).total_seconds() >= disable_after_s)
            if not disable:
                await connection.execute(
                    "UPDATE webhooks SET failing_since = $2 WHERE id = $1", webhook_id,
                    failing_since)
                return None
            return await connection.fetchrow(
                "UPDATE webhooks SET failing_since = $2, active = false, disabled_reason = $3,"
                " updated_at = now() WHERE id = $1 RETURNING *", webhook_id, failing_since,
                f"Every delivery attempt failed for {_duration(disable_after_s)}")



def _duration(seconds: float) -> str:
    if seconds >= 86400 and seconds % 86400 == 0:
        return f"{int(seconds // 86400)} days"
    if seconds >= 3600 and seconds % 3600 == 0:
        return f"{int(seconds // 3600)} hours"
    return f"{seconds:g} s"


def new_delivery_id() -> str:
    """`msg_` + 26 hex digits: unique, and safe in a header (Standard Webhooks' form)."""
    return f"msg_{uuid.uuid4().hex[:26]}"
