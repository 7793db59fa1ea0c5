"""The decode rows of `make bench` (issue 21 item 3: one validation library, pydantic, for
broker messages and HTTP bodies alike), also runnable alone: `python bench/decode.py`.

CPU only, in this process, before the stack starts. Every row is a callable timed against a
baseline callable measured in the same run, the two interleaved call by call so both see the
same machine; BENCH_DECODE_ROUNDS (default 200) calls each after 20 untimed ones, the median
per call, and the ratio measured / baseline:

- decode: one message of 500 `request.completed` events (as the gateway publishes them, every
  7th with an error) through `decode_events`, against `orjson.loads` of the same bytes alone
  (what any decoder has to do at least);
- decode, one event malformed: the same message with its last event's statusCode out of
  range, which `decode_events` sets apart event by event (the dead-letter path);
- encode: the 500 events through `encode_events`, against `orjson.dumps` of the same events
  as plain dicts;
- HTTP: one route config body and one `POST /logs/batch` body of 500 entries validated as the
  gateway's validator step does (pydantic models, every rule, the wire form sent on), against
  `orjson.loads` of the same bytes (no target: figures for the choice of library).

Target: decode and encode of 500 events within 5 ms (10 µs an event, a tenth of the 100 µs an
event may take in a consumer at the 10,000 events/s ingest target, bench/logs.py); none for
the malformed row.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import orjson

from contracts.messages import (
    RequestCompleted,
    RequestError,
    decode_events,
    encode_events,
)
from contracts.names import RoutingKey
from contracts.schemas.logs import MAX_BATCH, LogIngest
from contracts.schemas.projects import RouteBody
from contracts.validation import load, load_list

ROUNDS = int(os.environ.get("BENCH_DECODE_ROUNDS", "200"))
WARM_UP = 20
EVENTS = 500
TARGET_MS = 5.0  # per 500 events

Row = tuple[str, Callable[[], object], Callable[[], object]]  # label, measured, baseline
Checks = list[tuple[str, bool]]


def say(text: str = "") -> None:
    print(text, flush=True)


def verdict(ok: bool) -> str:
    return "met" if ok else "MISSED"


def events(count: int = EVENTS) -> list[RequestCompleted]:
    """Gateway events as they come: ids, ISO timestamps, routes and user agents of real
    lengths, every 7th one a 503 with its error."""
    error = RequestError("INTERNAL", "Service Unavailable")
    return [RequestCompleted(
        request_id=str(uuid.UUID(int=index, version=4)),
        timestamp=f"2026-05-10T12:{index // 60 % 60:02d}:{index % 60:02d}.{index % 1000:03d}Z",
        method="GET" if index % 3 else "POST", path=f"/shop/items/{index}?page={index % 5}",
        route="/shop/items/:id", status_code=503 if index % 7 == 0 else 200,
        latency=round(1.5 + index * 0.137, 3), ip="10.0.0.7", user_id=f"user-{index % 20:02d}",
        api_key_id=None, project_id=f"project-{index % 10:02d}",
        owner_id=f"user-{index % 7:02d}",
        user_agent="Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko)",
        content_length=index % 400, error=error if index % 7 == 0 else None)
        for index in range(count)]


def timed(rows: list[Row]) -> list[tuple[str, float, float]]:
    """(label, median ms of the measured callable, median ms of its baseline) of each row."""
    measured = []
    for label, call, baseline in rows:
        for _ in range(WARM_UP):
            call()
            baseline()
        ours: list[float] = []
        theirs: list[float] = []
        for _ in range(ROUNDS):
            for fn, into in ((call, ours), (baseline, theirs)):
                started = time.perf_counter()
                fn()
                into.append((time.perf_counter() - started) * 1000)
        measured.append((label, statistics.median(ours), statistics.median(theirs)))
    return measured


def print_rows(rows: list[Row]) -> list[tuple[str, float, float]]:
    say(f"  {'row':56} {'ms':>7} {'baseline ms':>12} {'x baseline':>11}")
    measured = timed(rows)
    for label, ms, baseline_ms in measured:
        say(f"  {label:56} {ms:7.3f} {baseline_ms:12.3f} {ms / baseline_ms:11.2f}")
    return measured


def broker_rows() -> list[Row]:
    batch = events()
    body = encode_events(batch)
    last = orjson.loads(body)["events"][-1]
    one_bad = body.replace(orjson.dumps(last), orjson.dumps({**last, "statusCode": 600}))
    assert len(decode_events(RoutingKey.REQUEST_COMPLETED, one_bad).malformed) == 1
    plain = [event.to_wire() for event in batch]
    key = RoutingKey.REQUEST_COMPLETED
    return [
        (f"decode_events, {EVENTS} events vs orjson.loads",
         lambda: decode_events(key, body), lambda: orjson.loads(body)),
        (f"decode_events, {EVENTS} events, 1 malformed vs orjson.loads",
         lambda: decode_events(key, one_bad), lambda: orjson.loads(one_bad)),
        (f"encode_events, {EVENTS} events vs orjson.dumps of dicts",
         lambda: encode_events(batch), lambda: orjson.dumps({"events": plain})),
    ]


# --- HTTP bodies ---------------------------------------------------------------------------------
# The HTTP side's rows go here: request body validation on the gateway's hot path
# (contracts.validation) against its baseline, e.g. orjson.loads of the same body.


def http_rows() -> list[Row]:
    """Request validation as the gateway's validator step does it (`load`/`load_list` and the
    wire form the RPC forwarder sends), against `orjson.loads` of the same body."""
    route = orjson.dumps({"path": "/orders/:id", "method": "GET",
                          "upstreamUrl": "http://127.0.0.1:8080/orders", "rateLimit": 100,
                          "cacheTTL": 30, "authRequired": True, "unknown": "dropped"})
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    batch = orjson.dumps([
        {"requestId": str(uuid.uuid4()), "timestamp": now, "method": "POST",
         "path": f"/api/orders/{index}", "statusCode": 500 if index % 7 == 0 else 200,
         "latency": 12.5, "ip": "10.0.0.1", "userAgent": "bench",
         "error": {"code": "E", "message": "failed"} if index % 7 == 0 else None}
        for index in range(EVENTS)])
    return [
        ("route config body (POST .../routes) vs orjson.loads",
         lambda: load(RouteBody, orjson.loads(route), "body").wire(),
         lambda: orjson.loads(route)),
        (f"log batch body, {EVENTS} entries (POST /logs/batch) vs orjson.loads",
         lambda: [entry.wire() for entry in load_list(
             LogIngest, orjson.loads(batch), "body", MAX_BATCH)],
         lambda: orjson.loads(batch)),
    ]


def rows(checks: Checks) -> None:
    """The decode part of `make bench`: every row, then the targets into `checks`."""
    say(f"\ndecode/encode with pydantic, CPU only: median ms of {ROUNDS} calls each, "
        "interleaved with its baseline's")
    decode, _malformed, encode, *_http = print_rows(broker_rows() + http_rows())
    for label, ms, _baseline_ms in (decode, encode):
        text = f"{label.split(' vs ')[0]} <= {TARGET_MS:.0f} ms: {ms:.2f} ms"
        say(f"  {verdict(ms <= TARGET_MS):6}  {text}")
        checks.append((text, ms <= TARGET_MS))
    say("  (malformed row: no target; that rare path decodes again, event by event)")


def main() -> int:
    checks: Checks = []
    rows(checks)
    return 0 if all(ok for _text, ok in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
