"""The transactional outbox: domain events written in the same PostgreSQL transaction as the
change they describe, then published to `gw.events` by a relay. A crash between the commit
and the publish loses nothing, and a rolled-back change publishes nothing.

Table (`OUTBOX_MIGRATIONS`, applied by each service beside its own migrations):
  event_outbox(id bigserial, routing_key text, body bytea, created_at timestamptz)
where `body` is the event's AMQP message body exactly as the event publisher sends it (one
event: `{"events": [<event>]}`, contracts.messages), so consumers see one format whichever
way an event came.

The relay, in each replica of a service: in one transaction it locks the oldest waiting rows
(`FOR UPDATE SKIP LOCKED`: replicas take different rows, none waits for another), publishes
each with publisher confirms, deletes them and commits. Guarantees:
- at least once: a row is deleted only after the broker confirmed its message; a crash after
  the confirm and before the commit publishes it again, so consumers deduplicate by the
  event's `eventId`;
- in order per relay batch, not globally (replicas publish concurrently);
- latency: the writer `nudge()`s its own replica's relay when it writes (inside its
  transaction: the relay looks at once and again `NUDGE_RECHECK_S` later, by when the
  commit is done), so an event leaves within milliseconds; other replicas' rows (and rows
  left by a crash) are found by a poll every `poll_interval_s`. PostgreSQL LISTEN/NOTIFY
  is not used: it does not survive PgBouncer's transaction pooling.

`DocumentOutboxRelay` gives MongoDB documents the same guarantee: the change's events ride in
the changed document itself (`outbox_entry`, one atomic single-document write).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import asyncpg
from bson import Binary

from contracts.logging import get_logger
from contracts.messages import DomainEvent, DomainEventType, Event, encode_events
from contracts.metrics import EVENTS_PUBLISHED
from contracts.mongo import Collection, Index
from contracts.postgres import Connection
from contracts.schemas.common import Answer
from contracts.tasks import stop_task
from contracts.timeutil import iso_now

NUDGE_RECHECK_S = 0.05

# (routing key, message body) published with confirms: `Broker.publish_confirmed`
ConfirmedPublish = Callable[[str, bytes], Awaitable[None]]

log = get_logger(__name__)

OUTBOX_MIGRATIONS = [("outbox_001_event_outbox", """
CREATE TABLE IF NOT EXISTS event_outbox (
    id          BIGSERIAL PRIMARY KEY,
    routing_key TEXT        NOT NULL,
    body        BYTEA       NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);
""")]


# What a change announces: its events, made from the changed row inside the change's
# transaction (`announce_in` writes them there).
Announce = Callable[[asyncpg.Record], Sequence[Event]]


def silent(_row: asyncpg.Record) -> Sequence[Event]:
    return ()


async def announce_in(connection: Connection, announce: Announce, row: asyncpg.Record) -> None:
    events = announce(row)
    if events:
        await add_to_outbox(connection, *events)


def domain_event(event_type: DomainEventType, data: Answer, *, project_id: object = None,
                 owner_id: str | None = None) -> DomainEvent:
    """A change's domain event: a new event id, now, and `data` as the API answers it."""
    return DomainEvent(event_id=str(uuid.uuid4()), type=event_type, timestamp=iso_now(),
                       project_id=None if project_id is None else str(project_id),
                       owner_id=owner_id, data=data.model_dump(mode="json"))


async def add_to_outbox(connection: Connection, *events: Event) -> None:
    """Record `events` for publishing; call inside the transaction of the change."""
    await connection.executemany(
        "INSERT INTO event_outbox (routing_key, body) VALUES ($1, $2)",
        [(str(event.ROUTING_KEY), encode_events([event])) for event in events])


