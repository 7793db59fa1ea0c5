"""The project service's RPC operations (docs/api.md sections 4, 5, 6). Bodies, queries and path
ids arrive validated by the gateway against the route table's schemas.

Every change a gateway must follow is published on `gw.events` under `config.` after it is
committed, so gateways refresh within a second without asking per request.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import secrets
import uuid
from typing import Any

import asyncpg

from contracts.errors import Conflict, Forbidden, NotFound, ValidationError
from contracts.events import EventPublisher
from contracts.identity import Caller
from contracts.logging import get_logger
from contracts.messages import (
    KeyRevoked,
    ProjectDeleted,
    RouteAction,
    RouteChanged,
    RouteConfigData,
    RpcRequest,
)
from contracts.routes import is_reserved
from contracts.rpc import Reply, operation
from contracts.tasks import stop_task
from contracts.timeutil import iso_now, to_iso
from contracts.upstream import TargetRefused, UpstreamPolicy
from project_svc.store import (
    LimitReached,
    ProjectStore,
    RouteOverlap,
    key_out,
    project_out,
    route_out,
)

log = get_logger(__name__)

KEY_PREFIX = "gw_"
CONFLICT_SAME_PROJECT = "Route config already exists for this project, path, and method"


def new_raw_key() -> str:
    return KEY_PREFIX + secrets.token_hex(32)


def key_digest(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


class KeyUsage:
    """`lastUsedAt` without a database write per gateway request: key ids seen since the last
    flush are written in one UPDATE every few seconds (and at shutdown)."""

    def __init__(self, store: ProjectStore, interval_s: float = 5.0) -> None:
        self._store = store
        self._interval_s = interval_s
        self._seen: set[uuid.UUID] = set()
        self._task: asyncio.Task[None] | None = None

    def record(self, key_id: uuid.UUID) -> None:
        self._seen.add(key_id)

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="key-usage")

    async def flush(self) -> None:
        if not self._seen:
            return
        batch, self._seen = list(self._seen), set()
        try:
            await self._store.touch_keys(batch)
        except (OSError, asyncpg.PostgresError) as exc:
            self._seen.update(batch)  # try again next time
            log.warning("could not record key usage", error=repr(exc))

    async def close(self) -> None:
        await stop_task(self._task)
        await self.flush()

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval_s)
            await self.flush()


class ProjectHandlers:
    def __init__(self, store: ProjectStore, publisher: EventPublisher, usage: KeyUsage,
                 upstreams: UpstreamPolicy, *, max_projects_per_user: int = 50,
                 max_keys_per_project: int = 20) -> None:
        self._max_projects = max_projects_per_user
        self._max_keys = max_keys_per_project
        self._store = store
        self._publisher = publisher
        self._usage = usage
        self._upstreams = upstreams

    # --- projects ----------------------------------------------------------------------------

    @operation("project.create")
    async def create_project(self, request: RpcRequest) -> Reply:
        caller, body = request.authenticated, request.body
        try:
            row = await self._store.create_project(caller.user_id, body["name"],
                                                   body.get("description"),
                                                   self._max_projects)
        except LimitReached as exc:
            raise Conflict(f"Project limit reached ({exc.limit})") from None
        return Reply(project_out(row), status=201)

    @operation("project.list")
    async def list_projects(self, request: RpcRequest) -> dict[str, Any]:
        query = request.query
        rows, total = await self._store.list_projects(
            request.authenticated, page=query["page"], limit=query["limit"],
            sort=query["sort"], order=query["order"])
        return {"projects": [project_out(r) for r in rows], "total": total,
                "page": query["page"], "limit": query["limit"],
                "totalPages": math.ceil(total / query["limit"])}

    @operation("project.get")
    async def get_project(self, request: RpcRequest) -> dict[str, Any]:
        return project_out(await self._project(request, "id"))

    @operation("project.update")
    async def update_project(self, request: RpcRequest) -> dict[str, Any]:
        row = await self._store.update_project(
            request.authenticated, uuid.UUID(request.params["id"]),
            request.body or {})
        if row is None:
            raise NotFound("Project not found")
        return project_out(row)

    @operation("project.delete")
    async def delete_project(self, request: RpcRequest) -> dict[str, str]:
        project_id = uuid.UUID(request.params["id"])
        gone = await self._store.delete_project(request.authenticated, project_id)
        if gone is None:
            raise NotFound("Project not found")
        keys, routes = gone
        self._publisher.publish(ProjectDeleted(
            project_id=str(project_id),
            key_ids=tuple(str(k["id"]) for k in keys),
            key_hashes=tuple(k["key_hash"] for k in keys),
            route_ids=tuple(str(r["id"]) for r in routes),
            at=iso_now(),
        ))
        for route in routes:
            await self._route_changed("deleted", route)
        return {"message": "Project deleted"}

    # --- API keys ----------------------------------------------------------------------------

    @operation("key.create")
    async def create_key(self, request: RpcRequest) -> Reply:
        project = await self._project(request, "projectId")
        body = request.body
        raw = new_raw_key()
        try:
            row = await self._store.create_key(
                project, request.authenticated.user_id, body["name"], key_digest(raw),
                raw[:10] + "...", body.get("expiresInDays"), self._max_keys)
        except LimitReached as exc:
            raise Conflict(f"API key limit reached ({exc.limit})") from None
        out = key_out(row)
        return Reply({
            "id": out["id"], "key": raw, "rawKey": raw, "prefix": out["prefix"],
            "name": out["name"], "projectId": str(project["id"]),
            "expiresAt": out["expiresAt"], "createdAt": out["createdAt"],
        }, status=201)

    @operation("key.list")
    async def list_keys(self, request: RpcRequest) -> list[dict[str, Any]]:
        project = await self._project(request, "projectId")
        return [key_out(r) for r in await self._store.list_keys(project["id"])]

    @operation("key.revoke")
    async def revoke_key(self, request: RpcRequest) -> dict[str, str]:
        row = await self._store.revoke_key(request.authenticated,
                                           uuid.UUID(request.params["id"]))
        if row is None:
            raise NotFound("API key not found")
        self._publisher.publish(KeyRevoked(
            key_id=str(row["id"]), key_hash=row["key_hash"],
            project_id=str(row["project_id"]), reason="revoked", at=iso_now()))
        return {"message": "API key revoked"}

    @operation("key.verify")
    async def verify_key(self, request: RpcRequest) -> dict[str, Any]:
        row = await self._store.key_by_hash(request.query["hash"])
        if row is None:
            return {"valid": False, "reason": "Key not found"}
        if not row["active"] or row["revoked_at"] is not None:
            return {"valid": False, "reason": "Key revoked"}
        if row["expired"]:
            return {"valid": False, "reason": "Key expired"}
        self._usage.record(row["id"])
        expires_at = row["expires_at"]
        return {"valid": True, "key": {
            "id": str(row["id"]), "projectId": str(row["project_id"]),
            "userId": row["user_id"], "ownerId": row["owner"],
            # gateways caching the verdict must stop accepting the key at this instant
            "expiresAt": to_iso(expires_at) if expires_at else None,
        }}

    # --- route configs -----------------------------------------------------------------------

    @operation("route.create")
    async def create_route(self, request: RpcRequest) -> Reply:
        project = await self._project(request, "projectId")
        body = request.body
        fields = {"authRequired": True, "service": None, "upstreamUrl": None,
                  "rateLimit": None, "cacheTTL": None, **body}
        await self._check_target(request.authenticated, fields)
        try:
            row = await self._store.create_route(project["id"], fields)
        except asyncpg.UniqueViolationError as exc:
            raise self._conflict(exc, fields) from None
        except RouteOverlap as exc:
            raise _overlap_conflict(exc) from None
        await self._route_changed("created", row)
        return Reply(route_out(row), status=201)

    @operation("route.list")
    async def list_routes(self, request: RpcRequest) -> list[dict[str, Any]]:
        project = await self._project(request, "projectId")
        return [route_out(r) for r in await self._store.list_routes(project["id"])]

    @operation("route.get")
    async def get_route(self, request: RpcRequest) -> dict[str, Any]:
        return route_out(await self._route(request))

    @operation("route.update")
    async def update_route(self, request: RpcRequest) -> dict[str, Any]:
        current = route_out(await self._route(request))
        changes = request.body or {}
        merged = {**current, **changes}
        if "service" in changes and changes["service"] and "upstreamUrl" not in changes:
            merged["upstreamUrl"] = None  # switching kind: the old target goes
        if "upstreamUrl" in changes and changes["upstreamUrl"] and "service" not in changes:
            merged["service"] = None
        if bool(merged["service"]) == bool(merged["upstreamUrl"]):
            raise ValidationError(details=[{
                "field": "service", "location": "body", "code": "custom",
                "message": "Exactly one of service and upstreamUrl is required"}])
        await self._check_target(request.authenticated, merged)
        try:
            row = await self._store.replace_route(uuid.UUID(current["id"]), merged)
        except asyncpg.UniqueViolationError as exc:
            raise self._conflict(exc, merged) from None
        except RouteOverlap as exc:
            raise _overlap_conflict(exc) from None
        await self._route_changed("updated", row)
        return route_out(row)

    @operation("route.delete")
    async def delete_route(self, request: RpcRequest) -> dict[str, str]:
        route = await self._route(request)
        await self._store.delete_route(route["id"])
        await self._route_changed("deleted", route)
        return {"message": "Route config deleted"}

    @operation("route.list_active")
    async def list_active_routes(self, _request: RpcRequest) -> list[dict[str, Any]]:
        keys = ("id", "projectId", "path", "method", "service", "upstreamUrl", "rateLimit",
                "cacheTTL", "authRequired")
        return [{k: route_out(r)[k] for k in keys} for r in await self._store.active_routes()]

    @operation("route.active_set")
    async def active_route_set(self, _request: RpcRequest) -> dict[str, Any]:
        rows = await self._store.active_routes()
        return {"routes": [{**route_out(r), "ownerId": r["owner_id"]} for r in rows],
                "at": iso_now()}

    # --- helpers -----------------------------------------------------------------------------

    async def _project(self, request: RpcRequest, name: str) -> asyncpg.Record:
        row = await self._store.visible_project(
            request.authenticated, uuid.UUID(request.params[name]))
        if row is None:
            raise NotFound("Project not found")
        return row

    async def _route(self, request: RpcRequest) -> asyncpg.Record:
        row = await self._store.visible_route(
            request.authenticated, uuid.UUID(request.params["id"]))
        if row is None:
            raise NotFound("Route config not found")
        return row

    async def _check_target(self, caller: Caller, fields: dict[str, Any]) -> None:
        """Platform paths (403 for a non-admin service config, 400 for an upstream config)
        and the upstream target rules (400 on upstreamUrl)."""
        reserved = is_reserved(fields["path"])
        if fields.get("upstreamUrl"):
            if reserved:
                raise ValidationError(details=[{
                    "field": "path", "location": "body", "code": "custom",
                    "message": "An upstream route config cannot use a platform path"}])
            try:
                await self._upstreams.check(fields["upstreamUrl"])
            except TargetRefused as exc:
                raise ValidationError(details=[{
                    "field": "upstreamUrl", "location": "body", "code": "custom",
                    "message": str(exc)}]) from None
        elif reserved and not caller.is_admin:
            raise Forbidden("Only admins may configure platform paths")

    @staticmethod
    def _conflict(exc: asyncpg.UniqueViolationError, fields: dict[str, Any]) -> Conflict:
        if exc.constraint_name == "route_configs_project_path_method":
            return Conflict(CONFLICT_SAME_PROJECT)
        return Conflict(
            f"Another active route config already serves {fields['method']} {fields['path']}")

    async def _route_changed(self, action: RouteAction, row: asyncpg.Record) -> None:
        # Gateways need the owner to let the project owner through an authRequired upstream.
        owner = None if action == "deleted" else await self._store.owner_of(row["project_id"])
        self._publisher.publish(RouteChanged(
            action, RouteConfigData.from_wire({**route_out(row), "ownerId": owner}), iso_now()))


def _overlap_conflict(exc: RouteOverlap) -> Conflict:
    return Conflict(f"Another project's active route config {exc.method} {exc.path} overlaps "
                    "this path")
