"""The gateway's health answer (docs/api.md section 10)."""

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