class _Relay:
    """The loop both relays share: publish what waits, again at once while a whole batch was
    found, on a nudge (and once more `NUDGE_RECHECK_S` later), else every `poll_interval_s`;
    a failure (database or broker away) waits with back-off and loses nothing."""

    def __init__(self, publish: ConfirmedPublish, *, batch: int, poll_interval_s: float,
                 name: str) -> None:
        self._publish = publish
        self._batch = batch
        self._poll_interval_s = poll_interval_s
        self._name = name
        self._nudged = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=self._name)

    def nudge(self) -> None:
        """Something was just written: look now rather than at the next poll."""
        self._nudged.set()

    async def close(self) -> None:
        await stop_task(self._task)

    async def relay_once(self) -> int:
        """Publish one batch of what waits; how many rows or documents it held."""
        raise NotImplementedError

    async def _run(self) -> None:
        delay = 0.1
        recheck = False
        while True:
            nudged = self._nudged.is_set()
            self._nudged.clear()
            try:
                published = await self.relay_once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # database or broker away: the rows wait, nothing lost
                log.warning("outbox relay failed, will retry", relay=self._name,
                            error=repr(exc))
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            delay = 0.1
            if published == self._batch:
                continue  # more may wait
            # a nudge may come before its transaction commits: one more look a moment later
            recheck = nudged and not published and not recheck
            await self._wait(NUDGE_RECHECK_S if recheck else self._poll_interval_s)

    async def _wait(self, seconds: float) -> None:
        try:
            await asyncio.wait_for(self._nudged.wait(), seconds)
        except TimeoutError:
            pass


class OutboxRelay(_Relay):
    """Publishes the outbox's rows (see the module docstring); `start()` then `close()`."""

    def __init__(self, pool: asyncpg.Pool[asyncpg.Record], publish: ConfirmedPublish, *,
                 batch: int = 100, poll_interval_s: float = 1.0) -> None:
        super().__init__(publish, batch=batch, poll_interval_s=poll_interval_s,
                         name="outbox-relay")
        self._pool = pool

    async def relay_once(self) -> int:
        async with self._pool.acquire() as connection, connection.transaction():
            rows = await connection.fetch(
                "SELECT id, routing_key, body FROM event_outbox ORDER BY id LIMIT $1"
                " FOR UPDATE SKIP LOCKED", self._batch)
            for row in rows:
                await self._publish(row["routing_key"], bytes(row["body"]))
            if rows:
                await connection.execute("DELETE FROM event_outbox WHERE id = ANY($1::bigint[])",
                                         [row["id"] for row in rows])
        for row in rows:
            EVENTS_PUBLISHED.labels(row["routing_key"]).inc()
        return len(rows)


# --- the same guarantee for MongoDB documents --------------------------------------------

OUTBOX_FIELD = "outbox"
# For a real MongoDB (the local FerretDB creates only unique indexes, contracts.mongo): the
# relay's filter reads only the documents still announcing something.
OUTBOX_INDEX = Index(((OUTBOX_FIELD, 1),), "outbox_pending",
                     options={"partialFilterExpression": {OUTBOX_FIELD: {"$exists": True}}})


def outbox_entry(event: Event) -> dict[str, Any]:
    """`event` as an entry of a document's `outbox` array: written by the same
    single-document insert or update as the change (atomic without a transaction)."""
    return {"id": uuid.uuid4().hex, "key": str(event.ROUTING_KEY),
            "body": Binary(encode_events([event]))}


class DocumentOutboxRelay(_Relay):
    """Publishes the `outbox` entries of a collection's documents, then removes them (and the
    field once it is empty). MongoDB has no transaction over two documents without a replica
    set, so each changed document carries its own waiting events: the same guarantees as the
    table's (at least once; a crash between the write and the publish loses nothing), and
    two replicas' relays may both publish an entry (consumers deduplicate by `eventId`)."""

    def __init__(self, collection: Collection, publish: ConfirmedPublish, *,
                 batch: int = 100, poll_interval_s: float = 5.0) -> None:
        # the writers nudge, so the poll only finds entries a crash left: a slower one, since
        # the local FerretDB reads the whole collection for it
        super().__init__(publish, batch=batch, poll_interval_s=poll_interval_s,
                         name=f"outbox-relay-{collection.name}")
        self._collection = collection

    async def relay_once(self) -> int:
        documents = await self._collection.find(
            {OUTBOX_FIELD: {"$exists": True}}, {OUTBOX_FIELD: 1}).limit(self._batch) \
            .to_list(length=self._batch)
        for document in documents:
            entries = document[OUTBOX_FIELD]
            for entry in entries:
                await self._publish(entry["key"], bytes(entry["body"]))
            by_id = {"_id": document["_id"]}
            # only the entries published: an update may have added one meanwhile
            await self._collection.update_one(by_id, {"$pullAll": {OUTBOX_FIELD: entries}})
            await self._collection.update_one({**by_id, OUTBOX_FIELD: {"$size": 0}},
                                              {"$unset": {OUTBOX_FIELD: ""}})
            for entry in entries:
                EVENTS_PUBLISHED.labels(entry["key"]).inc()
        return len(documents)
