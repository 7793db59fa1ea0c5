"""Events of one test on the real broker: numbered request.completed events and reading them
back from a queue (tests/integration/test_events.py, test_outbox.py)."""

from __future__ import annotations

import asyncio

from contracts.messages import RequestCompleted, decode_events

AT = "2026-05-10T00:00:00.000Z"


def completed(unique: str, i: int) -> RequestCompleted:
    """A request.completed event of this test, numbered `i` (in its request id)."""
    return RequestCompleted(
        request_id=f"{unique}-{i}", timestamp=AT, method="GET", path=f"/{unique}",
        route=None, status_code=200, latency=1.0, ip="127.0.0.1", user_id=None,
        api_key_id=None, project_id=None, owner_id=None, user_agent="tests",
        content_length=0, error=None)


def numbers(unique: str, events: list) -> list[int]:
    """The numbers of this test's events among `events`, in order."""
    prefix = f"{unique}-"
    return [int(e.request_id.removeprefix(prefix)) for e in events
            if isinstance(e, RequestCompleted) and e.request_id.startswith(prefix)]




async def drain(queue, unique: str, expected: int, within_s: float = 20.0) -> list[int]:
    """Read event batches from `queue` until at least `expected` distinct events of this test
    arrived and the queue is empty; their numbers in order (redelivered duplicates are kept,
    so callers can see them)."""
    found: list[int] = []
    loop = asyncio.get_running_loop()
    until = loop.time() + within_s
    while loop.time() < until:
        message = await queue.get(fail=False)
        if message is None:
            if len(set(found)) >= expected:
                break
            await asyncio.sleep(0.05)
            continue
        batch = decode_events(message.routing_key, message.body)
        assert batch.malformed == []
        found.extend(numbers(unique, batch.events))
        await message.ack()
    return found
