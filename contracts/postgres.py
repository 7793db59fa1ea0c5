"""What the PostgreSQL stores of every service share, for their types: the connection a helper
runs its statements on, and the row of a statement that always returns one."""

from __future__ import annotations

from typing import TypeAlias

import asyncpg
from asyncpg.pool import PoolConnectionProxy

# `pool.acquire()` hands out a proxy, which asyncpg's types do not count as a Connection; a
# helper that runs statements inside a caller's transaction takes either.
Connection: TypeAlias = (
    "asyncpg.Connection[asyncpg.Record] | PoolConnectionProxy[asyncpg.Record]")


class NoRowReturned(LookupError):
    """A statement that returns a row whenever it runs returned none."""


def returned(row: asyncpg.Record | None) -> asyncpg.Record:
    """The row of a statement that returns one whenever it runs (an `INSERT ... RETURNING`,
    an UPDATE or a SELECT of a row read just before): asyncpg types every `fetchrow` as
    optional. None there means the row went away under the statement, an error."""
    if row is None:
        raise NoRowReturned("the statement returned no row")
    return row
