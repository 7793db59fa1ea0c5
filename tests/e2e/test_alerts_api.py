"""Alerts (docs/api.md sections 1.3, 9 and 11 `alert:new`) end to end: rule CRUD with every error
code and tenancy, the engine firing on real traffic through the gateway and publishing
`alert.triggered`, events and their acknowledgement, and the external alert bridge."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e.conftest import Stack
from tests.e2e.helpers import (
    ISO_MS,
    BrokerTap,
    Client,
    assert_error,
    assert_invalid,
    assert_not_found,
    call,
    eventually,
    project_with_route,
    register,
    with_role,
)

RULES = "/api/v1/alerts/rules"
EVENTS = "/api/v1/alerts/events"
EMIT = "/api/v1/alerts/emit"
SECRET = "super-secret-alert-key-change-me"  # what the original's e2e check sends
INTERVAL_MS = 1000
RULE_FIELDS = {"id", "_id", "name", "description", "service", "metric", "windowSeconds",
               "threshold", "operator", "enabled", "coolDownSeconds", "severity",
               "projectId", "userId", "createdAt", "updatedAt"}
EVENT_FIELDS = {"id", "_id", "ruleId", "ruleName", "service", "metric", "value", "threshold",
                "operator", "message", "severity", "timestamp", "acknowledged",
                "acknowledgedBy", "acknowledgedAt", "userId", "projectId"}
README_RULE = {"name": "High error rate", "service": "gateway", "metric": "error_rate",
               "windowSeconds": 300, "threshold": 5, "operator": "gt",
               "coolDownSeconds": 600}


@pytest.fixture(scope="module")
def gw_settings() -> dict[str, str]:
    return {"ALERT_INTERVAL_MS": str(INTERVAL_MS), "ALERT_SECRET": SECRET}


@pytest.fixture(scope="module")
def viewer(gw: Stack) -> Client:
    return with_role(gw, register(gw, "viewer"), "VIEWER")


def new_rule(client: Client, **fields: Any) -> dict[str, Any]:
    return client.ok("POST", RULES, {**README_RULE, **fields}, status=201)


# --- rules ---------------------------------------------------------------------------------


def test_a_rule_is_created_with_the_contracts_defaults(alice: Client):
    rule = new_rule(alice)
    assert set(rule) == RULE_FIELDS
    assert rule["id"] == rule["_id"] and len(rule["id"]) == 24
    assert {k: rule[k] for k in ("description", "enabled", "severity", "projectId",
                                 "userId", "coolDownSeconds")} == {
        "description": "", "enabled": True, "severity": None, "projectId": None,
        "userId": alice.user_id, "coolDownSeconds": 600}
    assert ISO_MS.match(rule["createdAt"]) and rule["createdAt"] == rule["updatedAt"]
    assert alice.ok("GET", f"{RULES}/{rule['id']}") == rule


def test_metric_names_of_the_readme_and_of_the_original_code_are_accepted(alice: Client):
    for metric in ("latency_p95", "p95_latency", "request_rate", "5xx_count", "uptime"):
        assert new_rule(alice, metric=metric)["metric"] == metric  # stored as sent


@pytest.mark.parametrize(("body", "fields"), [
    ({}, {"name", "service", "metric", "windowSeconds", "threshold", "operator"}),
    ({**README_RULE, "metric": "cpu"}, {"metric"}),
    ({**README_RULE, "windowSeconds": 5}, {"windowSeconds"}),
    ({**README_RULE, "windowSeconds": 86_401}, {"windowSeconds"}),
    ({**README_RULE, "threshold": "5"}, {"threshold"}),
    ({**README_RULE, "operator": "ne"}, {"operator"}),
    ({**README_RULE, "coolDownSeconds": -1}, {"coolDownSeconds"}),
    ({**README_RULE, "enabled": "yes"}, {"enabled"}),
    ({**README_RULE, "severity": "fatal"}, {"severity"}),
    ({**README_RULE, "projectId": "p1"}, {"projectId"}),
    ({**README_RULE, "name": "  "}, {"name"}),
    ({**README_RULE, "description": "x" * 501}, {"description"}),
])
def test_a_bad_rule_is_refused(alice: Client, body, fields):
    assert_invalid(alice.call("POST", RULES, body), "body", *fields)


def test_a_rule_on_a_project_needs_the_project_to_be_visible(gw, alice: Client, bob: Client,
                                                            upstream):
    project_id, _ = project_with_route(gw, alice.token, upstream, "/alerts-e2e-visible")
    assert new_rule(alice, projectId=project_id)["projectId"] == project_id
    for project in (project_id, str(uuid.uuid4())):
        assert_not_found(bob.call("POST", RULES, {**README_RULE, "projectId": project}),
                         "Project not found")
    rule = new_rule(bob)
    assert_not_found(bob.call("PUT", f"{RULES}/{rule['id']}", {"projectId": project_id}),
                     "Project not found")


def test_update_is_partial_and_delete_answers_204(alice: Client):
    rule = new_rule(alice)
    time.sleep(0.01)
    updated = alice.ok("PUT", f"{RULES}/{rule['id']}", {"threshold": 7.5, "enabled": False,
                                                        "severity": "info"})
    assert {k: updated[k] for k in ("threshold", "enabled", "severity", "name")} == {
        "threshold": 7.5, "enabled": False, "severity": "info", "name": rule["name"]}
    assert updated["updatedAt"] > rule["updatedAt"]
    assert alice.ok("PUT", f"{RULES}/{rule['id']}", {}) ["threshold"] == 7.5
    assert_invalid(alice.call("PUT", f"{RULES}/{rule['id']}", {"operator": "x"}), "body",
                   "operator")
    status, body, _ = alice.call("DELETE", f"{RULES}/{rule['id']}")
    assert (status, body) == (204, None)
    assert_not_found(alice.call("DELETE", f"{RULES}/{rule['id']}"), "Alert rule not found")
    assert_not_found(alice.call("GET", f"{RULES}/{rule['id']}"), "Alert rule not found")


def test_a_malformed_rule_id_is_refused(alice: Client):
    assert_invalid(alice.call("GET", f"{RULES}/not-an-id"), "params", "id")


def test_another_tenants_rules_are_not_found_and_an_admin_sees_all(alice: Client,
                                                                   bob: Client,
                                                                   admin: Client):
    rule = new_rule(alice)
    path = f"{RULES}/{rule['id']}"
    for method, body in (("GET", None), ("PUT", {"threshold": 1}), ("DELETE", None)):
        assert_not_found(bob.call(method, path, body), "Alert rule not found")
    assert rule["id"] not in {r["id"] for r in bob.ok("GET", RULES)}
    mine = alice.ok("GET", RULES)
    assert {r["userId"] for r in mine} == {alice.user_id}
    assert [r["createdAt"] for r in mine] == sorted((r["createdAt"] for r in mine),
                                                    reverse=True)
    assert rule["id"] in {r["id"] for r in admin.ok("GET", RULES)}
    assert admin.ok("PUT", path, {"threshold": 9})["threshold"] == 9
    assert admin.call("DELETE", path)[0] == 204


def test_a_viewer_reads_but_cannot_write_rules(viewer: Client):
    assert viewer.ok("GET", RULES) == []
    assert_error(viewer.call("POST", RULES, README_RULE), 403, "FORBIDDEN")


def test_rules_need_a_token(gw: Stack):
    assert_error(call(gw, "GET", RULES), 401, "UNAUTHORIZED")


# --- the engine ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tap(gw: Stack) -> Iterator[BrokerTap]:
    listener = BrokerTap(gw, "alert.triggered")
    yield listener
    listener.close()


@pytest.fixture(scope="module")
def fired(gw: Stack, alice: Client, upstream, tap: BrokerTap) -> dict[str, Any]:
    """A 10 s request_count rule with threshold 5 on alice's new project, then 10 requests
    to the project's route: the event the engine stored, and what it published."""
    project_id, _ = project_with_route(gw, alice.token, upstream, "/alerts-e2e-busy")
    rule = new_rule(alice, name="Busy project", metric="request_count", windowSeconds=10,
                    threshold=5, operator="gt", coolDownSeconds=300, projectId=project_id)

    def stored() -> list[dict]:
        return [e for e in alice.ok("GET", EVENTS, query={"limit": 100})["events"]
                if e["ruleId"] == rule["id"]]

    time.sleep(2.5 * INTERVAL_MS / 1000)
    assert stored() == []  # no traffic in the project yet
    anonymous = Client(gw.gateway_url)
    assert eventually(lambda: anonymous.call("GET", "/alerts-e2e-busy")[0] == 200)
    for _ in range(9):
        assert anonymous.call("GET", "/alerts-e2e-busy")[0] == 200
    events = eventually(stored, within_s=10)
    assert events, "no alert within 10 s"
    published: list[dict] = []

    def ours() -> bool:  # other modules' rules fire too: their events come through the tap
        published.extend(tap.events())
        return any(e["ruleId"] == rule["id"] for e in published)

    eventually(ours, within_s=10)
    return {"rule": rule, "project": project_id, "event": events[0], "published": published}


