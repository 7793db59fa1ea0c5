"""Typed messages for tests, built one way everywhere."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from contracts.messages import RequestCompleted, RequestError
from contracts.timeutil import to_iso
from contracts.tracing import new_trace_id


def request_completed(index: int = 0, **overrides) -> RequestCompleted:
    """A gateway event with a fresh request id and trace id; every 7th one (index 0
    included) is a 503."""
    fields = dict(
        request_id=str(uuid.uuid4()), timestamp=to_iso(datetime.now(UTC)), method="GET",
        path=f"/things/{index}", route="/things/:id", status_code=200 if index % 7 else 503,
        latency=1.5, ip="127.0.0.1", user_id="u-1", api_key_id=None, project_id=None,
        owner_id=None, user_agent="test", content_length=0,
        error=None if index % 7 else RequestError("INTERNAL", "Service Unavailable"),
        trace_id=new_trace_id())
    fields.update(overrides)
    return RequestCompleted(**fields)


def random_traffic(rng, count: int, *, end: datetime, span_s: float,
                   tenants: int = 4) -> list[RequestCompleted]:
    """Mixed gateway traffic over [end - span_s, end): tenant i (user `u<i>`) owns project
    `p<i>`; callers use their own project, another tenant's, an API key alone (no userId) or
    no project at all; some requests match no route; latencies spread over 4 decades."""
    from datetime import timedelta

    events = []
    statuses = (200, 200, 200, 201, 204, 301, 400, 401, 404, 429, 500, 503)
    for index in range(count):
        owner = rng.randrange(tenants)
        caller = rng.choice([owner, owner, rng.randrange(tenants), None])
        with_project = rng.random() < 0.8
        moment = end - timedelta(seconds=rng.random() * span_s)
        route = rng.choice(["/orders", "/orders/:id", "/users/:id", None])
        status = rng.choice(statuses)
        events.append(request_completed(
            index, timestamp=to_iso(moment), method=rng.choice(["GET", "GET", "POST"]),
            route=route, path=(route or "/random").replace(":id", str(index)),
            status_code=status, latency=round(rng.lognormvariate(3, 1.2), 3),
            user_id=f"u{caller}" if caller is not None else None,
            api_key_id=f"k{owner}" if caller is None else None,
            project_id=f"p{owner}" if with_project else None,
            owner_id=f"u{owner}" if with_project else None,
            error=RequestError("CLIENT_ERROR" if status < 500 else "INTERNAL", "x")
            if status >= 400 else None))
    return events
