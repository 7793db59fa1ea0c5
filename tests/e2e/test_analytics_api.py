"""The analytics API (docs/api.md sections 1.3 and 8) end to end: requests through the gateway
become `request.completed` events, the analytics service folds them into rollups, and the
seven endpoints answer from those, per tenant.

Every request made here is itself counted (in the caller's view), so the checks with exact
numbers narrow to a project of this module's own (`projectId`), whose traffic is only the
calls the test makes to its route, or look at a past range where nothing can be.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from tests.e2e.conftest import Stack
from tests.e2e.helpers import (
    Client,
    assert_error,
    assert_invalid,
    assert_not_found,
    call,
    eventually,
    parse_time,
    project_with_route,
    register,
)

ANALYTICS = "/api/v1/analytics"
ENDPOINTS = ("summary", "requests-over-time", "error-rate", "latency", "top-endpoints",
             "top-users", "api-key-usage")
PAST = {"from": "2020-01-01T00:00:00Z", "to": "2020-01-02T00:00:00Z"}
# Gateway event -> broker -> analytics consumer -> PostgreSQL takes well under a second;
# polling allows for a loaded test machine.
FOLDED_WITHIN_S = 15.0


def analytics(client: Client, name: str, **query: Any) -> Any:
    return client.ok("GET", f"{ANALYTICS}/{name}", query=query or None)


@pytest.fixture(scope="module")
def traffic(gw: Stack, alice: Client, bob: Client, upstream) -> dict[str, Any]:
    """Alice's project with an anonymous upstream route, called 5 times by alice, 3 times by
    bob, twice anonymously and twice with the project's API key; then folded."""
    route = f"/e2e-analytics-{uuid.uuid4().hex[:8]}/items/:id"
    project_id, _ = project_with_route(gw, alice.token, upstream, route)
    key = alice.ok("POST", f"/api/v1/projects/{project_id}/keys", {"name": "analytics"},
                   status=201)
    path = route.replace(":id", "7")
    anonymous = Client(gw.gateway_url)
    # the route reaches the gateway by a config event: the first anonymous call waits for it
    assert eventually(lambda: anonymous.call("GET", path)[0] == 200)
    for caller, times in ((alice, 5), (bob, 3), (anonymous, 1)):
        for _ in range(times):
            assert caller.ok("GET", path) is not None
    for _ in range(2):
        status, body, _ = call(gw, "GET", path, headers={"X-API-Key": key["key"]})
        assert status == 200, body
    total = 12
    folded = eventually(lambda: analytics(alice, "summary", projectId=project_id)
                        ["totalRequests"] == total, within_s=FOLDED_WITHIN_S)
    assert folded, analytics(alice, "summary", projectId=project_id)
    return {"project": project_id, "route": route, "key": key["id"], "total": total}


# --- no data -------------------------------------------------------------------------------


def test_a_new_users_first_summary_is_all_zero(gw: Stack):
    carol = register(gw, "carol")  # registering is anonymous: nothing in carol's view yet
    assert analytics(carol, "summary") == {
        "totalRequests": 0, "avgLatency": 0, "minLatency": 0, "maxLatency": 0,
        "p95Latency": 0, "errorRate": 0, "errorCount": 0, "totalErrors": 0,
        "statusBreakdown": {}, "uniqueUsers": 0, "uniqueEndpoints": 0}


@pytest.mark.parametrize("caller", ["alice", "admin"])
def test_a_range_without_traffic_gives_zeros_and_empty_lists(request, caller, traffic):
    client = request.getfixturevalue(caller)
    assert analytics(client, "summary", **PAST)["totalRequests"] == 0
    assert analytics(client, "error-rate", **PAST) == {
        "total": 0, "errors4xx": 0, "errors5xx": 0, "totalErrors": 0, "errorRate": 0}
    assert analytics(client, "latency", **PAST) == {
        "p50": 0, "p95": 0, "p99": 0, "avg": 0, "min": 0, "max": 0}
    for name in ("requests-over-time", "top-endpoints", "top-users", "api-key-usage"):
        assert analytics(client, name, **PAST) == []


# --- with data -----------------------------------------------------------------------------


def test_summary_of_a_project_counts_each_request_once(alice: Client, traffic):
    summary = analytics(alice, "summary", projectId=traffic["project"])
    assert summary["totalRequests"] == traffic["total"]
    assert summary["statusBreakdown"] == {"2xx": traffic["total"]}
    assert summary["errorCount"] == summary["totalErrors"] == 0
    assert summary["errorRate"] == 0
    assert summary["uniqueUsers"] == 2  # alice and bob; anonymous and key calls have none
    assert summary["uniqueEndpoints"] == 1
    assert 0 < summary["minLatency"] <= summary["avgLatency"] <= summary["maxLatency"]
    assert summary["minLatency"] <= summary["p95Latency"] <= summary["maxLatency"]


