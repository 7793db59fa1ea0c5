"""The MongoDB connection every service that stores documents shares (PyMongo's asyncio API,
`AsyncMongoClient`; DESIGN.md section 4), and index creation at service start.

Locally the server is FerretDB 1.24 on SQLite (DESIGN.md sections 5 and 7): single-document
writes and unique indexes are safe there; multi-document writes are not atomic and only
`_id` equality is pushed down to SQL, so hot lookups go by a derived `_id`.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from dataclasses import dataclass, field

from bson import ObjectId
from pymongo import AsyncMongoClient
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import OperationFailure, PyMongoError

from contracts.logging import get_logger

log = get_logger(__name__)

DUPLICATE_KEY = 11000


@dataclass(frozen=True)
class Index:
    keys: tuple[tuple[str, int], ...]
    name: str
    unique: bool = False
    options: dict[str, object] = field(default_factory=dict)


@dataclass
class Mongo:
    client: AsyncMongoClient
    db: AsyncDatabase

    async def close(self) -> None:
        await self.client.close()


async def open_mongo(url: str, database: str, *, app_name: str,
                     give_up_after_s: float = 60.0) -> Mongo:
    """Connect (timezone-aware datetimes, majority writes) and wait until the server answers:
    a service that starts before its database retries rather than failing its first call."""
    client: AsyncMongoClient = AsyncMongoClient(
        url, tz_aware=True, appname=app_name, serverSelectionTimeoutMS=5000,
        connectTimeoutMS=3000, w="majority")
    started = time.monotonic()
    delay = 0.2
    while True:
        try:
            await client.admin.command("ping")
            break
        except PyMongoError as exc:
            if time.monotonic() - started > give_up_after_s:
                await client.close()
                raise
            log.warning("MongoDB not reachable yet, retrying", error=repr(exc))
            await asyncio.sleep(delay)
            delay = min(delay * 2, 3.0)
    return Mongo(client, client[database])


async def ensure_indexes(collection: AsyncCollection, indexes: tuple[Index, ...]) -> None:
    """Create what is missing. An option the server refuses (FerretDB has no TTL indexes) is
    logged and the index is created without it; the caller covers that duty otherwise."""
    for index in indexes:
        try:
            await collection.create_index(list(index.keys), name=index.name,
                                          unique=index.unique, **index.options)
        except OperationFailure as exc:
            if not index.options:
                raise
            log.info("index option not supported here; creating the index without it",
                     index=index.name, options=sorted(index.options), error=str(exc))
            await collection.create_index(list(index.keys), name=index.name,
                                          unique=index.unique)


def derived_id(*parts: str) -> ObjectId:
    """A stable ObjectId for a natural key, so a redelivered write hits the same `_id` (a
    duplicate key, i.e. already stored) and lookups by the key are `_id` lookups."""
    digest = hashlib.sha256("\x1f".join(parts).encode()).digest()
    return ObjectId(digest[:12])