def test_a_breach_stores_one_event(fired, alice: Client):
    event, rule = fired["event"], fired["rule"]
    assert set(event) == EVENT_FIELDS
    assert {k: event[k] for k in ("ruleName", "service", "metric", "threshold", "operator",
                                  "severity", "acknowledged", "acknowledgedBy",
                                  "acknowledgedAt", "userId", "projectId")} == {
        "ruleName": "Busy project", "service": "gateway", "metric": "request_count",
        "threshold": 5, "operator": "gt", "severity": "critical", "acknowledged": False,
        "acknowledgedBy": None, "acknowledgedAt": None, "userId": alice.user_id,
        "projectId": fired["project"]}
    assert event["value"] == 10 and event["id"] == event["_id"]
    assert event["message"] == "[CRITICAL] Busy project: request_count = 10 (threshold: 5)"
    # cool-down: the breach goes on, and no second event comes
    time.sleep(2 * INTERVAL_MS / 1000)
    again = [e for e in alice.ok("GET", EVENTS, query={"limit": 100})["events"]
             if e["ruleId"] == rule["id"]]
    assert len(again) == 1


def test_the_breach_is_published_for_the_monitor_relay(fired, alice: Client):
    [published] = [e for e in fired["published"] if e["ruleId"] == fired["rule"]["id"]]
    assert published["id"] == fired["event"]["id"]
    assert published["userId"] == alice.user_id
    assert published["projectId"] == fired["project"]
    assert published["message"] == fired["event"]["message"]


