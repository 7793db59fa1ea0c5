"""The consumer of `request.completed` on `analytics.requests`: each message is folded into
the rollups in one transaction (analytics_svc.store); the consumer acks after it committed."""

from __future__ import annotations

from prometheus_client import Counter

from analytics_svc.store import RollupStore
from contracts.messages import RequestCompleted

EVENTS_FOLDED = Counter(
    "analytics_events_folded_total",
    "Gateway events folded into the rollups (new) or skipped as already folded (duplicate)",
    ["outcome"])


class RollupWriter:
    def __init__(self, store: RollupStore) -> None:
        self._store = store

    async def on_requests(self, events: list[RequestCompleted]) -> None:
        folded = await self._store.fold(events)
        EVENTS_FOLDED.labels("new").inc(folded.new)
        if folded.duplicates:
            EVENTS_FOLDED.labels("duplicate").inc(folded.duplicates)
