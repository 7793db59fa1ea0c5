"""Webhooks end to end (docs/api.md section 15): a developer subscribes a real receiver, changes
a project, and the receiver gets the event signed as the Standard Webhooks specification says
(verified with the `standardwebhooks` package); a receiver that fails is retried with the same
`webhook-id` until it answers 2xx; the delivery log shows every attempt; the contract's
validation, limits and tenancy; a rotated secret signs beside the new one.

The module's stack retries on a schedule of seconds (WEBHOOK_RETRY_SCHEDULE), as the test
profile is meant to.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from aiohttp import web
from standardwebhooks import Webhook

from tests.e2e.helpers import Client, eventually, register, with_role
from tests.webhook_support import Receiver, ThreadedReceiver, status

SCHEDULE = (0.5, 1.0, 2.0)
DELIVERED_WITHIN_S = 15.0


@pytest.fixture(scope="module")
def gw_settings() -> dict[str, str]:
    return {"WEBHOOK_RETRY_SCHEDULE": ",".join(str(s) for s in SCHEDULE),
            "MAX_WEBHOOKS_PER_PROJECT": "3"}


@pytest.fixture
def receiver() -> Iterator[ThreadedReceiver]:
    server = ThreadedReceiver()
    server.start()
    yield server
    server.stop()


def project_of(owner: Client) -> str:
    return owner.ok("POST", "/api/v1/projects", {"name": f"hooks-{uuid.uuid4().hex[:6]}"},
                    status=201)["id"]


def subscribe(owner: Client, project_id: str, url: str, events: list[str]) -> dict[str, Any]:
    return owner.ok("POST", f"/api/v1/projects/{project_id}/webhooks",
                    {"name": "receiver", "url": url, "events": events}, status=201)


def verified(secret: str, got: Any) -> dict[str, Any]:
    payload: dict[str, Any] = Webhook(secret).verify(got.body, got.headers)
    return payload


def test_a_change_reaches_the_receiver_signed_and_is_logged(alice, receiver):
    project_id = project_of(alice)
    hook = subscribe(alice, project_id, receiver.url, ["project.updated"])
    assert hook["secret"].startswith("whsec_") and hook["active"] is True
    assert "secret" not in alice.ok("GET", f"/api/v1/webhooks/{hook['id']}")

    alice.ok("PATCH", f"/api/v1/projects/{project_id}", {"name": "renamed by a test"})
    assert eventually(lambda: receiver.received, DELIVERED_WITHIN_S), "nothing delivered"
    got = receiver.received[0]
    payload = verified(hook["secret"], got)
    assert payload["type"] == "project.updated"
    assert payload["data"]["id"] == project_id and payload["data"]["name"] == "renamed by a test"

    # the attempt is recorded once the receiver has answered: a moment after it got the POST
    [delivery] = eventually(lambda: alice.ok(
        "GET", f"/api/v1/webhooks/{hook['id']}/deliveries",
        query={"status": "delivered"})["deliveries"], DELIVERED_WITHIN_S)
    assert delivery["id"] == got.headers["webhook-id"] and delivery["attempts"] == 1
    assert delivery["lastStatusCode"] == 200 and delivery["eventType"] == "project.updated"
    detail = alice.ok("GET", f"/api/v1/webhooks/{hook['id']}/deliveries/{delivery['id']}")
    assert detail["payload"] == payload and len(detail["attemptList"]) == 1


def test_a_failing_receiver_is_retried_with_the_same_id_until_it_answers(alice):
    failing = ThreadedReceiver(Receiver([status(500), status(503), status(502),
                                         lambda _: web.Response(status=204)]))
    failing.start()
    try:
        project_id = project_of(alice)
        hook = subscribe(alice, project_id, failing.url, ["route.created"])
        alice.ok("POST", f"/api/v1/projects/{project_id}/routes", {
            "path": f"/hooked-{uuid.uuid4().hex[:6]}", "method": "GET",
            "upstreamUrl": "http://127.0.0.1:9/base"}, status=201)
        assert eventually(lambda: len(failing.received) >= 4, DELIVERED_WITHIN_S + 10)
    finally:
        failing.stop()
    got = failing.received
    assert len({r.headers["webhook-id"] for r in got}) == 1  # one delivery, four attempts
    for attempt in got:
        verified(hook["secret"], attempt)
    gaps = [b.at - a.at for a, b in itertools.pairwise(got)]
    assert gaps[0] < gaps[1] < gaps[2], gaps  # the schedule's growing waits
    delivery = eventually(lambda: [d for d in alice.ok(
        "GET", f"/api/v1/webhooks/{hook['id']}/deliveries")["deliveries"]
        if d["status"] == "delivered"], 5)[0]
    assert delivery["attempts"] == 4 and delivery["lastStatusCode"] == 204
    detail = alice.ok("GET", f"/api/v1/webhooks/{hook['id']}/deliveries/{delivery['id']}")
    assert [a["statusCode"] for a in detail["attemptList"]] == [500, 503, 502, 204]


def test_test_events_redelivery_and_a_rotated_secret(alice, receiver):
    hook = subscribe(alice, project_of(alice), receiver.url, ["project.deleted"])
    accepted = alice.ok("POST", f"/api/v1/webhooks/{hook['id']}/test", status=202)
    assert eventually(lambda: receiver.received, DELIVERED_WITHIN_S)
    first = receiver.received[0]
    assert first.headers["webhook-id"] == accepted["deliveryId"]
    assert verified(hook["secret"], first)["type"] == "webhook.test"

    rotated = alice.ok("POST", f"/api/v1/webhooks/{hook['id']}/rotate-secret", status=201)
    assert rotated["secret"] != hook["secret"] and rotated["previousSecretUntil"]
    alice.ok("POST", f"/api/v1/webhooks/{hook['id']}/deliveries/{accepted['deliveryId']}"
                     "/redeliver", status=202)
    assert eventually(lambda: len(receiver.received) >= 2, DELIVERED_WITHIN_S)
    again = receiver.received[1]
    assert again.headers["webhook-id"] == first.headers["webhook-id"]
    assert len(again.headers["webhook-signature"].split(" ")) == 2
    for secret in (hook["secret"], rotated["secret"]):  # both verify during the overlap
        verified(secret, again)


def test_what_a_webhook_may_be(alice, admin, receiver):
    project_id = project_of(alice)
    path = f"/api/v1/projects/{project_id}/webhooks"
    for body, field in (
            ({"name": "x", "url": "http://169.254.169.254/", "events": ["project.created"]},
             "url"),
            ({"name": "x", "url": receiver.url, "events": []}, "events"),
            ({"name": "x", "url": receiver.url, "events": ["project.renamed"]}, "events"),
            ({"name": "x", "url": receiver.url, "events": ["route.created", "route.created"]},
             "events"),
            ({"name": "x", "url": receiver.url, "events": ["user.registered"]}, "events"),
            ({"name": "", "url": receiver.url, "events": ["route.created"]}, "name")):
        got, answer, _ = alice.call("POST", path, body)
        assert got == 400, (body, answer)
        assert field in {d["field"].split(".")[0] for d in answer["details"]}, answer
    for _ in range(3):
        subscribe(alice, project_id, receiver.url, ["route.created"])
    got, answer, _ = alice.call("POST", path, {"name": "one more", "url": receiver.url,
                                               "events": ["route.created"]})
    assert got == 409 and answer["message"] == "Webhook limit reached (3)"
    listed = alice.ok("GET", path, query={"limit": 2})
    assert listed["total"] == 3 and len(listed["webhooks"]) == 2 and listed["totalPages"] == 2
    # an admin may subscribe to user.registered (it belongs to no project)
    subscribe(admin, project_of(admin), receiver.url, ["user.registered"])


def test_another_tenants_webhooks_are_not_found(gw, alice, bob, receiver):
    hook = subscribe(alice, project_of(alice), receiver.url, ["project.updated"])
    delivery = alice.ok("POST", f"/api/v1/webhooks/{hook['id']}/test", status=202)
    for method, suffix, body in (
            ("GET", "", None), ("PATCH", "", {"name": "mine"}), ("DELETE", "", None),
            ("POST", "/rotate-secret", None), ("POST", "/test", None),
            ("GET", "/deliveries", None), ("GET", f"/deliveries/{delivery['deliveryId']}", None),
            ("POST", f"/deliveries/{delivery['deliveryId']}/redeliver", None)):
        got, answer, _ = bob.call(method, f"/api/v1/webhooks/{hook['id']}{suffix}", body)
        assert got == 404 and answer["message"] == "Webhook not found", (method, suffix)
    for method, body in (("GET", None), ("POST", {"name": "theirs", "url": receiver.url,
                                                  "events": ["project.updated"]})):
        got, answer, _ = bob.call(method, f"/api/v1/projects/{hook['projectId']}/webhooks",
                                  body)
        assert got == 404 and answer["message"] == "Project not found", method
    viewer = with_role(gw, register(gw, "viewer"), "VIEWER")  # reads only: refused at once
    got, _, _ = viewer.call("POST", f"/api/v1/projects/{hook['projectId']}/webhooks",
                            {"name": "v", "url": receiver.url, "events": ["project.updated"]})
    assert got == 403
    alice.ok("DELETE", f"/api/v1/webhooks/{hook['id']}", status=204)
    assert alice.call("GET", f"/api/v1/webhooks/{hook['id']}")[0] == 404


def test_an_admins_webhook_hears_of_every_registration(gw, admin, receiver):
    hook = subscribe(admin, project_of(admin), receiver.url, ["user.registered"])
    newcomer = register(gw, "newcomer")

    def heard() -> list[dict[str, Any]]:
        return [payload for payload in (verified(hook["secret"], r) for r in receiver.received)
                if payload["data"].get("email") == newcomer.email]

    [payload] = eventually(heard, DELIVERED_WITHIN_S)
    assert payload["type"] == "user.registered"
    assert payload["data"]["id"] == newcomer.user_id and "password" not in str(payload).lower()
