"""Tenancy rules that more than one service applies (docs/api.md section 1.3)."""

from __future__ import annotations

from contracts import operations as op
from contracts.broker import RpcCaller
from contracts.identity import Caller
from contracts.messages import RpcRequest
from contracts.names import SERVICES, Service

PROJECT_QUEUE = SERVICES[Service.PROJECT].rpc_queue

# The analytics view of all traffic: an admin's. Every other view is named by a user id.
ALL_TRAFFIC = "*"


async def ensure_project_visible(rpc: RpcCaller, caller: Caller, project_id: str,
                                 request_id: str | None) -> None:
    """Raise NotFound (`Project not found`) unless `caller` may see the project: the project
    service owns that rule, so it is asked rather than repeated here."""
    await rpc.call(PROJECT_QUEUE, op.PROJECT_GET, RpcRequest(
        params={"id": project_id}, caller=caller, request_id=request_id))


def analytics_view(caller: Caller) -> str:
    """Whose traffic the caller's analytics cover: all of it for an admin, else the requests
    whose userId or ownerId is the caller (one view per user id)."""
    return ALL_TRAFFIC if caller.is_admin else caller.user_id
