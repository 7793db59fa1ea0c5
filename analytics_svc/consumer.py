"""The consumer of `request.completed` on `analytics.requests`.

The messages the consumer holds at once (its prefetch) are folded together in one
transaction (analytics_svc.store): events of the same second from different messages share
most of their rows, so one upsert per row serves them all. Each message is acked after the
transaction that holds it committed; if it fails, every message in it fails and the consumer
retries them (the ledger makes a retry of an already folded event a no-op).
"""

from __future__ import annotations

import asyncio

from prometheus_client import Counter

from analytics_svc.store import RollupStore
from contracts.messages import RequestCompleted
from contracts.tasks import stop_task

EVENTS_FOLDED = Counter(
    "analytics_events_folded_total",
    "Gateway events folded into the rollups (new) or skipped as already folded (duplicate)",
    ["outcome"])

# Events folded in one transaction at most (several messages of up to 500).
MAX_EVENTS_PER_FOLD = 5000

Waiting = tuple[list[RequestCompleted], asyncio.Future[None]]


class RollupWriter:
    def __init__(self, store: RollupStore) -> None:
        self._store = store
        self._waiting: asyncio.Queue[Waiting] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._fold_forever(), name="rollup-writer")

    async def close(self) -> None:
        await stop_task(self._task)

    async def on_requests(self, events: list[RequestCompleted]) -> None:
        """Return once these events are committed (raise if their transaction failed)."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        await self._waiting.put((events, done))
        await done

    async def _fold_forever(self) -> None:
        while True:
            batch = [await self._waiting.get()]
            count = len(batch[0][0])
            while count < MAX_EVENTS_PER_FOLD and not self._waiting.empty():
                batch.append(self._waiting.get_nowait())
                count += len(batch[-1][0])
            try:
                folded = await self._store.fold([e for events, _ in batch for e in events])
            except Exception as exc:
                for _, done in batch:
                    if not done.done():
                        done.set_exception(exc)
                continue
            EVENTS_FOLDED.labels("new").inc(folded.new)
            if folded.duplicates:
                EVENTS_FOLDED.labels("duplicate").inc(folded.duplicates)
            for _, done in batch:
                if not done.done():
                    done.set_result(None)
