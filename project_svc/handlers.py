"""The project service's RPC operations (API.md sections 4, 5, 6). Bodies, queries and path
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
from typing import Any, ClassVar

import asyncpg

from contracts.errors import Conflict, Forbidden, NotFound, ValidationError
from contracts.events import EventPublisher
from contracts.logging import get_logger
from contracts.names import RoutingKey
from contracts.routes import is_reserved
from contracts.rpc import Reply
from contracts.timeutil import iso_now, to_iso
from contracts.upstream import TargetRefused, UpstreamPolicy
from project_svc.store import Caller, ProjectStore, key_out, project_out, route_out

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
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self.flush()

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval_s)
            await self.flush()


class ProjectHandlers:
    OPERATIONS: ClassVar[dict[str, str]] = {
        "project.create": "create_project",
        "project.list": "list_projects",
        "project.get": "get_project",
        "project.update": "update_project",
        "project.delete": "delete_project",
        "key.create": "create_key",
        "key.list": "list_keys",
        "key.revoke": "revoke_key",
        "key.verify": "verify_key",
        "route.create": "create_route",
        "route.list": "list_routes",
        "route.get": "get_route",
        "route.update": "update_route",
        "route.delete": "delete_route",
        "route.list_active": "list_active_routes",
        "route.active_set": "active_route_set",  # internal: the gateway's snapshot
    }

    def __init__(self, store: ProjectStore, publisher: EventPublisher, usage: KeyUsage,
                 upstreams: UpstreamPolicy) -> None:
        self._store = store
        self._publisher = publisher
        self._usage = usage
        self._upstreams = upstreams

    # --- projects ----------------------------------------------------------------------------

    async def create_project(self, params: dict[str, Any]) -> Reply:
        caller, body = Caller.from_wire(params["caller"]), params["body"]
        row = await self._store.create_project(caller.user_id, body["name"],
                                               body.get("description"))
        return Reply(project_out(row), status=201)

    async def list_projects(self, params: dict[str, Any]) -> dict[str, Any]:
        query = params["query"]
        rows, total = await self._store.list_projects(
            Caller.from_wire(params["caller"]), page=query["page"], limit=query["limit"],
            sort=query["sort"], order=query["order"])
        return {"projects": [project_out(r) for r in rows], "total": total,
                "page": query["page"], "limit": query["limit"],
                "totalPages": math.ceil(total / query["limit"])}

    async def get_project(self, params: dict[str, Any]) -> dict[str, Any]:
        return project_out(await self._project(params, "id"))

    async def update_project(self, params: dict[str, Any]) -> dict[str, Any]:
        row = await self._store.update_project(
            Caller.from_wire(params["caller"]), uuid.UUID(params["params"]["id"]),
            params["body"] or {})
        if row is None:
            raise NotFound("Project not found")
        return project_out(row)

    async def delete_project(self, params: dict[str, Any]) -> dict[str, str]:
        project_id = uuid.UUID(params["params"]["id"])
        gone = await self._store.delete_project(Caller.from_wire(params["caller"]), project_id)
        if gone is None:
            raise NotFound("Project not found")
        keys, routes = gone
        self._publisher.publish(RoutingKey.CONFIG_PROJECT_DELETED, {
            "projectId": str(project_id),
            "keyIds": [str(k["id"]) for k in keys],
            "keyHashes": [k["key_hash"] for k in keys],
            "routeIds": [str(r["id"]) for r in routes],
            "at": iso_now(),
        })
        for route in routes:
            await self._route_changed("deleted", route)
        return {"message": "Project deleted"}

    # --- API keys ----------------------------------------------------------------------------

    async def create_key(self, params: dict[str, Any]) -> Reply:
        project = await self._project(params, "projectId")
        body = params["body"]
        raw = new_raw_key()
        row = await self._store.create_key(
            project, params["caller"]["userId"], body["name"], key_digest(raw),
            raw[:10] + "...", body.get("expiresInDays"))
        out = key_out(row)
        return Reply({
            "id": out["id"], "key": raw, "rawKey": raw, "prefix": out["prefix"],
            "name": out["name"], "projectId": str(project["id"]),
            "expiresAt": out["expiresAt"], "createdAt": out["createdAt"],
        }, status=201)

    async def list_keys(self, params: dict[str, Any]) -> list[dict[str, Any]]:
        project = await self._project(params, "projectId")
        return [key_out(r) for r in await self._store.list_keys(project["id"])]

    async def revoke_key(self, params: dict[str, Any]) -> dict[str, str]:
        row = await self._store.revoke_key(Caller.from_wire(params["caller"]),
                                           uuid.UUID(params["params"]["id"]))
        if row is None:
            raise NotFound("API key not found")
        self._publisher.publish(RoutingKey.CONFIG_KEY_REVOKED, {
            "keyId": str(row["id"]), "keyHash": row["key_hash"],
            "projectId": str(row["project_id"]), "reason": "revoked", "at": iso_now(),
        })
        return {"message": "API key revoked"}

    async def verify_key(self, params: dict[str, Any]) -> dict[str, Any]:
        row = await self._store.key_by_hash(params["query"]["hash"])
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

    async def create_route(self, params: dict[str, Any]) -> Reply:
        project = await self._project(params, "projectId")
        body = params["body"]
        fields = {"authRequired": True, "service": None, "upstreamUrl": None,
                  "rateLimit": None, "cacheTTL": None, **body}
        await self._check_target(Caller.from_wire(params["caller"]), fields)
        try:
            row = await self._store.create_route(project["id"], fields)
        except asyncpg.UniqueViolationError as exc:
            raise self._conflict(exc, fields) from None
        await self._route_changed("created", row)
        return Reply(route_out(row), status=201)

    async def list_routes(self, params: dict[str, Any]) -> list[dict[str, Any]]:
        project = await self._project(params, "projectId")
        return [route_out(r) for r in await self._store.list_routes(project["id"])]

    async def get_route(self, params: dict[str, Any]) -> dict[str, Any]:
        return route_out(await self._route(params))

    async def update_route(self, params: dict[str, Any]) -> dict[str, Any]:
        current = route_out(await self._route(params))
        changes = params["body"] or {}
        merged = {**current, **changes}
        if "service" in changes and changes["service"] and "upstreamUrl" not in changes:
            merged["upstreamUrl"] = None  # switching kind: the old target goes
        if "upstreamUrl" in changes and changes["upstreamUrl"] and "service" not in changes:
            merged["service"] = None
        if bool(merged["service"]) == bool(merged["upstreamUrl"]):
            raise ValidationError(details=[{
                "field": "service", "location": "body", "code": "custom",
                "message": "Exactly one of service and upstreamUrl is required"}])
        await self._check_target(Caller.from_wire(params["caller"]), merged)
        try:
            row = await self._store.replace_route(uuid.UUID(current["id"]), merged)
        except asyncpg.UniqueViolationError as exc:
            raise self._conflict(exc, merged) from None
        await self._route_changed("updated", row)
        return route_out(row)

    async def delete_route(self, params: dict[str, Any]) -> dict[str, str]:
        route = await self._route(params)
        await self._store.delete_route(route["id"])
        await self._route_changed("deleted", route)
        return {"message": "Route config deleted"}

    async def list_active_routes(self, _params: dict[str, Any]) -> list[dict[str, Any]]:
        keys = ("id", "projectId", "path", "method", "service", "upstreamUrl", "rateLimit",
                "cacheTTL", "authRequired")
        return [{k: route_out(r)[k] for k in keys} for r in await self._store.active_routes()]

    async def active_route_set(self, _params: dict[str, Any]) -> dict[str, Any]:
        rows = await self._store.active_routes()
        return {"routes": [{**route_out(r), "ownerId": r["owner_id"]} for r in rows],
                "at": iso_now()}

    # --- helpers -----------------------------------------------------------------------------

    async def _project(self, params: dict[str, Any], name: str) -> asyncpg.Record:
        row = await self._store.visible_project(
            Caller.from_wire(params["caller"]), uuid.UUID(params["params"][name]))
        if row is None:
            raise NotFound("Project not found")
        return row

    async def _route(self, params: dict[str, Any]) -> asyncpg.Record:
        row = await self._store.visible_route(
            Caller.from_wire(params["caller"]), uuid.UUID(params["params"]["id"]))
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

    async def _route_changed(self, action: str, row: asyncpg.Record) -> None:
        # Gateways need the owner to let the project owner through an authRequired upstream.
        owner = None if action == "deleted" else await self._store.owner_of(row["project_id"])
        self._publisher.publish(RoutingKey.CONFIG_ROUTE_CHANGED, {
            "action": action, "route": {**route_out(row), "ownerId": owner}, "at": iso_now()})