def test_events_are_filtered_and_paged(fired, alice: Client):
    def events(**query: Any) -> dict[str, Any]:
        return alice.ok("GET", EVENTS, query=query)

    mine = events(limit=100)
    assert set(mine) == {"events", "total", "limit", "offset"}
    assert fired["event"]["id"] in {e["id"] for e in events(severity="critical")["events"]}
    assert fired["event"]["id"] not in {e["id"] for e in events(severity="info")["events"]}
    assert fired["event"]["id"] in {e["id"] for e in events(service="gateway")["events"]}
    assert events(service="other")["events"] == []
    assert events(**{"from": "2099-01-01T00:00:00Z"})["events"] == []
    assert events(to="2000-01-01T00:00:00Z")["events"] == []
    page = events(limit=1, offset=0)
    assert page["limit"] == 1 and page["offset"] == 0 and len(page["events"]) == 1
    assert page["total"] == mine["total"]
    assert events(limit=1, offset=mine["total"])["events"] == []


@pytest.mark.parametrize(("query", "field"), [
    ({"acknowledged": "maybe"}, "acknowledged"), ({"severity": "fatal"}, "severity"),
    ({"limit": "0"}, "limit"), ({"limit": "101"}, "limit"), ({"offset": "-1"}, "offset"),
    ({"from": "today"}, "from")])
