"""The project service API (docs/api.md sections 1, 2, 4, 5 and 6) end to end: projects, API keys
and route configs, driven through the gateway against the real project service, its
PostgreSQL database and the `gw.events` exchange.

Every test of this module shares one stack and one database, so each one works on projects
of its own, and every route config path starts with a unique `/e2e-<hex>` segment: the
gateway's path space is global (docs/api.md 6.3), and a clash with another test's config would
give a 409 that this test did not cause.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import re
import time
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from typing import Any, TypeVar

import aio_pika
import pytest

from contracts.messages import (
    ConfigEvent,
    KeyRevoked,
    ProjectDeleted,
    RouteChanged,
    decode_events,
)
from contracts.names import EVENTS_EXCHANGE
from tests.e2e.conftest import Stack
from tests.e2e.helpers import (
    ISO_MS,
    UUID4,
    Client,
    assert_error,
    assert_invalid,
    assert_not_found,
    parse_time,
    register,
    sql,
    with_role,
)

VIEWER_REFUSAL = ("Read-only role cannot perform {} operations. "
                  "View only roles cannot modify resources.")
SAME_PROJECT_CLASH = "Route config already exists for this project, path, and method"
PUBLIC_UPSTREAM = "https://93.184.216.34/v1"  # an IP literal: there is no DNS here

PROJECT_FIELDS = {"id", "name", "description", "userId", "active", "createdAt", "updatedAt"}
KEY_FIELDS = {"id", "prefix", "name", "active", "lastUsedAt", "expiresAt", "createdAt",
              "revokedAt"}
NEW_KEY_FIELDS = {"id", "key", "rawKey", "prefix", "name", "projectId", "expiresAt",
                  "createdAt"}
ROUTE_FIELDS = {"id", "path", "method", "service", "upstreamUrl", "projectId", "rateLimit",
                "cacheTTL", "authRequired", "active", "createdAt", "updatedAt"}
ACTIVE_ROUTE_FIELDS = {"id", "projectId", "path", "method", "service", "upstreamUrl",
                       "rateLimit", "cacheTTL", "authRequired"}

RAW_KEY = re.compile(r"^gw_[0-9a-f]{64}$")


# --- users ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def owner(shared_stack: Stack) -> Client:
    return register(shared_stack, "owner")


@pytest.fixture(scope="module")
def stranger(shared_stack: Stack) -> Client:
    """A second developer, who must never see the owner's resources."""
    return register(shared_stack, "stranger")


@pytest.fixture(scope="module")
def admin(shared_stack: Stack) -> Client:
    return with_role(shared_stack, register(shared_stack, "admin"), "ADMIN")


@pytest.fixture(scope="module")
def anonymous(shared_stack: Stack) -> Client:
    return Client(shared_stack.gateway_url)


# --- resources -----------------------------------------------------------------------------


def unique_path(rest: str = "/items") -> str:
    return f"/e2e-{uuid.uuid4().hex[:12]}{rest}"


def new_project(client: Client, name: str = "Project", **extra: Any) -> dict[str, Any]:
    return client.ok("POST", "/api/v1/projects", {"name": name, **extra}, 201)


def new_key(client: Client, project_id: str, name: str = "key", **extra: Any
            ) -> dict[str, Any]:
    return client.ok("POST", f"/api/v1/projects/{project_id}/keys", {"name": name, **extra}, 201)


def route_body(**fields: Any) -> dict[str, Any]:
    """A valid service route config on a unique path, with `fields` changed (`...` drops)."""
    body = {"path": unique_path(), "method": "GET", "service": "project-service", **fields}
    return {name: value for name, value in body.items() if value is not ...}


def new_route(client: Client, project_id: str, **fields: Any) -> dict[str, Any]:
    return client.ok("POST", f"/api/v1/projects/{project_id}/routes", route_body(**fields), 201)


def valid_body(method: str, path: str) -> dict[str, Any] | None:
    """A body that the endpoint's schema accepts, so that only the path id can be wrong."""
    if method in ("GET", "DELETE"):
        return None
    if path.endswith("/keys"):
        return {"name": "k"}
    if path.endswith("/routes"):
        return route_body()
    if path.startswith("/api/v1/routes/"):
        return {"rateLimit": 5}
    return {"name": "Name"}


def verify(client: Client, raw_key: str) -> dict[str, Any]:
    return client.ok("GET", "/api/v1/keys/verify", query={"hash": sha256(raw_key)})


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def poll(read: Callable[[], Any], done: Callable[[Any], bool], timeout: float) -> Any:
    """Call `read` until `done` holds for its value (returned) or `timeout` seconds pass."""
    deadline = time.monotonic() + timeout
    while True:
        value = read()
        if done(value) or time.monotonic() > deadline:
            return value
        time.sleep(0.1)


# --- projects ------------------------------------------------------------------------------


def test_create_project_is_owned_by_the_caller_whatever_the_body_says(owner, stranger):
    forged_id = str(uuid.uuid4())
    project = new_project(owner, "  Payments API  ", description="  Takes money.  ",
                          userId=stranger.user_id, id=forged_id,
                          createdAt="2001-01-01T00:00:00.000Z", active=False)

    assert set(project) == PROJECT_FIELDS
    assert UUID4.match(project["id"]) and project["id"] != forged_id
    assert project["userId"] == owner.user_id
    assert project["name"] == "Payments API"
    assert project["description"] == "Takes money."
    assert project["active"] is True
    created = parse_time(project["createdAt"])
    assert abs(created.timestamp() - time.time()) < 60
    assert parse_time(project["updatedAt"]) >= created
    assert owner.ok("GET", f"/api/v1/projects/{project['id']}") == project


def test_a_project_without_description_has_null(owner):
    project = new_project(owner, "No description")
    assert project["description"] is None


