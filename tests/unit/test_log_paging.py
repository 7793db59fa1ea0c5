"""logging_svc.paging: cursors are opaque, tamper-evident and bound to their query and
caller; the depth cap; totals capped at 10,000 (a store of fake entries in memory: pure)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from contracts.errors import ValidationError
from contracts.identity import Caller, Role
from logging_svc.entries import Found, LogFilter, Position
from logging_svc.paging import MAX_DEPTH, Continuation, Cursors, page_of, scope_of

ALICE = Caller("alice", "alice@example.com", Role.DEVELOPER)
BOB = Caller("bob", "bob@example.com", Role.DEVELOPER)
T0 = datetime(2026, 12, 1, tzinfo=UTC)


def test_a_cursor_reads_back_what_it_was_issued_with():
    cursors = Cursors(b"k" * 32)
    continuation = Continuation(Position(T0 + timedelta(microseconds=123), b"\x01" * 16),
                                1234, True)
    scope = scope_of(ALICE, LogFilter(user_id="x"))
    token = cursors.issue(continuation, scope)
    assert cursors.read(token, scope) == continuation
    assert "=" not in token and len(token) < 100


@pytest.mark.parametrize("other", [
    scope_of(BOB, LogFilter(user_id="x")), scope_of(ALICE, LogFilter(user_id="y")),
    scope_of(ALICE, LogFilter(user_id="x", errors_only=True)),
    scope_of(Caller("alice", "alice@example.com", Role.ADMIN), LogFilter(user_id="x"))])
def test_a_cursor_belongs_to_its_caller_and_query(other):
    cursors = Cursors(b"k" * 32)
    token = cursors.issue(Continuation(Position(T0, b"\x02" * 12), 5, True),
                          scope_of(ALICE, LogFilter(user_id="x")))
    with pytest.raises(ValidationError) as refused:
        cursors.read(token, other)
    assert refused.value.details[0]["field"] == "cursor"


def test_every_altered_byte_and_another_key_are_refused():
    scope = scope_of(ALICE, LogFilter())
    token = Cursors(b"k" * 32).issue(Continuation(Position(T0, b"\x03" * 16), 7, False), scope)
    for index in range(len(token)):
        changed = token[:index] + ("A" if token[index] != "A" else "B") + token[index + 1:]
        with pytest.raises(ValidationError):
            Cursors(b"k" * 32).read(changed, scope)
    with pytest.raises(ValidationError):
        Cursors(b"j" * 32).read(token, scope)
    for junk in ("", "!!!", "AAAA", "A" * 199):
        with pytest.raises(ValidationError):
            Cursors(b"k" * 32).read(junk, scope)


class Listed:
    """A LogStore's read side over `count` entries, one second apart, newest first."""

    def __init__(self, count: int) -> None:
        self.items = [Found(Position(T0 - timedelta(seconds=i), i.to_bytes(16, "big")),
                            {"n": i}) for i in range(count)]
        self.counted = 0

    async def newest(self, caller, where, *, after, skip, limit):
        items = [f for f in self.items if after is None or f.position < after]
        return items[skip:skip + limit]

    async def count(self, caller, where, *, up_to):
        self.counted += 1
        return min(len(self.items), up_to)


async def test_totals_stop_at_the_cap_and_cursors_carry_them():
    store, cursors = Listed(MAX_DEPTH + 5), Cursors(b"k" * 32)
    first = await page_of(store, cursors, ALICE, LogFilter(), page=None, limit=100,
                          cursor=None)
    assert (first["total"], first["totalExact"], first["page"]) == (MAX_DEPTH, False, 1)
    following = await page_of(store, cursors, ALICE, LogFilter(), page=None, limit=100,
                              cursor=first["nextCursor"])
    assert following["entries"][0] == {"n": 100} and following["page"] is None
    assert (following["total"], following["totalExact"], store.counted) == \
        (MAX_DEPTH, False, 1)  # not counted again
    with pytest.raises(ValidationError):
        await page_of(store, cursors, ALICE, LogFilter(), page=101, limit=100, cursor=None)


async def test_a_short_first_page_is_its_own_total():
    store = Listed(3)
    answer = await page_of(store, Cursors(b"k" * 32), ALICE, LogFilter(), page=None,
                           limit=20, cursor=None)
    assert (answer["total"], answer["totalExact"], answer["nextCursor"], store.counted) == \
        (3, True, None, 0)
