"""The alert operations of `rpc.analytics` (docs/api.md sections 9.1 and 9.2)."""

from __future__ import annotations

from typing import Any

from analytics_svc.alert_store import AlertStore, EventFilter
from contracts.errors import NotFound
from contracts.messages import RpcRequest
from contracts.rpc import Reply, RpcClient, operation
from contracts.tenancy import ensure_project_visible
from contracts.timeutil import parse_iso

RULE_NOT_FOUND = "Alert rule not found"
EVENT_NOT_FOUND = "Alert event not found"


class AlertHandlers:
    def __init__(self, store: AlertStore, rpc: RpcClient) -> None:
        self._store = store
        self._rpc = rpc

    @operation("alert.rule_create")
    async def create_rule(self, request: RpcRequest) -> Reply:
        fields = await self._rule_fields(request)
        return Reply(await self._store.create_rule(request.authenticated, fields), status=201)

    @operation("alert.rule_list")
    async def list_rules(self, request: RpcRequest) -> list[dict[str, Any]]:
        return await self._store.rules(request.authenticated)

    @operation("alert.rule_get")
    async def get_rule(self, request: RpcRequest) -> dict[str, Any]:
        rule = await self._store.rule(request.authenticated, request.params["id"])
        if rule is None:
            raise NotFound(RULE_NOT_FOUND)
        return rule

    @operation("alert.rule_update")
    async def update_rule(self, request: RpcRequest) -> dict[str, Any]:
        caller = request.authenticated
        rule_id = request.params["id"]
        if await self._store.rule(caller, rule_id) is None:
            raise NotFound(RULE_NOT_FOUND)  # before the project check: reveal nothing
        rule = await self._store.update_rule(caller, rule_id, await self._rule_fields(request))
        if rule is None:
            raise NotFound(RULE_NOT_FOUND)
        return rule

    @operation("alert.rule_delete")
    async def delete_rule(self, request: RpcRequest) -> Reply:
        if not await self._store.delete_rule(request.authenticated, request.params["id"]):
            raise NotFound(RULE_NOT_FOUND)
        return Reply(None, status=204)

    @operation("alert.event_list")
    async def list_events(self, request: RpcRequest) -> dict[str, Any]:
        query = request.query
        since, until = query.get("from"), query.get("to")
        where = EventFilter(
            acknowledged=query.get("acknowledged"), severity=query.get("severity"),
            service=query.get("service"), since=parse_iso(since) if since else None,
            until=parse_iso(until) if until else None)
        return await self._store.events(request.authenticated, where, limit=query["limit"],
                                        offset=query["offset"])

    @operation("alert.event_acknowledge")
    async def acknowledge(self, request: RpcRequest) -> dict[str, Any]:
        caller = request.authenticated
        by = (request.body or {}).get("acknowledgedBy") or caller.email
        event = await self._store.acknowledge(caller, request.params["id"], by)
        if event is None:
            raise NotFound(EVENT_NOT_FOUND)
        return event

    async def _rule_fields(self, request: RpcRequest) -> dict[str, Any]:
        """The validated body as stored; a project must be visible to the caller."""
        fields = dict(request.body or {})
        if fields.get("projectId") is not None:
            fields["projectId"] = str(fields["projectId"])
            await ensure_project_visible(self._rpc, request.authenticated, fields["projectId"],
                                         request.request_id)
        return fields