@pytest.mark.parametrize(("body", "field"), [
    ({}, "name"),
    ({"name": "a"}, "name"),
    ({"name": "  a  "}, "name"),  # counted after trimming
    ({"name": "n" * 101}, "name"),
    ({"name": 42}, "name"),
    ({"name": "Fine", "description": "d" * 501}, "description"),
])
def test_create_project_validation(owner, body, field):
    assert_invalid(owner.call("POST", "/api/v1/projects", body), "body", field)


def test_create_project_accepts_the_length_limits(owner):
    project = new_project(owner, "n" * 100, description="d" * 500)
    assert len(project["name"]) == 100 and len(project["description"]) == 500
    assert new_project(owner, "ab")["name"] == "ab"


def test_list_pages_sorts_and_counts(shared_stack):
    lister = register(shared_stack, "lister")
    for name in ("p-c", "p-a", "p-e", "p-b", "p-d"):
        new_project(lister, name)

    def names(**query: Any) -> list[str]:
        return [p["name"] for p in lister.ok("GET", "/api/v1/projects", query=query)["projects"]]

    everything = lister.ok("GET", "/api/v1/projects")
    assert {k: everything[k] for k in ("total", "page", "limit", "totalPages")} == {
        "total": 5, "page": 1, "limit": 20, "totalPages": 1}
    assert [p["name"] for p in everything["projects"]] == ["p-d", "p-b", "p-e", "p-a", "p-c"]
    assert all(p["userId"] == lister.user_id for p in everything["projects"])

    assert names(sort="name", order="asc") == ["p-a", "p-b", "p-c", "p-d", "p-e"]
    assert names(sort="name") == ["p-e", "p-d", "p-c", "p-b", "p-a"]
    assert names(sort="createdAt", order="asc") == ["p-c", "p-a", "p-e", "p-b", "p-d"]
    assert names(sort="updatedAt", order="asc") == ["p-c", "p-a", "p-e", "p-b", "p-d"]

    pages = [lister.ok("GET", "/api/v1/projects",
                       query={"page": page, "limit": 2, "sort": "name", "order": "asc"})
             for page in (1, 2, 3, 4)]
    assert [[p["name"] for p in page["projects"]] for page in pages] == [
        ["p-a", "p-b"], ["p-c", "p-d"], ["p-e"], []]
    for number, page in enumerate(pages, start=1):
        assert (page["total"], page["page"], page["limit"], page["totalPages"]) == (
            5, number, 2, math.ceil(5 / 2))
    assert lister.ok("GET", "/api/v1/projects", query={"limit": 100})["limit"] == 100


def test_a_developer_without_projects_gets_an_empty_list(shared_stack):
    newcomer = register(shared_stack, "newcomer")
    assert newcomer.ok("GET", "/api/v1/projects") == {
        "projects": [], "total": 0, "page": 1, "limit": 20, "totalPages": 0}


@pytest.mark.parametrize(("query", "field"), [
    ({"limit": 101}, "limit"),
    ({"limit": 0}, "limit"),
    ({"limit": "ten"}, "limit"),
    ({"page": 0}, "page"),
    ({"page": -1}, "page"),
    ({"sort": "password"}, "sort"),
    ({"sort": "user_id"}, "sort"),
    ({"order": "up"}, "order"),
])
def test_list_query_validation(owner, query, field):
    assert_invalid(owner.call("GET", "/api/v1/projects", query=query), "query", field)


@pytest.mark.parametrize("page", [2**62, 10**20])
def test_a_huge_page_is_an_empty_page_or_refused(owner, page):
    response = owner.call("GET", "/api/v1/projects", query={"page": page})
    if response[0] == 400:
        assert_invalid(response, "query", "page")
    else:
        assert response[0] == 200 and response[1]["projects"] == [], response[:2]


@pytest.mark.parametrize("method", ["PATCH", "PUT"])
def test_patch_and_put_are_partial_updates(owner, method):
    project = new_project(owner, "Before", description="Kept")
    path = f"/api/v1/projects/{project['id']}"

    renamed = owner.ok(method, path, {"name": "  After  ", "userId": str(uuid.uuid4()),
                                      "active": False})
    assert renamed["name"] == "After" and renamed["description"] == "Kept"
    assert renamed["userId"] == owner.user_id and renamed["active"] is True
    assert renamed["createdAt"] == project["createdAt"]
    assert parse_time(renamed["updatedAt"]) >= parse_time(project["updatedAt"])

    described = owner.ok(method, path, {"description": "  New text "})
    assert (described["name"], described["description"]) == ("After", "New text")
    assert owner.ok(method, path, {"description": None})["description"] is None
    assert owner.ok(method, path, {})["name"] == "After"
    assert owner.ok("GET", path)["name"] == "After"

    assert_invalid(owner.call(method, path, {"name": "x"}), "body", "name")
    assert_invalid(owner.call(method, path, {"description": "d" * 501}), "body", "description")


def test_delete_project_then_it_is_gone(owner):
    project = new_project(owner, "Short-lived")
    path = f"/api/v1/projects/{project['id']}"
    assert owner.ok("DELETE", path) == {"message": "Project deleted"}
    for method, body in (("GET", None), ("PATCH", {"name": "Again"}), ("PUT", {"name": "Again"}),
                         ("DELETE", None)):
        assert_not_found(owner.call(method, path, body), "Project not found")
    assert project["id"] not in {p["id"] for p in
                                 owner.ok("GET", "/api/v1/projects",
                                          query={"limit": 100})["projects"]}


@pytest.mark.parametrize(("method", "path", "field"), [
    ("GET", "/api/v1/projects/not-a-uuid", "id"),
    ("PATCH", "/api/v1/projects/123", "id"),
    ("PUT", "/api/v1/projects/123", "id"),
    ("DELETE", "/api/v1/projects/123", "id"),
    ("GET", "/api/v1/projects/123/keys", "projectId"),
    ("POST", "/api/v1/projects/123/keys", "projectId"),
    ("GET", "/api/v1/projects/123/routes", "projectId"),
    ("POST", "/api/v1/projects/123/routes", "projectId"),
    ("DELETE", "/api/v1/keys/123", "id"),
    ("GET", "/api/v1/routes/123", "id"),
    ("PATCH", "/api/v1/routes/123", "id"),
    ("DELETE", "/api/v1/routes/123", "id"),
])
def test_malformed_ids_are_refused_as_params(owner, method, path, field):
    details = assert_invalid(owner.call(method, path, valid_body(method, path)), "params", field)
    assert details[0]["code"] == "invalid_string"


