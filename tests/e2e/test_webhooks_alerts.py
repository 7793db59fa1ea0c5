"""Alert webhooks end to end, with each alert event store (ALERT_EVENT_STORE): real traffic
breaches a developer's rules, the engine stores the events, and the webhooks subscribed to
`alert.triggered` / `alert.acknowledged` receive them signed (docs/api.md section 15):

- a rule of a project is heard by that project's webhooks only;
- a rule of no project is heard by the webhooks of every project of the rule's owner;
- another developer's webhooks hear nothing of it;
- an acknowledgement reaches the webhooks subscribed to it, with the event as the API now
  shows it.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from standardwebhooks import Webhook

from tests.e2e.conftest import Stack
from tests.e2e.helpers import Client, eventually, project_with_route, register
from tests.webhook_support import Received, ThreadedReceiver

INTERVAL_MS = 1000
ARRIVES_WITHIN_S = 20.0
EVENTS = "/api/v1/alerts/events"


@pytest.fixture(scope="module", params=["postgresql", "mongodb"])
def gw_settings(request: pytest.FixtureRequest) -> dict[str, str]:
    return {"ALERT_INTERVAL_MS": str(INTERVAL_MS), "ALERT_EVENT_STORE": request.param}


@pytest.fixture(scope="module")
def receiver(gw_settings: dict[str, str]) -> Iterator[ThreadedReceiver]:
    """One per stack (per store): what each heard stays apart."""
    server = ThreadedReceiver()
    server.start()
    yield server
    server.stop()


def subscribe(owner: Client, project_id: str, url: str, events: list[str]) -> str:
    """A webhook's secret."""
    hook = owner.ok("POST", f"/api/v1/projects/{project_id}/webhooks",
                    {"name": "alerts", "url": url, "events": events}, status=201)
    secret: str = hook["secret"]
    return secret


def heard(receiver: ThreadedReceiver, name: str) -> list[Received]:
    return [got for got in receiver.received if got.path == f"/hook/{name}"]


def payloads(receiver: ThreadedReceiver, name: str, secret: str) -> list[dict[str, Any]]:
    verified: list[dict[str, Any]] = []
    for got in heard(receiver, name):
        verified.append(Webhook(secret).verify(got.body, got.headers))
    return verified


@pytest.fixture(scope="module")
def breached(gw: Stack, alice: Client, upstream, receiver: ThreadedReceiver) -> dict[str, Any]:
    """alice's busy project (with a route) and her quiet one, each with a webhook; bob's
    project with one; a rule on the busy project and one on no project, both breached by ten
    requests; and their events as the API lists them."""
    tag = uuid.uuid4().hex[:6]
    path = f"/hooks-alerts-{tag}"  # the module's stacks (one per store) share the databases
    bob = register(gw, "bob-alerts")
    busy, _ = project_with_route(gw, alice.token, upstream, path)
    quiet = alice.ok("POST", "/api/v1/projects", {"name": "quiet"}, status=201)["id"]
    theirs = bob.ok("POST", "/api/v1/projects", {"name": "theirs"}, status=201)["id"]
    secrets = {
        "busy": subscribe(alice, busy, f"{receiver.url}/busy",
                          ["alert.triggered", "alert.acknowledged"]),
        "quiet": subscribe(alice, quiet, f"{receiver.url}/quiet", ["alert.triggered"]),
        "bob": subscribe(bob, theirs, f"{receiver.url}/bob",
                         ["alert.triggered", "alert.acknowledged"]),
    }
    rule_fields = {"service": "gateway", "metric": "request_count", "windowSeconds": 10,
                   "threshold": 5, "operator": "gt", "coolDownSeconds": 300}
    on_project = alice.ok("POST", "/api/v1/alerts/rules", {
        **rule_fields, "name": f"busy project {tag}", "projectId": busy}, status=201)
    on_none = alice.ok("POST", "/api/v1/alerts/rules", {
        **rule_fields, "name": f"all my traffic {tag}"}, status=201)
    anonymous = Client(gw.gateway_url)
    assert eventually(lambda: anonymous.call("GET", path)[0] == 200)
    for _ in range(9):
        assert anonymous.call("GET", path)[0] == 200
    rule_ids = {on_project["id"], on_none["id"]}

    def stored() -> list[dict[str, Any]]:
        events = [event for event in alice.ok("GET", EVENTS, query={"limit": 100})["events"]
                  if event["ruleId"] in rule_ids]
        return events if len(events) == 2 else []

    events = eventually(stored, ARRIVES_WITHIN_S)
    assert events, "the rules did not fire"
    by_rule = {event["ruleId"]: event for event in events}
    return {"secrets": secrets, "on_project": by_rule[on_project["id"]],
            "on_none": by_rule[on_none["id"]], "busy": busy}


def triggered_ids(receiver: ThreadedReceiver, name: str, secret: str) -> set[str]:
    return {payload["data"]["id"] for payload in payloads(receiver, name, secret)
            if payload["type"] == "alert.triggered"}


def test_a_projects_webhooks_hear_its_rules_and_the_owners_rules_of_no_project(
        breached, receiver: ThreadedReceiver):
    secrets, on_project, on_none = (breached["secrets"], breached["on_project"],
                                    breached["on_none"])
    both = {on_project["id"], on_none["id"]}
    assert eventually(lambda: triggered_ids(receiver, "busy", secrets["busy"]) >= both,
                      ARRIVES_WITHIN_S), heard(receiver, "busy")
    assert eventually(lambda: on_none["id"] in triggered_ids(receiver, "quiet",
                                                             secrets["quiet"]),
                      ARRIVES_WITHIN_S), heard(receiver, "quiet")
    [payload] = [p for p in payloads(receiver, "busy", secrets["busy"])
                 if p["data"]["id"] == on_project["id"]]
    assert payload["data"] == on_project  # the event as the API lists it
    assert payload["data"]["projectId"] == breached["busy"]
    time.sleep(2)  # anything wrongly sent would have arrived by now
    assert on_project["id"] not in triggered_ids(receiver, "quiet", secrets["quiet"])
    assert heard(receiver, "bob") == []


def test_an_acknowledgement_reaches_the_webhooks_subscribed_to_it(
        breached, alice: Client, receiver: ThreadedReceiver):
    secrets, on_project = breached["secrets"], breached["on_project"]
    acknowledged = alice.ok("PUT", f"{EVENTS}/{on_project['id']}/acknowledge",
                            {"acknowledgedBy": "on-call"})

    def acknowledgements() -> list[dict[str, Any]]:
        return [p for p in payloads(receiver, "busy", secrets["busy"])
                if p["type"] == "alert.acknowledged"]

    [payload] = eventually(acknowledgements, ARRIVES_WITHIN_S)
    assert payload["data"] == acknowledged
    assert payload["data"]["acknowledgedBy"] == "on-call"
    time.sleep(1)
    assert not [got for got in heard(receiver, "quiet")
                if json.loads(got.body)["type"] == "alert.acknowledged"]
    assert heard(receiver, "bob") == []
