"""The project service's RPC operations (docs/api.md sections 4, 5, 6): each a method bound to
its declaration in `contracts.operations`, taking the typed call and returning the declared
answer (a view of the stored row; `contracts.schemas.projects`).

Every change a gateway must follow is published on `gw.events` under `config.` after it is
committed, so gateways refresh within a second without asking per request.
"""

from __future__ import annotations

import hashlib
import math
import secrets
import uuid
from collections.abc import Callable, Sequence
from typing import Any

import asyncpg

from contracts import operations as op
from contracts.broker import Publisher
from contracts.errors import Conflict, Forbidden, NotFound, ValidationError
from contracts.identity import Caller
from contracts.logging import get_logger
from contracts.messages import (
    DomainEventType,
    Event,
    KeyRevoked,
    ProjectDeleted,
    RouteAction,
    RouteChanged,
    RouteConfigData,
)
from contracts.operations import Call
from contracts.outbox import Announce, OutboxRelay, domain_event
from contracts.periodic import Periodic
from contracts.routes import is_reserved
from contracts.rpc import handles
from contracts.schemas.common import Answer, IdParams, Message, ProjectIdParams
from contracts.schemas.projects import (
    ActiveRouteConfig,
    ActiveRouteSet,
    ApiKey,
    IssuedKey,
    KeyBody,
    KeyVerdict,
    KeyVerifyQuery,
    Project,
    ProjectBody,
    ProjectListQuery,
    ProjectPage,
    ProjectPatch,
    RouteBody,
    RouteConfig,
    RoutePatch,
    VerifiedKey,
)
from contracts.timeutil import iso_now
from contracts.upstream import TargetRefused, UpstreamPolicy
from contracts.validation import or_none
from project_svc.store import LimitReached, ProjectStore, RouteOverlap

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

    def __init__(self, store: ProjectStore) -> None:
        self._store = store
        self._seen: set[uuid.UUID] = set()

    def periodic(self, interval_s: float = 5.0) -> Periodic:
        """A flush every few seconds, and a last one when the process stops."""
        return Periodic("key-usage", self.flush, interval_s, at_stop=True)

    def record(self, key_id: uuid.UUID) -> None:
        self._seen.add(key_id)

    async def flush(self) -> None:
        if not self._seen:
            return
        batch, self._seen = list(self._seen), set()
        try:
            await self._store.touch_keys(batch)
        except (OSError, asyncpg.PostgresError) as exc:
            self._seen.update(batch)  # try again next time
            log.warning("could not record key usage", error=repr(exc))


def announcing(event_type: DomainEventType, view: Callable[[asyncpg.Record], Answer],
               relay: OutboxRelay | None) -> Announce:
    """A change's domain event (webhooks: docs/api.md section 15): `data` is the changed
    resource as the API answers it, written to the outbox in the change's transaction, and
    the relay nudged (contracts/outbox.py)."""

    def announce(row: asyncpg.Record) -> Sequence[Event]:
        project_id = row["id"] if event_type.startswith("project.") else row["project_id"]
        if relay is not None:
            relay.nudge()
        return [domain_event(event_type, view(row), project_id=project_id)]

    return announce