@pytest.mark.parametrize(("method", "template", "message"), [
    ("GET", "/api/v1/projects/{}", "Project not found"),
    ("PATCH", "/api/v1/projects/{}", "Project not found"),
    ("PUT", "/api/v1/projects/{}", "Project not found"),
    ("DELETE", "/api/v1/projects/{}", "Project not found"),
    ("GET", "/api/v1/projects/{}/keys", "Project not found"),
    ("POST", "/api/v1/projects/{}/keys", "Project not found"),
    ("GET", "/api/v1/projects/{}/routes", "Project not found"),
    ("POST", "/api/v1/projects/{}/routes", "Project not found"),
    ("DELETE", "/api/v1/keys/{}", "API key not found"),
    ("GET", "/api/v1/routes/{}", "Route config not found"),
    ("PATCH", "/api/v1/routes/{}", "Route config not found"),
    ("DELETE", "/api/v1/routes/{}", "Route config not found"),
])
def test_unknown_well_formed_ids_are_404(owner, method, template, message):
    path = template.format(uuid.uuid4())
    assert_not_found(owner.call(method, path, valid_body(method, path)), message)


# --- tenancy and roles ---------------------------------------------------------------------


def test_another_developer_sees_nothing_of_a_project(owner, stranger):
    project = new_project(owner, "Private", description="Mine")
    key = new_key(owner, project["id"])
    route = new_route(owner, project["id"])
    pid = project["id"]

    refusals = [
        ("GET", f"/api/v1/projects/{pid}", None, "Project not found"),
        ("PATCH", f"/api/v1/projects/{pid}", {"name": "Taken"}, "Project not found"),
        ("PUT", f"/api/v1/projects/{pid}", {"name": "Taken"}, "Project not found"),
        ("DELETE", f"/api/v1/projects/{pid}", None, "Project not found"),
        ("GET", f"/api/v1/projects/{pid}/keys", None, "Project not found"),
        ("POST", f"/api/v1/projects/{pid}/keys", {"name": "mine now"}, "Project not found"),
        ("GET", f"/api/v1/projects/{pid}/routes", None, "Project not found"),
        ("POST", f"/api/v1/projects/{pid}/routes", route_body(), "Project not found"),
        ("DELETE", f"/api/v1/keys/{key['id']}", None, "API key not found"),
        ("GET", f"/api/v1/routes/{route['id']}", None, "Route config not found"),
        ("PATCH", f"/api/v1/routes/{route['id']}", {"active": False}, "Route config not found"),
        ("DELETE", f"/api/v1/routes/{route['id']}", None, "Route config not found"),
    ]
    for method, path, body, message in refusals:
        assert_not_found(stranger.call(method, path, body), message)

    # nothing changed
    assert owner.ok("GET", f"/api/v1/projects/{pid}") == project
    [listed_key] = owner.ok("GET", f"/api/v1/projects/{pid}/keys")
    assert listed_key["active"] is True and listed_key["revokedAt"] is None
    assert owner.ok("GET", f"/api/v1/routes/{route['id']}") == route
    assert verify(owner, key["rawKey"])["valid"] is True


def test_lists_never_contain_other_tenants_items(owner, stranger):
    mine = new_project(owner, "Owner's")
    theirs = new_project(stranger, "Stranger's")

    def listed(client: Client) -> set[str]:
        return {p["id"] for p in client.ok("GET", "/api/v1/projects",
                                           query={"limit": 100})["projects"]}

    assert mine["id"] in listed(owner) and theirs["id"] not in listed(owner)
    assert theirs["id"] in listed(stranger) and mine["id"] not in listed(stranger)
    listing = stranger.ok("GET", "/api/v1/projects", query={"limit": 100})
    assert {p["userId"] for p in listing["projects"]} == {stranger.user_id}
    assert listing["total"] == len(listing["projects"])


def test_an_admin_sees_and_changes_everything(owner, stranger, admin):
    first, second = new_project(owner, "Owner's"), new_project(stranger, "Stranger's")
    listing = admin.ok("GET", "/api/v1/projects", query={"limit": 100})
    assert {first["id"], second["id"]} <= {p["id"] for p in listing["projects"]}
    assert {owner.user_id, stranger.user_id} <= {p["userId"] for p in listing["projects"]}
    assert listing["total"] >= 2

    pid = first["id"]
    assert admin.ok("GET", f"/api/v1/projects/{pid}") == first
    renamed = admin.ok("PATCH", f"/api/v1/projects/{pid}", {"name": "Renamed by admin"})
    assert renamed["name"] == "Renamed by admin" and renamed["userId"] == owner.user_id
    assert admin.ok("PUT", f"/api/v1/projects/{pid}", {"description": "x"})["userId"] == \
        owner.user_id

    owners_key = new_key(owner, pid, "owner's key")
    admins_key = new_key(admin, pid, "admin's key")
    assert admins_key["projectId"] == pid
    assert [k["id"] for k in admin.ok("GET", f"/api/v1/projects/{pid}/keys")] == [
        admins_key["id"], owners_key["id"]]
    assert admin.ok("DELETE", f"/api/v1/keys/{owners_key['id']}") == {
        "message": "API key revoked"}

    route = new_route(admin, pid)
    assert route["projectId"] == pid
    assert owner.ok("GET", f"/api/v1/routes/{route['id']}") == route
    assert admin.ok("PATCH", f"/api/v1/routes/{route['id']}", {"cacheTTL": 5})["cacheTTL"] == 5
    assert [r["id"] for r in admin.ok("GET", f"/api/v1/projects/{pid}/routes")] == [route["id"]]
    assert admin.ok("DELETE", f"/api/v1/routes/{route['id']}") == {
        "message": "Route config deleted"}
    assert admin.ok("DELETE", f"/api/v1/projects/{pid}") == {"message": "Project deleted"}
    assert_not_found(owner.call("GET", f"/api/v1/projects/{pid}"), "Project not found")


