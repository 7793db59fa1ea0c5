"""The project service's SQL. Tenancy is part of every query: a caller who is not an admin
only ever reads or changes rows of projects they own, and anything else is 'not found'."""

from __future__ import annotations

import re
import uuid

import asyncpg
from pydantic import MISSING

from contracts.identity import Caller
from contracts.outbox import Announce, announce_in, silent
from contracts.postgres import Connection, returned
from contracts.schemas.projects import ProjectPatch, RouteBody, RouteConfig
from contracts.validation import or_none

SORT_COLUMNS = {"name": "name", "createdAt": "created_at", "updatedAt": "updated_at"}
_PARAM_SEGMENT = re.compile(r"/:[A-Za-z_][A-Za-z0-9_]*")


def template_of(path: str) -> str:
    """`/users/:id/` and `/users/:uid` are the same template `/users/:` (docs/api.md 6.3)."""
    reduced = _PARAM_SEGMENT.sub("/:", path)
    return reduced.rstrip("/") or "/"



class LimitReached(Exception):
    def __init__(self, limit: int) -> None:
        super().__init__(str(limit))
        self.limit = limit


class RouteOverlap(Exception):
    """Another project's active route config could receive this one's requests (or the
    other way round): docs/api.md section 6.3."""

    def __init__(self, method: str, path: str) -> None:
        super().__init__(f"{method} {path}")
        self.method, self.path = method, path


def templates_overlap(a: str, b: str) -> bool:
    """Some concrete path matches both: as many segments, and at each position equal
    literals or at least one `:param`."""
    left = [s for s in a.split("/") if s]
    right = [s for s in b.split("/") if s]
    return len(left) == len(right) and all(
        x == y or x.startswith(":") or y.startswith(":") for x, y in zip(left, right,
                                                                         strict=True))


async def _refuse_overlap(connection: Connection, project_id: uuid.UUID, method: str,
                          path: str, route_id: uuid.UUID | None) -> None:
    """Raise RouteOverlap when another project's active config of `method` overlaps `path`.
    Overlap is no unique index, so the check and the write hold a lock per method for the
    rest of the transaction: two creates (even on two service replicas) cannot both pass."""
    await connection.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
                             f"route-overlap:{method}")
    rows = await connection.fetch(
        "SELECT path FROM route_configs WHERE method = $1 AND active AND project_id <> $2"
        " AND ($3::uuid IS NULL OR id <> $3)", method, project_id, route_id)
    for row in rows:
        if templates_overlap(row["path"], path):
            raise RouteOverlap(method, row["path"])


async def refuse_past_limit(connection: Connection, lock: str, count_query: str, key: object,
                            limit: int) -> None:
    """Raise LimitReached when `count_query` (of `key`) already counts `limit` rows. Counted
    under a transaction-scoped lock named `lock`, so concurrent inserts of the same owner or
    project cannot overshoot: call it inside the insert's transaction."""
    await connection.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", lock)
    if await connection.fetchval(count_query, key) >= limit:
        raise LimitReached(limit)


class ProjectStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    # --- projects ----------------------------------------------------------------------------

    async def create_project(self, owner: str, name: str, description: str | None,
                             limit: int, announce: Announce = silent) -> asyncpg.Record:
        """Raise LimitReached when the owner has `limit` projects already (counted and
        inserted under a lock per owner, so concurrent creates cannot overshoot)."""
        async with self.pool.acquire() as connection, connection.transaction():
            await refuse_past_limit(connection, f"projects-of:{owner}",
                                    "SELECT count(*) FROM projects WHERE user_id = $1", owner,
                                    limit)
            row = returned(await connection.fetchrow(
                "INSERT INTO projects (id, name, description, user_id) VALUES ($1, $2, $3, $4)"
                " RETURNING *", uuid.uuid4(), name, description, owner))
            await announce_in(connection, announce, row)
            return row

    async def visible_project(self, caller: Caller, project_id: uuid.UUID
                              ) -> asyncpg.Record | None:
        return await self.pool.fetchrow(
            "SELECT * FROM projects WHERE id = $1 AND ($2 OR user_id = $3)",
            project_id, caller.is_admin, caller.user_id)

    async def list_projects(self, caller: Caller, *, page: int, limit: int, sort: str,
                            order: str) -> tuple[list[asyncpg.Record], int]:
        column = SORT_COLUMNS[sort]  # whitelisted by the schema and again here
        direction = "ASC" if order == "asc" else "DESC"
        rows = await self.pool.fetch(
            f"SELECT *, count(*) OVER () AS total FROM projects WHERE $1 OR user_id = $2"
            f" ORDER BY {column} {direction}, id LIMIT $3 OFFSET $4",
            caller.is_admin, caller.user_id, limit, (page - 1) * limit)
        if rows:
            return rows, rows[0]["total"]
        total = await self.pool.fetchval(
            "SELECT count(*) FROM projects WHERE $1 OR user_id = $2",
            caller.is_admin, caller.user_id)
        return rows, total

    async def update_project(self, caller: Caller, project_id: uuid.UUID,
                             changes: ProjectPatch, announce: Announce = silent
                             ) -> asyncpg.Record | None:
        """Only the fields the patch carries change (`null` clears the description)."""
        async with self.pool.acquire() as connection, connection.transaction():
            row = await connection.fetchrow(
                "UPDATE projects SET"
                " name = CASE WHEN $4 THEN $5 ELSE name END,"
                " description = CASE WHEN $6 THEN $7 ELSE description END,"
                " updated_at = now()"
                " WHERE id = $1 AND ($2 OR user_id = $3) RETURNING *",
                project_id, caller.is_admin, caller.user_id,
                changes.name is not MISSING, or_none(changes.name),
                changes.description is not MISSING, or_none(changes.description))
            if row is not None:
                await announce_in(connection, announce, row)
            return row

    async def delete_project(self, caller: Caller, project_id: uuid.UUID,
                             announce: Announce = silent
                             ) -> tuple[list[asyncpg.Record], list[asyncpg.Record]] | None:
        """Delete with its keys and route configs; return what went (for the events)."""
        async with self.pool.acquire() as connection, connection.transaction():
            project = await connection.fetchrow(
                "SELECT * FROM projects WHERE id = $1 AND ($2 OR user_id = $3) FOR UPDATE",
                project_id, caller.is_admin, caller.user_id)
            if project is None:
                return None
            keys = await connection.fetch(
                "SELECT id, key_hash FROM api_keys WHERE project_id = $1", project_id)
            routes = await connection.fetch(
                "SELECT * FROM route_configs WHERE project_id = $1", project_id)
            await connection.execute("DELETE FROM projects WHERE id = $1", project_id)
            await announce_in(connection, announce, project)
        return keys, routes

    # --- API keys ----------------------------------------------------------------------------

    async def create_key(self, project: asyncpg.Record, creator: str, name: str,
                         key_hash: str, prefix: str, expires_in_days: int | None,
                         limit: int, announce: Announce = silent) -> asyncpg.Record:
        """Raise LimitReached when the project has `limit` usable keys already (not revoked,
        not expired), under a lock per project."""
        async with self.pool.acquire() as connection, connection.transaction():
            await refuse_past_limit(  # usable keys: not revoked, not expired
                connection, f"keys-of:{project['id']}",
                "SELECT count(*) FROM api_keys WHERE project_id = $1 AND active"
                " AND (expires_at IS NULL OR expires_at > now())", project["id"], limit)
            row = returned(await connection.fetchrow(
                "INSERT INTO api_keys (id, key_hash, prefix, name, project_id, user_id,"
                " expires_at) VALUES ($1, $2, $3, $4, $5, $6, CASE WHEN $7::int IS NULL"
                " THEN NULL ELSE now() + make_interval(days => $7) END) RETURNING *",
                uuid.uuid4(), key_hash, prefix, name, project["id"], creator, expires_in_days))
            await announce_in(connection, announce, row)
            return row

    async def list_keys(self, project_id: uuid.UUID) -> list[asyncpg.Record]:
        return await self.pool.fetch(
            "SELECT * FROM api_keys WHERE project_id = $1 ORDER BY created_at DESC, id",
            project_id)

    async def revoke_key(self, caller: Caller, key_id: uuid.UUID, announce: Announce = silent
                         ) -> asyncpg.Record | None:
        """Soft and idempotent: a repeat keeps the first revokedAt (and announces nothing)."""
        async with self.pool.acquire() as connection, connection.transaction():
            row = await connection.fetchrow(
                "UPDATE api_keys k SET active = false,"
                " revoked_at = coalesce(k.revoked_at, now())"
                " FROM projects p WHERE k.id = $1 AND p.id = k.project_id"
                " AND ($2 OR p.user_id = $3)"
                " RETURNING k.*, (SELECT revoked_at IS NULL FROM api_keys WHERE id = $1)"
                " AS revoked_now", key_id, caller.is_admin, caller.user_id)
            if row is not None and row["revoked_now"]:
                await announce_in(connection, announce, row)
            return row

    async def key_by_hash(self, key_hash: str) -> asyncpg.Record | None:
        return await self.pool.fetchrow(
            "SELECT k.id, k.project_id, k.user_id, k.active, k.revoked_at, k.expires_at,"
            " k.expires_at IS NOT NULL AND k.expires_at <= now() AS expired, p.user_id AS owner"
            " FROM api_keys k JOIN projects p ON p.id = k.project_id WHERE k.key_hash = $1",
            key_hash)

    async def touch_keys(self, key_ids: list[uuid.UUID]) -> None:
        await self.pool.execute(
            "UPDATE api_keys SET last_used_at = now() WHERE id = ANY($1::uuid[])", key_ids)

    # --- route configs -----------------------------------------------------------------------

    async def create_route(self, project_id: uuid.UUID, body: RouteBody,
                           announce: Announce = silent) -> asyncpg.Record:
        """A new config from its body: a field left out is null (authRequired: true)."""
        async with self.pool.acquire() as connection, connection.transaction():
            await _refuse_overlap(connection, project_id, body.method, body.path, None)
            row = returned(await connection.fetchrow(
                "INSERT INTO route_configs (id, path, template, method, service, upstream_url,"
                " project_id, rate_limit, cache_ttl, auth_required)"
                " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING *",
                uuid.uuid4(), body.path, template_of(body.path), body.method,
                or_none(body.service), or_none(body.upstream_url), project_id,
                or_none(body.rate_limit), or_none(body.cache_ttl),
                True if body.auth_required is MISSING else body.auth_required))
            await announce_in(connection, announce, row)
            return row

    async def visible_route(self, caller: Caller, route_id: uuid.UUID) -> asyncpg.Record | None:
        return await self.pool.fetchrow(
            "SELECT r.* FROM route_configs r JOIN projects p ON p.id = r.project_id"
            " WHERE r.id = $1 AND ($2 OR p.user_id = $3)",
            route_id, caller.is_admin, caller.user_id)

    async def list_routes(self, project_id: uuid.UUID) -> list[asyncpg.Record]:
        return await self.pool.fetch(
            "SELECT * FROM route_configs WHERE project_id = $1 ORDER BY created_at DESC, id",
            project_id)

    async def replace_route(self, merged: RouteConfig, announce: Announce = silent
                            ) -> asyncpg.Record:
        """Store every setting of `merged` (a config with a patch applied) under its id."""
        route_id = uuid.UUID(merged.id)
        async with self.pool.acquire() as connection, connection.transaction():
            if merged.active:
                await _refuse_overlap(connection, uuid.UUID(merged.project_id),
                                      merged.method, merged.path, route_id)
            row = returned(await connection.fetchrow(
                "UPDATE route_configs SET path = $2, template = $3, method = $4, service = $5,"
                " upstream_url = $6, rate_limit = $7, cache_ttl = $8, auth_required = $9,"
                " active = $10, updated_at = now() WHERE id = $1 RETURNING *",
                route_id, merged.path, template_of(merged.path), merged.method,
                merged.service, merged.upstream_url, merged.rate_limit, merged.cache_ttl,
                merged.auth_required, merged.active))
            await announce_in(connection, announce, row)
            return row

    async def delete_route(self, route_id: uuid.UUID, announce: Announce = silent) -> None:
        async with self.pool.acquire() as connection, connection.transaction():
            row = await connection.fetchrow(
                "DELETE FROM route_configs WHERE id = $1 RETURNING *", route_id)
            if row is not None:
                await announce_in(connection, announce, row)

    async def active_routes(self) -> list[asyncpg.Record]:
        return await self.pool.fetch(
            "SELECT r.*, p.user_id AS owner_id FROM route_configs r"
            " JOIN projects p ON p.id = r.project_id WHERE r.active ORDER BY r.created_at, r.id")

    async def owner_of(self, project_id: uuid.UUID) -> str | None:
        owner: str | None = await self.pool.fetchval(
            "SELECT user_id FROM projects WHERE id = $1", project_id)
        return owner
