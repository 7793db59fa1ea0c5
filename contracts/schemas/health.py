"""The health answers (docs/api.md section 10): the gateway's deep `/health`, and `/livez` and
`/readyz`, which every process answers."""

from __future__ import annotations

from typing import Literal

from pydantic import MISSING

from contracts.schemas.common import Answer


class Probe(Answer):
    """One service's or dependency's state: `latency` (ms) when it answered, `error` when not."""

    name: str
    status: Literal["ok", "error"]
    latency: float | MISSING = MISSING
    error: str | MISSING = MISSING


class Health(Answer):
    status: Literal["ok", "degraded"]
    service: str
    timestamp: str
    uptime: float
    services: list[Probe]
    dependencies: list[Probe]


class Live(Answer):
    """`/livez`: the process answers (nothing else is asked)."""

    status: Literal["ok"]


class Ready(Answer):
    """`/readyz`: whether the process should be sent new work. `starting` until it serves
    everything it declares and `draining` after SIGTERM (no check is run in either),
    `unavailable` when a check failed; `checks` lists what was asked."""

    status: Literal["ok", "starting", "draining", "unavailable"]
    checks: list[Probe]