def test_a_viewer_reads_but_never_writes(shared_stack, owner):
    developer = register(shared_stack, "demoted")
    project = new_project(developer, "Made before demotion")
    key = new_key(developer, project["id"])
    route = new_route(developer, project["id"])
    foreign = new_project(owner, "Not the viewer's")
    viewer = with_role(shared_stack, developer, "VIEWER")
    pid = project["id"]

    writes = [
        ("POST", "/api/v1/projects", {"name": "Nope"}),
        ("PATCH", f"/api/v1/projects/{pid}", {"name": "Nope"}),
        ("PUT", f"/api/v1/projects/{pid}", {"name": "Nope"}),
        ("DELETE", f"/api/v1/projects/{pid}", None),
        ("DELETE", f"/api/v1/projects/{foreign['id']}", None),
        ("POST", f"/api/v1/projects/{pid}/keys", {"name": "k"}),
        ("DELETE", f"/api/v1/keys/{key['id']}", None),
        ("POST", f"/api/v1/projects/{pid}/routes", route_body()),
        ("PATCH", f"/api/v1/routes/{route['id']}", {"active": False}),
        ("DELETE", f"/api/v1/routes/{route['id']}", None),
    ]
    for method, path, body in writes:
        assert_error(viewer.call(method, path, body), 403, "FORBIDDEN",
                     VIEWER_REFUSAL.format(method))

    assert viewer.ok("GET", f"/api/v1/projects/{pid}") == project
    assert [p["id"] for p in viewer.ok("GET", "/api/v1/projects")["projects"]] == [pid]
    assert [k["id"] for k in viewer.ok("GET", f"/api/v1/projects/{pid}/keys")] == [key["id"]]
    assert viewer.ok("GET", f"/api/v1/projects/{pid}/routes") == [route]
    assert viewer.ok("GET", f"/api/v1/routes/{route['id']}") == route
    assert_not_found(viewer.call("GET", f"/api/v1/projects/{foreign['id']}"),
                     "Project not found")
    assert owner.ok("GET", f"/api/v1/projects/{foreign['id']}") == foreign


def test_listing_all_active_routes_is_for_admins_only(shared_stack, owner, admin):
    project = new_project(owner, "Routes for the admin list")
    shown = new_route(owner, project["id"], rateLimit=7, cacheTTL=9)
    hidden = new_route(owner, project["id"])
    owner.ok("PATCH", f"/api/v1/routes/{hidden['id']}", {"active": False})

    assert_error(owner.call("GET", "/api/v1/routes"), 403, "FORBIDDEN",
                 "Insufficient permissions")
    viewer = with_role(shared_stack, register(shared_stack, "viewer"), "VIEWER")
    assert_error(viewer.call("GET", "/api/v1/routes"), 403, "FORBIDDEN",
                 "Insufficient permissions")

    listed = admin.ok("GET", "/api/v1/routes")
    assert all(set(item) == ACTIVE_ROUTE_FIELDS for item in listed), listed[:3]
    by_id = {item["id"]: item for item in listed}
    assert hidden["id"] not in by_id
    assert by_id[shown["id"]] == {name: shown[name] for name in ACTIVE_ROUTE_FIELDS}


# --- API keys ------------------------------------------------------------------------------


def test_create_key_shows_the_raw_key_once(owner):
    project = new_project(owner, "Keys")
    key = new_key(owner, project["id"], "  Primary  ", userId=str(uuid.uuid4()))

    assert set(key) == NEW_KEY_FIELDS
    assert UUID4.match(key["id"])
    assert key["key"] == key["rawKey"] and RAW_KEY.match(key["rawKey"])
    assert key["prefix"] == key["rawKey"][:10] + "..."
    assert (key["name"], key["projectId"], key["expiresAt"]) == ("Primary", project["id"], None)
    parse_time(key["createdAt"])

    [listed] = owner.ok("GET", f"/api/v1/projects/{project['id']}/keys")
    assert set(listed) == KEY_FIELDS
    assert listed == {"id": key["id"], "prefix": key["prefix"], "name": "Primary",
                      "active": True, "lastUsedAt": None, "expiresAt": None,
                      "createdAt": key["createdAt"], "revokedAt": None}
    assert key["rawKey"] not in str(listed) and sha256(key["rawKey"]) not in str(listed)


@pytest.mark.parametrize("days", [30, "30", 1, 365])
def test_expires_in_days_sets_the_expiry(owner, days):
    project = new_project(owner, "Expiring keys")
    key = new_key(owner, project["id"], expiresInDays=days)
    lifetime = parse_time(key["expiresAt"]) - parse_time(key["createdAt"])
    assert abs(lifetime - timedelta(days=int(days))) < timedelta(seconds=1)


@pytest.mark.parametrize(("body", "field"), [
    ({"name": "k", "expiresInDays": 0}, "expiresInDays"),
    ({"name": "k", "expiresInDays": 366}, "expiresInDays"),
    ({"name": "k", "expiresInDays": "soon"}, "expiresInDays"),
    ({"name": "k", "expiresInDays": True}, "expiresInDays"),
    ({}, "name"),
    ({"name": ""}, "name"),
    ({"name": "   "}, "name"),
    ({"name": "n" * 101}, "name"),
])
def test_create_key_validation(owner, body, field):
    project = new_project(owner, "Bad keys")
    assert_invalid(owner.call("POST", f"/api/v1/projects/{project['id']}/keys", body),
                   "body", field)
    assert owner.ok("GET", f"/api/v1/projects/{project['id']}/keys") == []


