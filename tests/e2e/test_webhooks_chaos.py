"""Webhook deliveries lose nothing when things go wrong (docs/api.md section 15): the project
service killed (SIGKILL) while attempts are in flight, the broker dropping every connection
during a burst of events, and the broker restarted (stop_app, start_app) while retries wait
in its delay queues; every event is still delivered at least once, with the same
`webhook-id` on any repeat, and each delivery ends `delivered` in the log. And an endpoint
that fails everything is disabled and its owner told on the monitor.

A module of its own: its tests kill and restart the stack's processes and the broker.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

import pytest

from tests.conftest import TEST_VHOST
from tests.e2e.conftest import Stack
from tests.e2e.helpers import Client, eventually
from tests.e2e.monitor_client import Watcher
from tests.support import close_all_connections, restart_broker
from tests.webhook_support import Receiver, ThreadedReceiver, status

EVENTS = 12
WITHIN_S = 45.0  # a restarted service, redelivered jobs and the schedule's retries


@pytest.fixture(scope="module")
def gw_settings() -> dict[str, str]:
    return {"WEBHOOK_RETRY_SCHEDULE": "0.5,1,1", "WEBHOOK_TIMEOUT_S": "5",
            "WEBHOOK_DISABLE_AFTER_S": "1"}


@pytest.fixture
def slow_receiver() -> Iterator[ThreadedReceiver]:
    """Answers 204 after a second, so attempts are in flight when something breaks."""
    server = ThreadedReceiver(Receiver(delay_s=1.0))
    server.start()
    yield server
    server.stop()


def burst(owner: Client, receiver: ThreadedReceiver) -> tuple[str, list[str]]:
    """A webhook on project.updated, then EVENTS renames: (webhook id, the names sent)."""
    project_id = owner.ok("POST", "/api/v1/projects", {"name": "chaos"}, status=201)["id"]
    hook = owner.ok("POST", f"/api/v1/projects/{project_id}/webhooks", {
        "name": "chaos", "url": receiver.url, "events": ["project.updated"]}, status=201)
    names = [f"chaos-{n}-{uuid.uuid4().hex[:6]}" for n in range(EVENTS)]
    for name in names:
        owner.ok("PATCH", f"/api/v1/projects/{project_id}", {"name": name})
    return hook["id"], names


def all_delivered(owner: Client, receiver: ThreadedReceiver, hook_id: str,
                  names: list[str]) -> None:
    """Every name arrived at least once, repeats with their first `webhook-id`, and the log
    shows each delivery delivered."""

    def names_received() -> set[str]:
        return {json.loads(r.body)["data"]["name"] for r in receiver.received}

    assert eventually(lambda: names_received() >= set(names), WITHIN_S), (
        sorted(set(names) - names_received()))
    ids_by_name: dict[str, set[str]] = {}
    for got in receiver.received:
        ids_by_name.setdefault(json.loads(got.body)["data"]["name"], set()).add(
            got.headers["webhook-id"])
    assert all(len(ids) == 1 for ids in ids_by_name.values()), ids_by_name

    def delivered() -> int:
        page = owner.ok("GET", f"/api/v1/webhooks/{hook_id}/deliveries",
                        query={"status": "delivered", "limit": 100})
        return int(page["total"])

    def undelivered() -> list[dict]:
        page = owner.ok("GET", f"/api/v1/webhooks/{hook_id}/deliveries", query={"limit": 100})
        return [owner.ok("GET", f"/api/v1/webhooks/{hook_id}/deliveries/{d['id']}")
                for d in page["deliveries"] if d["status"] != "delivered"]

    assert eventually(lambda: delivered() == EVENTS, WITHIN_S), undelivered()


def test_a_killed_project_service_loses_no_delivery(gw: Stack, alice, slow_receiver):
    hook_id, names = burst(alice, slow_receiver)
    assert eventually(lambda: slow_receiver.received, 15), "no attempt started"
    gw.processes["project_svc"].kill()  # SIGKILL: attempts in flight, jobs unacked
    gw.processes["project_svc"].wait()
    gw.start("project_svc")
    gw.wait_healthy(60)
    all_delivered(alice, slow_receiver, hook_id, names)


def test_the_broker_dropping_every_connection_loses_no_delivery(gw: Stack, alice,
                                                                slow_receiver):
    hook_id, names = burst(alice, slow_receiver)
    assert eventually(lambda: slow_receiver.received, 15), "no attempt started"
    close_all_connections(TEST_VHOST)
    all_delivered(alice, slow_receiver, hook_id, names)


def test_a_broker_restart_during_a_burst_loses_no_delivery(gw: Stack, alice):
    # every first attempt fails, so when the broker stops each delivery's retry is a
    # message in a delay queue (and later events may still wait in the intake's queue)
    failing_first = ThreadedReceiver(Receiver([status(500)] * EVENTS + [status(204)]))
    failing_first.start()
    try:
        hook_id, names = burst(alice, failing_first)
        assert eventually(lambda: len(failing_first.received) >= EVENTS, 15), (
            len(failing_first.received))
        restart_broker()
        gw.wait_healthy(60)
        all_delivered(alice, failing_first, hook_id, names)
    finally:
        failing_first.stop()


async def test_an_endpoint_failing_everything_is_disabled_and_its_owner_told(gw: Stack, alice):
    failing = ThreadedReceiver(Receiver([status(500)]))
    failing.start()
    watcher = await Watcher().connect(gw.gateway_url, alice.token)
    try:
        project_id = alice.ok("POST", "/api/v1/projects", {"name": "failing"}, status=201)["id"]
        hook = alice.ok("POST", f"/api/v1/projects/{project_id}/webhooks", {
            "name": "down", "url": failing.url, "events": ["project.updated"]}, status=201)
        alice.ok("PATCH", f"/api/v1/projects/{project_id}", {"name": "still failing"})
        alerts = await watcher.until(lambda r: [a for a in r["alert:new"]
                                                if a.get("webhookId") == hook["id"]], 30)
    finally:
        await watcher.close()
        failing.stop()
    assert alerts, "no alert:new for the disabled webhook"
    assert alerts[0]["type"] == "webhook.disabled" and alerts[0]["projectId"] == project_id
    now = alice.ok("GET", f"/api/v1/webhooks/{hook['id']}")
    assert now["active"] is False and now["disabledReason"].startswith("Every delivery attempt")
    # the attempt that disabled it had a next one queued: that one finds it disabled
    failed = eventually(lambda: alice.ok("GET", f"/api/v1/webhooks/{hook['id']}/deliveries",
                                         query={"status": "failed"})["deliveries"], 10)
    assert len(failed) == 1 and failed[0]["lastError"] == "Webhook is disabled", failed
