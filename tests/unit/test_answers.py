"""Every operation declares its answer; no declared answer or public event carries an internal
field; a service answer that strays from its declaration never leaves the gateway."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import TypeAdapter

from contracts import operations as op
from contracts.errors import InternalError
from contracts.messages import AlertEmitted, AlertTriggered, RequestCompleted
from contracts.operations import Operation, Redirect
from contracts.routes import ROUTES, Route
from gateway.answers import AnswerCheck
from gateway.docs import build_openapi

# Names of what must stay inside the platform: credentials, their hashes, the secrets that
# sign tokens, one-time tokens' digests. Compared case-insensitively without separators.
INTERNAL = {"passwordhash", "password", "keyhash", "keyhashes", "secret", "tokenhash",
            "verificationtokenhash", "resettokenhash", "refreshtokenhash", "accesstokensecret",
            "alertsecret", "emailverifiedat"}


SHOWS_A_NEW_SECRET = (op.WEBHOOK_CREATE, op.WEBHOOK_ROTATE_SECRET)


def _squashed(name: str) -> str:
    return name.replace("_", "").replace("-", "").lower()


def _property_names(schema: Any) -> set[str]:
    """Every property name anywhere in a JSON schema (its $defs included)."""
    names: set[str] = set()
    pending = [schema]
    while pending:
        item = pending.pop()
        if isinstance(item, dict):
            names |= set(item.get("properties", {}))
            pending += item.values()
        elif isinstance(item, list):
            pending += item
    return names


def test_the_openapi_document_is_valid_openapi_3_0():
    from openapi_spec_validator import validate

    document = build_openapi(ROUTES)
    assert document["openapi"] == "3.0.3"
    validate(document)


def test_every_operation_declares_its_answer():
    # only a 204 or a redirect-only operation (a 302 with Location) has no answer body
    assert [r.template for r in ROUTES if r.response is None
            and r.success_status not in (204, Redirect.STATUS)] == []
    document = build_openapi(ROUTES)
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            successes = [(s, r) for s, r in operation["responses"].items() if s.startswith("2")]
            if not successes:
                assert "Location" in operation["responses"]["302"]["headers"], (method, path)
                continue
            [(status, success)] = successes
            if status == "204":
                assert "content" not in success, (method, path)
            else:
                assert success["content"]["application/json"]["schema"], (method, path)


@pytest.mark.parametrize("route", [r for r in ROUTES if r.response is not None],
                         ids=lambda r: r.template)
def test_no_answer_declares_an_internal_field(route: Route):
    names = {_squashed(n) for n in _property_names(TypeAdapter(route.response).json_schema())}
    # a webhook's signing secret is shown once, by the two answers that make one
    shown_once = {"secret"} if route.operation in SHOWS_A_NEW_SECRET else set()
    assert names & INTERNAL == shown_once


def test_no_public_event_carries_an_internal_field():
    completed = RequestCompleted(
        request_id="r", timestamp="2026-01-01T00:00:00.000Z", method="GET", path="/x",
        route=None, status_code=200, latency=1.0, ip="127.0.0.1", user_id="u",
        api_key_id="k", project_id="p", owner_id="o", user_agent="ua", content_length=0,
        error=None)
    triggered = AlertTriggered(
        id="e", rule_id="r", rule_name="n", service="s", metric="error_rate", value=1.0,
        threshold=0.5, operator="gt", message="m", severity="warning",
        timestamp="2026-01-01T00:00:00.000Z", user_id="u", project_id=None)
    emitted = AlertEmitted(type=None, severity="info", message="m", value=None, threshold=None,
                           service=None, timestamp="2026-01-01T00:00:00.000Z")
    for wire in (completed.to_wire(), triggered.to_wire(), triggered.monitor_payload(),
                 emitted.monitor_payload()):
        assert {_squashed(n) for n in wire} & INTERNAL == set()


def _route(operation: Operation) -> Route:
    return next(r for r in ROUTES if r.operation is operation)


ROUTE_CONFIG = {
    "id": "0b7f3c52-54a5-4c1c-9a38-1f6a1b1d0a11", "path": "/a", "method": "GET",
    "service": None, "upstreamUrl": "http://example.com", "projectId": "p", "rateLimit": None,
    "cacheTTL": 30, "authRequired": True, "active": True,
    "createdAt": "2026-01-01T00:00:00.000Z", "updatedAt": "2026-01-01T00:00:00.000Z",
}


def test_an_answer_as_declared_passes():
    AnswerCheck(_route(op.ROUTE_GET))(200, ROUTE_CONFIG)
    AnswerCheck(_route(op.ROUTE_LIST))(200, [ROUTE_CONFIG, ROUTE_CONFIG])


@pytest.mark.parametrize("stray", [{"keyHash": "ab" * 32}, {"ownerId": "u"}])
def test_an_undeclared_field_is_a_500_not_a_leak(stray: dict[str, Any]):
    with pytest.raises(InternalError):
        AnswerCheck(_route(op.ROUTE_GET))(200, {**ROUTE_CONFIG, **stray})


def test_a_missing_or_mistyped_field_is_a_500():
    without = {k: v for k, v in ROUTE_CONFIG.items() if k != "cacheTTL"}
    with pytest.raises(InternalError):
        AnswerCheck(_route(op.ROUTE_GET))(200, without)
    with pytest.raises(InternalError):
        AnswerCheck(_route(op.ROUTE_LIST))(200, ROUTE_CONFIG)  # an object where a list belongs


def test_error_answers_are_not_checked_against_the_success_type():
    AnswerCheck(_route(op.ROUTE_GET))(404, {"error": "NOT_FOUND"})