def test_a_fractional_expires_in_days_is_refused(owner):
    project = new_project(owner, "Fractional expiry")
    response = owner.call("POST", f"/api/v1/projects/{project['id']}/keys",
                          {"name": "k", "expiresInDays": 1.5})
    assert_invalid(response, "body", "expiresInDays")


def test_keys_are_listed_newest_first_revoked_included(owner):
    project = new_project(owner, "Many keys")
    created = [new_key(owner, project["id"], f"key {n}") for n in range(3)]
    owner.ok("DELETE", f"/api/v1/keys/{created[1]['id']}")

    listed = owner.ok("GET", f"/api/v1/projects/{project['id']}/keys")
    assert [k["id"] for k in listed] == [k["id"] for k in reversed(created)]
    assert [k["active"] for k in listed] == [True, False, True]
    assert listed[1]["revokedAt"] is not None
    assert all(set(k) == KEY_FIELDS for k in listed)


def test_verify_answers_by_hash(owner, anonymous):
    project = new_project(owner, "Verified keys")
    key = new_key(owner, project["id"])

    answer = verify(anonymous, key["rawKey"])
    assert answer["valid"] is True
    assert {k: answer["key"][k] for k in ("id", "projectId", "userId")} == {
        "id": key["id"], "projectId": project["id"], "userId": owner.user_id}
    assert "reason" not in answer
    assert verify(anonymous, "gw_" + "0" * 64) == {"valid": False, "reason": "Key not found"}


@pytest.mark.parametrize("query", [
    {}, {"hash": ""}, {"hash": "abc"}, {"hash": "g" * 64},
    {"hash": "a" * 65},
])
def test_verify_refuses_a_missing_or_malformed_hash(anonymous, query):
    assert_invalid(anonymous.call("GET", "/api/v1/keys/verify", query=query), "query", "hash")


def test_revoke_is_soft_immediate_and_idempotent(owner):
    project = new_project(owner, "Revocation")
    key = new_key(owner, project["id"])
    path = f"/api/v1/keys/{key['id']}"

    assert owner.ok("DELETE", path) == {"message": "API key revoked"}
    assert verify(owner, key["rawKey"]) == {"valid": False, "reason": "Key revoked"}
    [first] = owner.ok("GET", f"/api/v1/projects/{project['id']}/keys")
    assert first["active"] is False and first["revokedAt"] is not None

    assert owner.ok("DELETE", path) == {"message": "API key revoked"}
    [second] = owner.ok("GET", f"/api/v1/projects/{project['id']}/keys")
    assert second["revokedAt"] == first["revokedAt"]


def test_an_expired_key_is_reported_expired(shared_stack, owner):
    project = new_project(owner, "Expired")
    key = new_key(owner, project["id"], expiresInDays=1)
    status = sql(shared_stack, "project",
                 "UPDATE api_keys SET expires_at = now() - interval '1 minute'"
                 " WHERE id = $1", uuid.UUID(key["id"]))
    assert status == "UPDATE 1"
    assert verify(owner, key["rawKey"]) == {"valid": False, "reason": "Key expired"}


def test_a_valid_verification_records_last_use(owner):
    project = new_project(owner, "Used keys")
    key, unused = new_key(owner, project["id"], "used"), new_key(owner, project["id"], "unused")
    assert verify(owner, key["rawKey"])["valid"] is True

    def last_used() -> dict[str, str | None]:
        return {k["id"]: k["lastUsedAt"]
                for k in owner.ok("GET", f"/api/v1/projects/{project['id']}/keys")}

    seen = poll(last_used, lambda found: found[key["id"]] is not None, timeout=10)
    assert seen[key["id"]] is not None, "lastUsedAt not set within 10 s"
    assert parse_time(seen[key["id"]]) >= parse_time(key["createdAt"])
    assert seen[unused["id"]] is None


def test_deleting_a_project_removes_its_keys_and_routes(owner):
    project = new_project(owner, "Cascade")
    key = new_key(owner, project["id"])
    route = new_route(owner, project["id"])
    owner.ok("DELETE", f"/api/v1/projects/{project['id']}")

    assert verify(owner, key["rawKey"]) == {"valid": False, "reason": "Key not found"}
    assert_not_found(owner.call("DELETE", f"/api/v1/keys/{key['id']}"), "API key not found")
    assert_not_found(owner.call("GET", f"/api/v1/routes/{route['id']}"),
                     "Route config not found")


# --- route configs -------------------------------------------------------------------------


def test_create_a_service_route_with_defaults(owner):
    project = new_project(owner, "Service routes")
    body = route_body(path="  " + unique_path("/users/:id") + "  ", method="PATCH")
    route = owner.ok("POST", f"/api/v1/projects/{project['id']}/routes",
                     {**body, "projectId": str(uuid.uuid4()), "active": False}, 201)

    assert set(route) == ROUTE_FIELDS and UUID4.match(route["id"])
    assert route["path"] == body["path"].strip()
    assert {k: route[k] for k in ("method", "service", "upstreamUrl", "projectId", "rateLimit",
                                  "cacheTTL", "authRequired", "active")} == {
        "method": "PATCH", "service": "project-service", "upstreamUrl": None,
        "projectId": project["id"], "rateLimit": None, "cacheTTL": None,
        "authRequired": True, "active": True}
    assert parse_time(route["updatedAt"]) >= parse_time(route["createdAt"])
    assert owner.ok("GET", f"/api/v1/routes/{route['id']}") == route


