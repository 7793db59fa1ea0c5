"""Stopping a process's background task (a consumer loop, a ticker, a pruner) at shutdown."""

from __future__ import annotations

import asyncio


async def stop_task(task: asyncio.Task[object] | None) -> None:
    """Cancel `task` and wait until it has ended; whatever it ended with is not raised here
    (shutdown goes on)."""
    if task is not None:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
