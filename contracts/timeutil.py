"""Time formats of the wire contract (API.md section 1.1)."""

from __future__ import annotations

import time
from datetime import UTC, datetime


def iso_now() -> str:
    return to_iso(datetime.now(UTC))


def to_iso(moment: datetime) -> str:
    """ISO-8601 UTC with milliseconds and `Z`, e.g. 2026-05-10T00:00:00.000Z."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def now_ms() -> int:
    return int(time.time() * 1000)