def test_create_an_upstream_route_coercing_numbers(owner):
    project = new_project(owner, "Upstream routes")
    route = new_route(owner, project["id"], service=..., upstreamUrl=PUBLIC_UPSTREAM,
                      method="POST", rateLimit="50", cacheTTL="0", authRequired=False)
    assert (route["service"], route["upstreamUrl"]) == (None, PUBLIC_UPSTREAM)
    assert (route["rateLimit"], route["cacheTTL"], route["authRequired"]) == (50, 0, False)
    limits = new_route(owner, project["id"], rateLimit=10000, cacheTTL=86400)
    assert (limits["rateLimit"], limits["cacheTTL"]) == (10000, 86400)


@pytest.mark.parametrize("service", ["auth-service", "project-service", "analytics-service",
                                     "logging-service"])
def test_every_service_name_is_accepted(owner, service):
    project = new_project(owner, "Services")
    assert new_route(owner, project["id"], service=service)["service"] == service


@pytest.mark.parametrize(("fields", "field"), [
    ({"upstreamUrl": PUBLIC_UPSTREAM}, "service"),  # both targets
    ({"service": ...}, "service"),  # neither
    ({"service": None}, "service"),
    ({"service": "mail-service"}, "service"),
    ({"path": ...}, "path"),
    ({"path": "no-leading-slash"}, "path"),
    ({"path": "/e2e/search?q=1"}, "path"),
    ({"path": "/e2e/files/*"}, "path"),
    ({"path": "/e2e/a#b"}, "path"),
    ({"path": "/e2e/with space"}, "path"),
    ({"path": "/e2e/:1bad"}, "path"),
    ({"path": "/e2e/:"}, "path"),
    ({"path": ""}, "path"),
    ({"path": "/" + "p" * 200}, "path"),
    ({"method": ...}, "method"),
    ({"method": "FETCH"}, "method"),
    ({"method": "get"}, "method"),
    ({"method": "OPTIONS"}, "method"),
    ({"rateLimit": 0}, "rateLimit"),
    ({"rateLimit": 10001}, "rateLimit"),
    ({"rateLimit": "many"}, "rateLimit"),
    ({"cacheTTL": -1}, "cacheTTL"),
    ({"cacheTTL": 86401}, "cacheTTL"),
    ({"authRequired": "yes"}, "authRequired"),
    ({"authRequired": 1}, "authRequired"),
])
def test_create_route_validation(owner, fields, field):
    project = new_project(owner, "Bad routes")
    response = owner.call("POST", f"/api/v1/projects/{project['id']}/routes", route_body(**fields))
    assert_invalid(response, "body", field)
    assert owner.ok("GET", f"/api/v1/projects/{project['id']}/routes") == []


def test_a_fractional_rate_limit_is_refused(owner):
    project = new_project(owner, "Fractional rate limit")
    response = owner.call("POST", f"/api/v1/projects/{project['id']}/routes",
                          route_body(rateLimit=2.5))
    assert_invalid(response, "body", "rateLimit")


@pytest.mark.parametrize("action", ["create", "patch"])
def test_an_empty_upstream_url_beside_a_service_is_refused(owner, action):
    project = new_project(owner, "Empty upstream")
    if action == "create":
        response = owner.call("POST", f"/api/v1/projects/{project['id']}/routes",
                              route_body(upstreamUrl=""))
    else:
        route = new_route(owner, project["id"])
        response = owner.call("PATCH", f"/api/v1/routes/{route['id']}", {"upstreamUrl": ""})
    body = assert_error(response, 400, "VALIDATION_ERROR")
    assert {d["field"] for d in body["details"]} <= {"service", "upstreamUrl"}


def test_same_project_path_and_method_conflict(owner):
    project = new_project(owner, "Clashes")
    first = new_route(owner, project["id"])
    url = f"/api/v1/projects/{project['id']}/routes"
    clash = route_body(path=first["path"], method="GET", service="auth-service")
    assert_error(owner.call("POST", url, clash), 409, "CONFLICT", SAME_PROJECT_CLASH)

    other_method = new_route(owner, project["id"], path=first["path"], method="DELETE")
    assert_error(owner.call("PATCH", f"/api/v1/routes/{other_method['id']}", {"method": "GET"}),
                 409, "CONFLICT", SAME_PROJECT_CLASH)
    # still 409 while the first one is inactive: the database key has no 'active' in it
    owner.ok("PATCH", f"/api/v1/routes/{first['id']}", {"active": False})
    assert_error(owner.call("POST", url, clash), 409, "CONFLICT", SAME_PROJECT_CLASH)


def test_the_path_space_is_global_across_tenants(owner, stranger):
    prefix = unique_path("")
    mine, theirs = new_project(owner, "First"), new_project(stranger, "Second")
    taken = new_route(owner, mine["id"], path=f"{prefix}/x/:id")
    url = f"/api/v1/projects/{theirs['id']}/routes"

    for path in (f"{prefix}/x/:other", f"{prefix}/x/:id/"):
        body = route_body(path=path, method="GET")
        assert_error(stranger.call("POST", url, body), 409, "CONFLICT")
    assert new_route(stranger, theirs["id"], path=f"{prefix}/x/:other",
                     method="POST")["method"] == "POST"
    # a more specific template would capture the owner's traffic (docs/api.md 6.3): refused too
    assert_error(stranger.call("POST", url, route_body(path=f"{prefix}/x/literal",
                                                      method="GET")), 409, "CONFLICT")

    owner.ok("PATCH", f"/api/v1/routes/{taken['id']}", {"active": False})
    moved_in = new_route(stranger, theirs["id"], path=f"{prefix}/x/:other")
    assert moved_in["active"] is True
    # reactivating would make two active configs serve one template
    assert_error(owner.call("PATCH", f"/api/v1/routes/{taken['id']}", {"active": True}),
                 409, "CONFLICT")
    assert owner.ok("GET", f"/api/v1/routes/{taken['id']}")["active"] is False


