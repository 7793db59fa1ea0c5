"""`POST /api/v1/alerts/emit` (docs/api.md section 9.3), answered by the gateway itself: the access
gate has checked `X-Alert-Secret` and the validator the body; the alert is published as
`alert.emitted` for every gateway's monitor relay (admin clients only) and not stored."""

from __future__ import annotations

from aiohttp import web

from contracts.messages import AlertEmitted
from contracts.timeutil import iso_now
from gateway.context import context_of
from gateway.responses import json_response
from gateway.state import state_of


async def emit_alert(request: web.Request) -> web.Response:
    body = context_of(request).body
    state_of(request).publisher.publish(AlertEmitted(
        type=body.get("type"), severity=body["severity"], message=body["message"],
        value=body.get("value"), threshold=body.get("threshold"), service=body.get("service"),
        timestamp=iso_now()))
    return json_response({"received": True})