def test_top_lists_and_time_series_of_a_project(alice: Client, bob: Client, traffic):
    project = {"projectId": traffic["project"]}
    [endpoint] = analytics(alice, "top-endpoints", **project)
    assert (endpoint["method"], endpoint["path"], endpoint["count"]) == \
        ("GET", traffic["route"], traffic["total"])
    assert endpoint["avgLatency"] > 0
    users = analytics(alice, "top-users", **project)
    assert [(u["userId"], u["count"]) for u in users] == [(alice.user_id, 5), (bob.user_id, 3)]
    assert all(parse_time(u["lastActive"]) for u in users)
    assert [(u["userId"], u["count"]) for u in analytics(alice, "top-users", limit=1,
                                                         **project)] == [(alice.user_id, 5)]
    [key] = analytics(alice, "api-key-usage", **project)
    assert (key["apiKeyId"], key["count"]) == (traffic["key"], 2)
    parse_time(key["lastUsed"])
    for interval in ("hour", "day"):
        series = analytics(alice, "requests-over-time", interval=interval, **project)
        assert sum(point["count"] for point in series) == traffic["total"]
        starts = [parse_time(point["date"]) for point in series]
        assert starts == sorted(starts)
        assert all(s.minute == s.second == 0 for s in starts)
    assert analytics(alice, "error-rate", **project) == {
        "total": traffic["total"], "errors4xx": 0, "errors5xx": 0, "totalErrors": 0,
        "errorRate": 0}
    latency = analytics(alice, "latency", **project)
    assert set(latency) == {"p50", "p95", "p99", "avg", "min", "max"}
    assert latency["min"] <= latency["p50"] <= latency["p95"] <= latency["p99"] \
        <= latency["max"]


def test_unmatched_requests_are_one_endpoint(gw: Stack, admin: Client):
    # a path no route matches is not authenticated: it counts in the all-traffic view only
    def unmatched() -> dict[str, Any]:
        rows = [e for e in analytics(admin, "top-endpoints", limit=100)
                if e["path"] == "(unmatched)"]
        return {(row["method"], row["path"]): row["count"] for row in rows}

    before = unmatched()
    for index in range(3):
        status, _, _ = call(gw, "GET", f"/no-such-thing-{uuid.uuid4().hex}/{index}")
        assert status == 404
    status, _, _ = call(gw, "DELETE", f"/no-such-thing-{uuid.uuid4().hex}")
    assert status == 404
    # other modules of the session may have sent unmatched requests before: count from there
    expected = {**before, ("GET", "(unmatched)"): before.get(("GET", "(unmatched)"), 0) + 3,
                ("DELETE", "(unmatched)"): before.get(("DELETE", "(unmatched)"), 0) + 1}
    assert eventually(lambda: unmatched() == expected, within_s=FOLDED_WITHIN_S), unmatched()
    errors = analytics(admin, "error-rate")
    assert errors["errors4xx"] >= 4 and 0 < errors["errorRate"] <= 100


# --- tenancy -------------------------------------------------------------------------------


def test_a_caller_sees_their_own_calls_to_another_tenants_route(bob: Client, traffic):
    # bob owns no project: his view holds his own requests only, 3 of them to alice's route
    rows = [e for e in analytics(bob, "top-endpoints", limit=100)
            if e["path"] == traffic["route"]]
    assert [row["count"] for row in rows] == [3]
    assert [u["userId"] for u in analytics(bob, "top-users", limit=100)] == [bob.user_id]
    assert analytics(bob, "api-key-usage", limit=100) == []


def test_another_tenants_project_is_not_found(bob: Client, traffic):
    for name in ENDPOINTS:
        assert_not_found(bob.call("GET", f"{ANALYTICS}/{name}",
                                  query={"projectId": traffic["project"]}),
                         "Project not found")


def test_a_tenant_never_sees_another_tenants_traffic(gw: Stack, alice: Client, traffic):
    erin = register(gw, "erin")
    assert analytics(erin, "top-endpoints", limit=100) == []
    ids = {u["userId"] for u in analytics(erin, "top-users", limit=100)}
    assert alice.user_id not in ids
    assert analytics(erin, "api-key-usage", limit=100) == []


def test_an_admin_sees_every_tenants_traffic(admin: Client, alice: Client, bob: Client,
                                             traffic):
    assert analytics(admin, "summary", projectId=traffic["project"])["totalRequests"] == \
        traffic["total"]
    rows = [e for e in analytics(admin, "top-endpoints", limit=100)
            if e["path"] == traffic["route"]]
    assert [row["count"] for row in rows] == [traffic["total"]]
    ids = {u["userId"] for u in analytics(admin, "top-users", limit=100)}
    assert {alice.user_id, bob.user_id} <= ids
    everything = analytics(admin, "summary")["totalRequests"]
    assert everything >= analytics(alice, "summary")["totalRequests"] + traffic["total"] - 5


# --- refusals ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ENDPOINTS)
def test_analytics_need_a_token(gw: Stack, name: str):
    assert_error(call(gw, "GET", f"{ANALYTICS}/{name}"), 401, "UNAUTHORIZED")


@pytest.mark.parametrize(("query", "field"), [
    ({"from": "yesterday"}, "from"),
    ({"to": "2026-01-01T00:00:00+02:00"}, "to"),
    ({"interval": "week"}, "interval"),
    ({"limit": "0"}, "limit"),
    ({"limit": "101"}, "limit"),
    ({"limit": "ten"}, "limit"),
    ({"projectId": "not-a-uuid"}, "projectId"),
    ({"from": "2026-01-02T00:00:00Z", "to": "2026-01-01T00:00:00Z"}, "to"),
])
def test_bad_parameters_are_refused(alice: Client, query: dict[str, str], field: str):
    for name in ENDPOINTS:
        assert_invalid(alice.call("GET", f"{ANALYTICS}/{name}", query=query), "query", field)


def test_an_unknown_project_is_not_found(alice: Client):
    assert_not_found(alice.call("GET", f"{ANALYTICS}/summary",
                                query={"projectId": str(uuid.uuid4())}), "Project not found")
