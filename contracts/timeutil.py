"""Time formats of the wire contract (docs/api.md section 1.1)."""

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
    # the year by hand: strftime's %Y does not pad years below 1000 (glibc), and the contract
    # has four digits from 0001 to 9999
    return (f"{moment.year:04d}" + moment.strftime("-%m-%dT%H:%M:%S.")
            + f"{moment.microsecond // 1000:03d}Z")


_second_prefix: tuple[int, str] = (-1, "")


def iso_of_unix(seconds: float) -> str:
    """`to_iso` of a Unix time, without building a datetime: the prefix up to the second is
    formatted once per second (the gateway stamps every request with it)."""
    global _second_prefix
    whole = int(seconds)
    micros = round((seconds - whole) * 1_000_000)  # as datetime.fromtimestamp rounds
    if micros >= 1_000_000:
        whole, micros = whole + 1, micros - 1_000_000
    cached_second, prefix = _second_prefix
    if whole != cached_second:
        prefix = time.strftime("%Y-%m-%dT%H:%M:%S.", time.gmtime(whole))
        _second_prefix = (whole, prefix)
    return f"{prefix}{micros // 1000:03d}Z"


def parse_iso(value: str) -> datetime:
    """An ISO-8601 moment as an aware UTC datetime (a value without an offset is UTC)."""
    moment = datetime.fromisoformat(value)
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def now_ms() -> int:
    return int(time.time() * 1000)
