"""Paging of `GET /logs` and `/logs/errors` that stays cheap at any depth (docs/api.md section 7.2,
"Paging at scale"), for any LogStore.

- `total` is exact up to MAX_DEPTH and then reported as MAX_DEPTH with `totalExact: false`
  (as Elasticsearch's `track_total_hits`): counting a busy tenant's every match would cost a
  scan of all of them for each page.
- `page * limit` may not exceed MAX_DEPTH: an offset costs the rows it skips.
- Every answer carries `nextCursor` (null on the last page). It holds the position of the
  page's last entry, so the next page is a range scan from there, as cheap as page 1 at any
  depth and stable while new entries arrive, and it carries the total of the first answer
  (not counted again). It is opaque and tamper-evident: an HMAC over its content, the query's
  filters and the caller binds it, so a forged or altered one, or one used with other
  filters or by someone else, is refused and can never widen what a caller sees.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import math
import struct
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from contracts.errors import ValidationError
from contracts.identity import Caller
from logging_svc.entries import LogFilter, LogStore, Position

MAX_DEPTH = 10_000
_VERSION = 1
_HEAD = struct.Struct(">BqIB")  # version, position µs since the epoch, total, exact
_MAC_BYTES = 16
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def depth_error() -> ValidationError:
    return ValidationError(details=[{
        "field": "page", "location": "query", "code": "too_big",
        "message": f"page * limit may not exceed {MAX_DEPTH}; to read further, follow "
                   "nextCursor with the cursor parameter"}])


def cursor_error(reason: str) -> ValidationError:
    return ValidationError(details=[{"field": "cursor", "location": "query", "code": "custom",
                                     "message": reason}])


@dataclass(frozen=True)
class Continuation:
    """What a cursor says: where the next page starts and the total the first page had."""

    after: Position
    total: int
    exact: bool


class Cursors:
    """Signs and reads cursors with a key of the logging service's own."""

    def __init__(self, key: bytes) -> None:
        self._key = key

    def _mac(self, content: bytes, scope: bytes) -> bytes:
        return hmac.new(self._key, content + scope, hashlib.sha256).digest()[:_MAC_BYTES]

    def issue(self, continuation: Continuation, scope: bytes) -> str:
        position = continuation.after
        micros = (position.timestamp - _EPOCH) // timedelta(microseconds=1)
        content = _HEAD.pack(_VERSION, micros, continuation.total, continuation.exact) + \
            position.key
        return base64.urlsafe_b64encode(content + self._mac(content, scope)).decode() \
            .rstrip("=")

    def read(self, token: str, scope: bytes) -> Continuation:
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        except (binascii.Error, ValueError):
            raise cursor_error("Invalid cursor") from None
        if base64.urlsafe_b64encode(raw).decode().rstrip("=") != token:
            raise cursor_error("Invalid cursor")  # one spelling per cursor (unused bits)
        content, mac = raw[:-_MAC_BYTES], raw[-_MAC_BYTES:]
        if len(content) <= _HEAD.size or not hmac.compare_digest(mac,
                                                                  self._mac(content, scope)):
            raise cursor_error("Invalid cursor, or one of another query or caller")
        version, micros, total, exact = _HEAD.unpack_from(content)
        if version != _VERSION:
            raise cursor_error("Invalid cursor")
        return Continuation(Position(_EPOCH + timedelta(microseconds=micros),
                                     content[_HEAD.size:]), total, bool(exact))


def scope_of(caller: Caller, where: LogFilter) -> bytes:
    """Whom and which query a cursor belongs to."""
    return f"{caller.user_id}\x1f{caller.role}\x1f".encode() + where.fingerprint()


async def page_of(store: LogStore, cursors: Cursors, caller: Caller, where: LogFilter, *,
                  page: int | None, limit: int, cursor: str | None) -> dict[str, Any]:
    """The wire answer: `{entries, total, totalExact, page, limit, totalPages, nextCursor}`."""
    scope = scope_of(caller, where)
    if cursor is not None:
        if page is not None:
            raise cursor_error("cursor and page cannot be used together")
        continuation = cursors.read(cursor, scope)
        found = await store.newest(caller, where, after=continuation.after, skip=0,
                                   limit=limit + 1)
        total, exact = continuation.total, continuation.exact
    else:
        page = page or 1
        if page * limit > MAX_DEPTH:
            raise depth_error()
        found = await store.newest(caller, where, after=None, skip=(page - 1) * limit,
                                   limit=limit + 1)
        if page == 1 and len(found) <= limit:
            total = len(found)  # the whole answer is on this page: nothing more to count
        else:
            total = await store.count(caller, where, up_to=MAX_DEPTH + 1)
        exact = total <= MAX_DEPTH
        total = min(total, MAX_DEPTH)
    more = len(found) > limit
    found = found[:limit]
    next_cursor = cursors.issue(Continuation(found[-1].position, total, exact), scope) \
        if more else None
    return {"entries": [item.entry for item in found], "total": total, "totalExact": exact,
            "page": page if cursor is None else None, "limit": limit,
            "totalPages": math.ceil(total / limit), "nextCursor": next_cursor}


def cursor_key(secret: str) -> bytes:
    """The logging service's cursor key, derived from a secret every process has (a key of
    its own: a cursor MAC can never be mistaken for a token signature)."""
    return hmac.new(secret.encode(), b"gateway log cursor v1", hashlib.sha256).digest()
