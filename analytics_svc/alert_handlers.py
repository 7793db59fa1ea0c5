"""The alert operations of `rpc.analytics` (docs/api.md sections 9.1 and 9.2)."""

from __future__ import annotations

from typing import Any

from analytics_svc.alert_store import AlertStore, EventFilter
from contracts import operations as op
from contracts.broker import RpcCaller
from contracts.errors import NotFound
from contracts.operations import Call
from contracts.rpc import handles
from contracts.schemas.alerts import (
    AcknowledgeBody,
    AlertEvent,
    AlertEventPage,
    AlertEventQuery,
    AlertRule,
    AlertRuleBody,
    AlertRulePatch,
    MongoIdParams,
)
from contracts.tenancy import ensure_project_visible
from contracts.validation import RequestModel, or_none

RULE_NOT_FOUND = "Alert rule not found"
EVENT_NOT_FOUND = "Alert event not found"


class AlertHandlers:
    def __init__(self, store: AlertStore, rpc: RpcCaller) -> None:
        self._store = store
        self._rpc = rpc

    @handles(op.ALERT_RULE_CREATE)
    async def create_rule(self, call: Call[AlertRuleBody, None, None]) -> AlertRule:
        fields = await self._rule_fields(call.body, call)
        return await self._store.create_rule(call.authenticated, fields)

    @handles(op.ALERT_RULE_LIST)
    async def list_rules(self, call: Call[None, None, None]) -> list[AlertRule]:
        return await self._store.rules(call.authenticated)

    @handles(op.ALERT_RULE_GET)
    async def get_rule(self, call: Call[None, None, MongoIdParams]) -> AlertRule:
        rule = await self._store.rule(call.authenticated, call.params.id)
        if rule is None:
            raise NotFound(RULE_NOT_FOUND)
        return rule

    @handles(op.ALERT_RULE_UPDATE)
    async def update_rule(self, call: Call[AlertRulePatch, None, MongoIdParams]) -> AlertRule:
        caller = call.authenticated
        rule_id = call.params.id
        if await self._store.rule(caller, rule_id) is None:
            raise NotFound(RULE_NOT_FOUND)  # before the project check: reveal nothing
        rule = await self._store.update_rule(caller, rule_id,
                                             await self._rule_fields(call.body, call))
        if rule is None:
            raise NotFound(RULE_NOT_FOUND)
        return rule

    @handles(op.ALERT_RULE_DELETE)
    async def delete_rule(self, call: Call[None, None, MongoIdParams]) -> None:
        if not await self._store.delete_rule(call.authenticated, call.params.id):
            raise NotFound(RULE_NOT_FOUND)

    @handles(op.ALERT_EVENT_LIST)
    async def list_events(self, call: Call[None, AlertEventQuery, None]) -> AlertEventPage:
        query = call.query
        where = EventFilter(
            acknowledged=or_none(query.acknowledged), severity=or_none(query.severity),
            service=or_none(query.service), since=or_none(query.since),
            until=or_none(query.to))
        return await self._store.events(call.authenticated, where, limit=query.limit,
                                        offset=query.offset)

    @handles(op.ALERT_EVENT_ACKNOWLEDGE)
    async def acknowledge(self, call: Call[AcknowledgeBody, None, MongoIdParams]) -> AlertEvent:
        caller = call.authenticated
        by = call.body.acknowledged_by
        event = await self._store.acknowledge(
            caller, call.params.id, by if RequestModel.given(by) else caller.email)
        if event is None:
            raise NotFound(EVENT_NOT_FOUND)
        return event

    async def _rule_fields(self, body: AlertRuleBody | AlertRulePatch,
                           call: Call[Any, Any, Any]) -> dict[str, Any]:
        """The body as stored: the rule document keeps the wire's names and JSON values
        (docs/api.md section 12.2), the fields left out of a PUT stay out; a project must be
        visible to the caller."""
        if RequestModel.given(body.project_id):
            await ensure_project_visible(self._rpc, call.authenticated, str(body.project_id),
                                         call.request_id)
        return body.wire()