def test_bad_event_queries_are_refused(alice: Client, query, field):
    assert_invalid(alice.call("GET", EVENTS, query=query), "query", field)


def test_acknowledging_an_event(fired, alice: Client, bob: Client, admin: Client,
                                viewer: Client):
    path = f"{EVENTS}/{fired['event']['id']}/acknowledge"
    assert_not_found(bob.call("PUT", path, {}), "Alert event not found")
    assert fired["event"]["id"] not in {e["id"] for e in bob.ok(
        "GET", EVENTS, query={"limit": 100})["events"]}
    assert_error(viewer.call("PUT", path, {}), 403, "FORBIDDEN")
    first = alice.ok("PUT", path, {})
    assert first["acknowledged"] is True and first["acknowledgedBy"] == alice.email
    assert ISO_MS.match(first["acknowledgedAt"])
    again = alice.ok("PUT", path, {"acknowledgedBy": "on-call"})
    assert again["acknowledgedBy"] == "on-call" and again["acknowledgedAt"] >= \
        first["acknowledgedAt"]
    assert admin.ok("PUT", path, {})["acknowledgedBy"] == admin.email
    acknowledged = alice.ok("GET", EVENTS, query={"acknowledged": "true", "limit": 100})
    assert fired["event"]["id"] in {e["id"] for e in acknowledged["events"]}
    assert_invalid(alice.call("PUT", path, {"acknowledgedBy": ""}), "body", "acknowledgedBy")
    assert_not_found(alice.call("PUT", f"{EVENTS}/{'0' * 24}/acknowledge", {}),
                     "Alert event not found")


# --- the external bridge -------------------------------------------------------------------


def emit(gw: Stack, body: Any, secret: str | None = SECRET):
    headers = {"X-Alert-Secret": secret} if secret is not None else {}
    return call(gw, "POST", EMIT, body, headers=headers)


def test_emit_with_the_secret_is_relayed_to_admins(gw: Stack):
    listener = BrokerTap(gw, "alert.emitted")
    try:
        status, body, _ = emit(gw, {"type": "e2e", "severity": "WARNING",
                                    "message": "Disk almost full", "value": 91.5,
                                    "threshold": 90, "service": "db", "extra": "dropped"})
        assert (status, body) == (200, {"received": True})
        [event] = eventually(listener.events, within_s=5)
        assert {k: v for k, v in event.items() if k != "timestamp"} == {
            "type": "e2e", "severity": "warning", "message": "Disk almost full",
            "value": 91.5, "threshold": 90, "service": "db", "source": "external"}
        assert ISO_MS.match(event["timestamp"])
    finally:
        listener.close()


@pytest.mark.parametrize("secret", [None, "", "wrong", SECRET + "x", SECRET[:-1]])
def test_emit_without_the_right_secret_is_unauthorized(gw: Stack, secret):
    assert_error(emit(gw, {"severity": "info", "message": "x"}, secret), 401, "UNAUTHORIZED",
                 "Invalid alert secret")
    # the secret is checked before the body
    assert_error(emit(gw, {"severity": "loud"}, secret), 401, "UNAUTHORIZED")


@pytest.mark.parametrize(("body", "fields"), [
    ({"message": "x"}, {"severity"}), ({"severity": "loud", "message": "x"}, {"severity"}),
    ({"severity": "info"}, {"message"}), ({"severity": "info", "message": ""}, {"message"}),
    ({"severity": "info", "message": "x", "value": "high"}, {"value"})])
def test_emit_with_a_bad_body_is_refused(gw: Stack, body, fields):
    assert_invalid(emit(gw, body), "body", *fields)