class ProjectHandlers:
    def __init__(self, store: ProjectStore, publisher: Publisher, usage: KeyUsage,
                 upstreams: UpstreamPolicy, relay: OutboxRelay | None = None, *,
                 max_projects_per_user: int = 50, max_keys_per_project: int = 20) -> None:
        self._max_projects = max_projects_per_user
        self._max_keys = max_keys_per_project
        self._store = store
        self._publisher = publisher
        self._usage = usage
        self._upstreams = upstreams
        self._relay = relay

    def _announce(self, event_type: DomainEventType,
                  view: Callable[[asyncpg.Record], Answer]) -> Announce:
        return announcing(event_type, view, self._relay)

    # --- projects ----------------------------------------------------------------------------

    @handles(op.PROJECT_CREATE)
    async def create_project(self, call: Call[ProjectBody, None, None]) -> Project:
        body = call.body
        try:
            row = await self._store.create_project(
                call.authenticated.user_id, body.name,
                or_none(body.description), self._max_projects,
                self._announce("project.created", Project.view))
        except LimitReached as exc:
            raise Conflict(f"Project limit reached ({exc.limit})") from None
        return Project.view(row)

    @handles(op.PROJECT_LIST)
    async def list_projects(self, call: Call[None, ProjectListQuery, None]) -> ProjectPage:
        query = call.query
        rows, total = await self._store.list_projects(
            call.authenticated, page=query.page, limit=query.limit, sort=query.sort,
            order=query.order)
        return ProjectPage(projects=[Project.view(r) for r in rows], total=total,
                           page=query.page, limit=query.limit,
                           total_pages=math.ceil(total / query.limit))

    @handles(op.PROJECT_GET)
    async def get_project(self, call: Call[None, None, IdParams]) -> Project:
        return Project.view(await self._project(call, call.params.id))

    @handles(op.PROJECT_UPDATE)
    async def update_project(self, call: Call[ProjectPatch, None, IdParams]) -> Project:
        row = await self._store.update_project(call.authenticated, call.params.id, call.body,
                                               self._announce("project.updated", Project.view))
        if row is None:
            raise NotFound("Project not found")
        return Project.view(row)

    @handles(op.PROJECT_DELETE)
    async def delete_project(self, call: Call[None, None, IdParams]) -> Message:
        project_id = call.params.id
        gone = await self._store.delete_project(call.authenticated, project_id,
                                                self._announce("project.deleted", Project.view))
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
        return Message(message="Project deleted")

    # --- API keys ----------------------------------------------------------------------------

    @handles(op.KEY_CREATE)
    async def create_key(self, call: Call[KeyBody, None, ProjectIdParams]) -> IssuedKey:
        project = await self._project(call, call.params.project_id)
        body = call.body
        raw = new_raw_key()
        try:
            row = await self._store.create_key(
                project, call.authenticated.user_id, body.name, key_digest(raw),
                raw[:10] + "...", or_none(body.expires_in_days), self._max_keys,
                self._announce("api_key.created", ApiKey.view))
        except LimitReached as exc:
            raise Conflict(f"API key limit reached ({exc.limit})") from None
        return IssuedKey.view(row, key=raw, raw_key=raw)

    @handles(op.KEY_LIST)
    async def list_keys(self, call: Call[None, None, ProjectIdParams]) -> list[ApiKey]:
        project = await self._project(call, call.params.project_id)
        return [ApiKey.view(r) for r in await self._store.list_keys(project["id"])]

    @handles(op.KEY_REVOKE)
    async def revoke_key(self, call: Call[None, None, IdParams]) -> Message:
        row = await self._store.revoke_key(call.authenticated, call.params.id,
                                           self._announce("api_key.revoked", ApiKey.view))
        if row is None:
            raise NotFound("API key not found")
        self._publisher.publish(KeyRevoked(
            key_id=str(row["id"]), key_hash=row["key_hash"],
            project_id=str(row["project_id"]), reason="revoked", at=iso_now()))
        return Message(message="API key revoked")

    @handles(op.KEY_VERIFY)
    async def verify_key(self, call: Call[None, KeyVerifyQuery, None]) -> KeyVerdict:
        row = await self._store.key_by_hash(call.query.hash)
        if row is None:
            return KeyVerdict(valid=False, reason="Key not found")
        if not row["active"] or row["revoked_at"] is not None:
            return KeyVerdict(valid=False, reason="Key revoked")
        if row["expired"]:
            return KeyVerdict(valid=False, reason="Key expired")
        self._usage.record(row["id"])
        # gateways caching the verdict must stop accepting the key at `expiresAt`
        return KeyVerdict(valid=True, key=VerifiedKey.view(row, owner_id=row["owner"]))

    # --- route configs -----------------------------------------------------------------------

    @handles(op.ROUTE_CREATE)
    async def create_route(self, call: Call[RouteBody, None, ProjectIdParams]) -> RouteConfig:
        project = await self._project(call, call.params.project_id)
        body = call.body
        await self._check_target(call.authenticated, body.path, or_none(body.upstream_url))
        try:
            row = await self._store.create_route(
                project["id"], body, self._announce("route.created", RouteConfig.view))
        except asyncpg.UniqueViolationError as exc:
            raise _conflict(exc, body.method, body.path) from None
        except RouteOverlap as exc:
            raise _overlap_conflict(exc) from None
        await self._route_changed("created", row)
        return RouteConfig.view(row)

    @handles(op.ROUTE_LIST)
    async def list_routes(self, call: Call[None, None, ProjectIdParams]) -> list[RouteConfig]:
        project = await self._project(call, call.params.project_id)
        return [RouteConfig.view(r) for r in await self._store.list_routes(project["id"])]

    @handles(op.ROUTE_GET)
    async def get_route(self, call: Call[None, None, IdParams]) -> RouteConfig:
        return RouteConfig.view(await self._route(call))

    @handles(op.ROUTE_UPDATE)
    async def update_route(self, call: Call[RoutePatch, None, IdParams]) -> RouteConfig:
        current = RouteConfig.view(await self._route(call))
        changes = {name: getattr(call.body, name) for name in call.body.model_fields_set}
        if call.body.given(changes.get("service")) and "upstream_url" not in changes:
            changes["upstream_url"] = None  # switching kind: the old target goes
        if call.body.given(changes.get("upstream_url")) and "service" not in changes:
            changes["service"] = None
        merged = current.model_copy(update=changes)
        if bool(merged.service) == bool(merged.upstream_url):
            raise ValidationError(details=[{
                "field": "service", "location": "body", "code": "custom",
                "message": "Exactly one of service and upstreamUrl is required"}])
        await self._check_target(call.authenticated, merged.path, merged.upstream_url)
        try:
            row = await self._store.replace_route(
                merged, self._announce("route.updated", RouteConfig.view))
        except asyncpg.UniqueViolationError as exc:
            raise _conflict(exc, merged.method, merged.path) from None
        except RouteOverlap as exc:
            raise _overlap_conflict(exc) from None
        await self._route_changed("updated", row)
        return RouteConfig.view(row)

    @handles(op.ROUTE_DELETE)
    async def delete_route(self, call: Call[None, None, IdParams]) -> Message:
        route = await self._route(call)
        await self._store.delete_route(route["id"],
                                       self._announce("route.deleted", RouteConfig.view))
        await self._route_changed("deleted", route)
        return Message(message="Route config deleted")

    @handles(op.ROUTE_LIST_ACTIVE)
    async def list_active_routes(self, _call: Call[None, None, None]
                                 ) -> list[ActiveRouteConfig]:
        return [ActiveRouteConfig.view(r) for r in await self._store.active_routes()]

    @handles(op.ROUTE_ACTIVE_SET)
    async def active_route_set(self, _call: Call[None, None, None]) -> ActiveRouteSet:
        rows = await self._store.active_routes()
        return ActiveRouteSet(routes=[route_config_data(r, r["owner_id"]) for r in rows],
                              at=iso_now())

    # --- helpers -----------------------------------------------------------------------------

    async def _project(self, call: Call[Any, Any, Any], project_id: uuid.UUID
                       ) -> asyncpg.Record:
        row = await self._store.visible_project(call.authenticated, project_id)
        if row is None:
            raise NotFound("Project not found")
        return row

    async def _route(self, call: Call[Any, Any, IdParams]) -> asyncpg.Record:
        row = await self._store.visible_route(call.authenticated, call.params.id)
        if row is None:
            raise NotFound("Route config not found")
        return row

    async def _check_target(self, caller: Caller, path: str, upstream_url: str | None) -> None:
        """Platform paths (403 for a non-admin service config, 400 for an upstream config)
        and the upstream target rules (400 on upstreamUrl)."""
        reserved = is_reserved(path)
        if upstream_url:
            if reserved:
                raise ValidationError(details=[{
                    "field": "path", "location": "body", "code": "custom",
                    "message": "An upstream route config cannot use a platform path"}])
            try:
                await self._upstreams.check(upstream_url)
            except TargetRefused as exc:
                raise ValidationError(details=[{
                    "field": "upstreamUrl", "location": "body", "code": "custom",
                    "message": str(exc)}]) from None
        elif reserved and not caller.is_admin:
            raise Forbidden("Only admins may configure platform paths")

    async def _route_changed(self, action: RouteAction, row: asyncpg.Record) -> None:
        # Gateways need the owner to let the project owner through an authRequired upstream.
        owner = None if action == "deleted" else await self._store.owner_of(row["project_id"])
        self._publisher.publish(RouteChanged(action, route_config_data(row, owner), iso_now()))


def route_config_data(row: asyncpg.Record, owner_id: str | None) -> RouteConfigData:
    """A stored route config as gateways receive it: the public view and its owner."""
    public = RouteConfig.view(row)
    return RouteConfigData(
        id=public.id, project_id=public.project_id, path=public.path, method=public.method,
        service=public.service, upstream_url=public.upstream_url,
        rate_limit=public.rate_limit, cache_ttl=public.cache_ttl,
        auth_required=public.auth_required, active=public.active, owner_id=owner_id,
        created_at=public.created_at, updated_at=public.updated_at)


def _conflict(exc: asyncpg.UniqueViolationError, method: str, path: str) -> Conflict:
    if exc.constraint_name == "route_configs_project_path_method":
        return Conflict(CONFLICT_SAME_PROJECT)
    return Conflict(f"Another active route config already serves {method} {path}")


def _overlap_conflict(exc: RouteOverlap) -> Conflict:
    return Conflict(f"Another project's active route config {exc.method} {exc.path} overlaps "
                    "this path")
