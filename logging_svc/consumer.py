"""The consumer of `request.completed` on `logging.requests`: one message (up to 500 events)
is one batch write; the consumer acks only after this returned, i.e. after the server
acknowledged the write. A redelivered event has an id already stored: stored nothing (an
event already past the retention is not stored either)."""

from __future__ import annotations

from prometheus_client import Counter

from contracts.messages import RequestCompleted
from logging_svc.entries import LogRecord, LogStore

LOG_ENTRIES_STORED = Counter(
    "log_entries_stored_total", "Log entries written (new) or found already stored (duplicate)",
    ["source", "outcome"])


class RequestLogWriter:
    def __init__(self, store: LogStore) -> None:
        self._store = store

    async def on_requests(self, events: list[RequestCompleted]) -> None:
        stored = await self._store.store_once(
            [LogRecord.of_event(event) for event in events])
        LOG_ENTRIES_STORED.labels("gateway", "new").inc(stored)
        if stored < len(events):
            LOG_ENTRIES_STORED.labels("gateway", "duplicate").inc(len(events) - stored)