@pytest.mark.parametrize("url", [
    "http://10.0.0.5/",
    "http://127.0.0.1:9/",
    "http://169.254.169.254/",
    "http://[::1]/",
    "http://localhost/",
    "http://api.localhost/",
    "http://192.168.1.1/",
    "http://172.16.0.1/",
    "http://100.64.0.1/",
    "http://0.0.0.0/",
    "http://[::ffff:127.0.0.1]/",
    "http://[fe80::1]/",
    "http://[fc00::1]/",
    "http://[::]/",
    "http://224.0.0.1/",
    "http://255.255.255.255/",
    # other spellings of 127.0.0.1 and localhost
    "http://0x7f000001/",
    "http://2130706433/",
    "http://127.1/",
    "http://[::ffff:7f00:1]/",
    "http://LOCALHOST/",
    "ftp://93.184.216.34/",
    "http://user:secret@93.184.216.34/",
    "https://93.184.216.34/#fragment",
])
def test_refused_upstream_targets(owner, url):
    project = new_project(owner, "SSRF")
    response = owner.call("POST", f"/api/v1/projects/{project['id']}/routes",
                          route_body(service=..., upstreamUrl=url))
    assert_invalid(response, "body", "upstreamUrl")


def test_upstream_target_rules_apply_on_patch_too(owner):
    project = new_project(owner, "SSRF on patch")
    route = new_route(owner, project["id"], service=..., upstreamUrl=PUBLIC_UPSTREAM)
    response = owner.call("PATCH", f"/api/v1/routes/{route['id']}",
                          {"upstreamUrl": "http://169.254.169.254/latest/meta-data"})
    assert_invalid(response, "body", "upstreamUrl")
    assert owner.ok("GET", f"/api/v1/routes/{route['id']}") == route


@pytest.mark.parametrize("url", ["https://93.184.216.34/v1", "http://8.8.8.8:8080",
                                 "https://[2606:4700:4700::1111]/api"])
def test_public_upstream_targets_are_accepted(owner, url):
    project = new_project(owner, "Public upstreams")
    route = new_route(owner, project["id"], service=..., upstreamUrl=url)
    assert route["upstreamUrl"] == url and route["service"] is None


@pytest.mark.parametrize("path", ["/api/v1/projects/x", "/api/v1/auth", "/health",
                                  "/api/v1/keys/:id"])
def test_an_upstream_route_never_uses_a_platform_path(owner, admin, path):
    project = new_project(owner, "Platform upstream")
    for client in (owner, admin):
        response = client.call("POST", f"/api/v1/projects/{project['id']}/routes",
                               route_body(path=path, service=..., upstreamUrl=PUBLIC_UPSTREAM))
        assert_invalid(response, "body", "path")


def test_only_admins_configure_services_on_platform_paths(owner, admin):
    project = new_project(owner, "Platform service")
    # reserved, but not a platform route: the config stays inert at the gateway
    path = f"/api/v1/projects/:id/e2e-{uuid.uuid4().hex[:12]}"
    url = f"/api/v1/projects/{project['id']}/routes"
    assert_error(owner.call("POST", url, route_body(path=path)), 403, "FORBIDDEN")

    route = admin.ok("POST", url, route_body(path=path, rateLimit=9000), 201)
    assert route["path"] == path and route["projectId"] == project["id"]
    assert_error(owner.call("PATCH", f"/api/v1/routes/{route['id']}", {"rateLimit": 1}),
                 403, "FORBIDDEN")
    plain = new_route(owner, project["id"])
    assert_error(owner.call("PATCH", f"/api/v1/routes/{plain['id']}", {"path": path + "-2"}),
                 403, "FORBIDDEN")
    assert admin.ok("DELETE", f"/api/v1/routes/{route['id']}") == {
        "message": "Route config deleted"}


def test_a_not_reserved_lookalike_path_is_free(owner):
    project = new_project(owner, "Lookalike")
    path = f"/api/v1/projects-{uuid.uuid4().hex[:12]}"
    assert new_route(owner, project["id"], path=path, service=...,
                     upstreamUrl=PUBLIC_UPSTREAM)["path"] == path


def test_patch_route_changes_only_what_it_names(owner, stranger):
    project = new_project(owner, "Patching")
    elsewhere = new_project(stranger, "Elsewhere")
    route = new_route(owner, project["id"], service=..., upstreamUrl=PUBLIC_UPSTREAM,
                      rateLimit=10, cacheTTL=30, authRequired=False)
    path = f"/api/v1/routes/{route['id']}"

    cleared = owner.ok("PATCH", path, {"rateLimit": None, "cacheTTL": "45",
                                       "projectId": elsewhere["id"]})
    assert cleared["rateLimit"] is None and cleared["cacheTTL"] == 45
    assert cleared["projectId"] == project["id"]
    unchanged = ("path", "method", "upstreamUrl", "service", "authRequired", "active",
                 "createdAt")
    assert {k: cleared[k] for k in unchanged} == {k: route[k] for k in unchanged}
    assert parse_time(cleared["updatedAt"]) >= parse_time(route["updatedAt"])
    assert owner.ok("GET", path) == cleared

    assert owner.ok("PATCH", path, {"cacheTTL": None})["cacheTTL"] is None
    switched = owner.ok("PATCH", path, {"service": "logging-service"})
    assert (switched["service"], switched["upstreamUrl"]) == ("logging-service", None)
    back = owner.ok("PATCH", path, {"upstreamUrl": PUBLIC_UPSTREAM})
    assert (back["service"], back["upstreamUrl"]) == (None, PUBLIC_UPSTREAM)

    assert_invalid(owner.call("PATCH", path, {"upstreamUrl": None}), "body", "service")
    assert_invalid(owner.call("PATCH", path, {"service": "auth-service",
                                              "upstreamUrl": PUBLIC_UPSTREAM}), "body", "service")
    assert_invalid(owner.call("PATCH", path, {"rateLimit": 0}), "body", "rateLimit")
    assert_invalid(owner.call("PATCH", path, {"active": "no"}), "body", "active")
    assert_invalid(owner.call("PATCH", path, {"path": "bad"}), "body", "path")
    assert owner.ok("GET", path) == back
    assert stranger.ok("GET", f"/api/v1/projects/{elsewhere['id']}/routes") == []


