"""The MongoDB connection every service that stores documents shares (PyMongo's asyncio API,
`AsyncMongoClient`; docs/architecture.md section 4), and index creation at service start.

Locally the server is FerretDB 1.24 on SQLite (docs/architecture.md sections 5 and 7):
single-document writes and unique indexes are safe there; multi-document writes are not
atomic, sorts and counts run in memory over the whole collection, and only `_id` equality
reaches SQL, so hot lookups go by a derived `_id`. Read in its source and measured (20,000
log entries: 7,600 inserts/s without secondary indexes, 4,500/s with six): it never uses a
secondary index for a query and has no TTL indexes, so there only unique indexes are created
(they enforce something); real MongoDB gets every index.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeAlias

from bson import ObjectId
from pymongo import AsyncMongoClient
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import PyMongoError

from contracts.logging import get_logger

log = get_logger(__name__)

DUPLICATE_KEY = 11000

# Documents as the client hands them out (its default document class); the stores read their
# fields by name.
Document: TypeAlias = dict[str, Any]
Collection: TypeAlias = AsyncCollection[Document]


@dataclass(frozen=True)
class Index:
    keys: tuple[tuple[str, int], ...]
    name: str
    unique: bool = False
    options: dict[str, Any] = field(default_factory=dict)  # passed to create_index as they are


@dataclass
class Mongo:
    client: AsyncMongoClient[Document]
    db: AsyncDatabase[Document]
    ferretdb: bool  # the local stand-in (buildInfo names its version)

    async def close(self) -> None:
        await self.client.close()

    async def ensure_indexes(self, collection: Collection,
                             indexes: tuple[Index, ...]) -> None:
        """Create what is missing (on FerretDB: only unique indexes, see above)."""
        for index in indexes:
            if self.ferretdb and not index.unique:
                continue
            await collection.create_index(list(index.keys), name=index.name,
                                          unique=index.unique, **index.options)


async def open_mongo(url: str, database: str, *, app_name: str,
                     give_up_after_s: float = 60.0) -> Mongo:
    """Connect (timezone-aware datetimes, majority writes) and wait until the server answers:
    a service that starts before its database retries rather than failing its first call."""
    client: AsyncMongoClient[Document] = AsyncMongoClient(
        url, tz_aware=True, appname=app_name, serverSelectionTimeoutMS=5000,
        connectTimeoutMS=3000, w="majority")
    started = time.monotonic()
    delay = 0.2
    while True:
        try:
            build = await client.admin.command("buildInfo")
            break
        except PyMongoError as exc:
            if time.monotonic() - started > give_up_after_s:
                await client.close()
                raise
            log.warning("MongoDB not reachable yet, retrying", error=repr(exc))
            await asyncio.sleep(delay)
            delay = min(delay * 2, 3.0)
    return Mongo(client, client[database], ferretdb="ferretdbVersion" in build)


def inclusive_range(since: datetime | None, until: datetime | None) -> dict[str, datetime]:
    """The condition of a field between two optional inclusive bounds ({} when unbounded)."""
    bounds: dict[str, datetime] = {}
    if since is not None:
        bounds["$gte"] = since
    if until is not None:
        bounds["$lte"] = until
    return bounds


def derived_id(*parts: str) -> ObjectId:
    """A stable ObjectId for a natural key, so a redelivered write hits the same `_id` (a
    duplicate key, i.e. already stored) and lookups by the key are `_id` lookups."""
    digest = hashlib.sha256("\x1f".join(parts).encode()).digest()
    return ObjectId(digest[:12])
