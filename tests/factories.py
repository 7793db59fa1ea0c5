"""Typed messages for tests, built one way everywhere."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from contracts.messages import RequestCompleted, RequestError
from contracts.timeutil import to_iso


def request_completed(index: int = 0, **overrides) -> RequestCompleted:
    """A gateway event with a fresh request id; every 7th one (index 0 included) is a 503."""
    fields = dict(
        request_id=str(uuid.uuid4()), timestamp=to_iso(datetime.now(UTC)), method="GET",
        path=f"/things/{index}", route="/things/:id", status_code=200 if index % 7 else 503,
        latency=1.5, ip="127.0.0.1", user_id="u-1", api_key_id=None, project_id=None,
        owner_id=None, user_agent="test", content_length=0,
        error=None if index % 7 else RequestError("INTERNAL", "Service Unavailable"))
    fields.update(overrides)
    return RequestCompleted(**fields)