def test_delete_route_and_list_order(owner):
    project = new_project(owner, "Route lists")
    first, second = new_route(owner, project["id"]), new_route(owner, project["id"])
    owner.ok("PATCH", f"/api/v1/routes/{first['id']}", {"active": False})
    listed = owner.ok("GET", f"/api/v1/projects/{project['id']}/routes")
    assert [(r["id"], r["active"]) for r in listed] == [(second["id"], True),
                                                         (first["id"], False)]
    assert all(set(r) == ROUTE_FIELDS for r in listed)

    assert owner.ok("DELETE", f"/api/v1/routes/{second['id']}") == {
        "message": "Route config deleted"}
    assert_not_found(owner.call("GET", f"/api/v1/routes/{second['id']}"),
                     "Route config not found")
    assert_not_found(owner.call("DELETE", f"/api/v1/routes/{second['id']}"),
                     "Route config not found")
    assert [r["id"] for r in owner.ok("GET", f"/api/v1/projects/{project['id']}/routes")] == [
        first["id"]]


# --- config events on gw.events ------------------------------------------------------------


E = TypeVar("E")


class EventTap:
    """Reads the batches that reach a private queue bound to `gw.events` with `config.#`,
    decoded as a gateway decodes them (so every event the service publishes must decode)."""

    def __init__(self, queue: aio_pika.abc.AbstractQueue) -> None:
        self._queue = queue
        self.seen: list[ConfigEvent] = []

    async def _drain(self) -> None:
        while (message := await self._queue.get(no_ack=True, fail=False)) is not None:
            batch = decode_events(message.routing_key, message.body)
            assert not batch.malformed, batch.malformed
            self.seen.extend(batch.events)

    async def wait_for(self, event_type: type[E], match: Callable[[E], bool],
                       within: float = 5.0) -> E:
        """The first `event_type` event for which `match` holds, polled for `within` s."""
        deadline = time.monotonic() + within
        while True:
            await self._drain()
            for event in self.seen:
                if isinstance(event, event_type) and match(event):
                    return event
            if time.monotonic() > deadline:
                raise AssertionError(f"no matching {event_type.__name__} event in {within} s; "
                                     f"seen: {self.seen}")
            await asyncio.sleep(0.05)


@pytest.fixture
async def config_events(shared_stack: Stack) -> AsyncIterator[EventTap]:
    """Bound before the test acts, so no event of the test can be missed. The test's HTTP
    calls block the loop briefly; that only delays reading, the broker keeps the messages."""
    connection = await aio_pika.connect(shared_stack.env["AMQP_URL"])
    try:
        channel = await connection.channel()
        exchange = await channel.get_exchange(EVENTS_EXCHANGE)
        queue = await channel.declare_queue(exclusive=True, auto_delete=True)
        await queue.bind(exchange, "config.#")
        yield EventTap(queue)
    finally:
        await connection.close()


def route_event(action: str, route_id: str) -> Callable[[RouteChanged], bool]:
    return lambda event: event.action == action and event.route.id == route_id


# A route config event carries the whole API RouteConfig (and adds the owner for gateways).
EVENT_ROUTE_FIELDS = ROUTE_FIELDS


def config_of(event: RouteChanged) -> dict[str, Any]:
    """The RouteConfig an event carries, in the API's wire form."""
    wire = event.route.to_wire()
    assert EVENT_ROUTE_FIELDS <= set(wire), wire
    return {name: wire[name] for name in EVENT_ROUTE_FIELDS}


def api_config(route: dict[str, Any]) -> dict[str, Any]:
    return {name: route[name] for name in EVENT_ROUTE_FIELDS}


async def test_route_changes_are_published(config_events: EventTap, owner):
    project = new_project(owner, "Route events")
    route = new_route(owner, project["id"])
    updated = owner.ok("PATCH", f"/api/v1/routes/{route['id']}", {"rateLimit": 12})
    owner.ok("DELETE", f"/api/v1/routes/{route['id']}")

    for action, expected in (("created", route), ("updated", updated), ("deleted", updated)):
        event = await config_events.wait_for(RouteChanged, route_event(action, route["id"]))
        assert config_of(event) == api_config(expected), action
        assert ISO_MS.match(event.at)
        if action != "deleted":  # gateways need the owner to let them through
            assert event.route.owner_id == owner.user_id, action
    actions = [e.action for e in config_events.seen
               if isinstance(e, RouteChanged) and e.route.id == route["id"]]
    assert actions == ["created", "updated", "deleted"]


async def test_key_revocation_is_published(config_events: EventTap, owner):
    project = new_project(owner, "Key events")
    key = new_key(owner, project["id"])
    owner.ok("DELETE", f"/api/v1/keys/{key['id']}")

    event = await config_events.wait_for(KeyRevoked, lambda e: e.key_id == key["id"])
    assert event.key_hash == sha256(key["rawKey"])
    assert event.project_id == project["id"]


async def test_project_deletion_is_published_with_its_keys_and_routes(
        config_events: EventTap, owner):
    project = new_project(owner, "Project events")
    keys = [new_key(owner, project["id"], f"key {n}") for n in range(2)]
    routes = [new_route(owner, project["id"]) for _ in range(2)]
    owner.ok("DELETE", f"/api/v1/projects/{project['id']}")

    event = await config_events.wait_for(ProjectDeleted,
                                         lambda e: e.project_id == project["id"])
    assert sorted(event.key_ids) == sorted(k["id"] for k in keys)
    assert sorted(event.key_hashes) == sorted(sha256(k["rawKey"]) for k in keys)
    assert sorted(event.route_ids) == sorted(r["id"] for r in routes)
    for route in routes:
        gone = await config_events.wait_for(RouteChanged, route_event("deleted", route["id"]))
        assert config_of(gone) == api_config(route)


