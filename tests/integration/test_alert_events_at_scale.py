"""With ALERT_EVENT_STORE=mongodb, acknowledging an alert event stays a lookup by `_id`
however many events are stored.

The MongoDB event store finds and updates an event by `_id` alone and checks its owner on the
document: the local MongoDB (FerretDB on SQLite) answers only that filter from SQL, and with
the launcher (infra/ferretdb) through the `_id` index; any other filter reads the whole
collection (which is why events live in PostgreSQL by default). The plans say whether the
index is used; nothing here is timed. The stores' shared contract, acknowledging included, is
tests/integration/test_alert_event_store.py.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import pymongo
import pytest
from pymongo.collection import Collection

from analytics_svc.alert_store import AlertRule, event_document
from contracts.identity import Caller, Role

pytestmark = pytest.mark.integration

OWNER = Caller("owner-1", "owner@example.com", Role.DEVELOPER)
RULE = AlertRule(id="6500000000000000000000aa", name="Busy", service="gateway",
                 metric="request_count", window_s=60, threshold=5.0, operator="gt",
                 cool_down_s=0, severity=None, project_id=None, user_id=OWNER.user_id,
                 owner_is_admin=False)
# the launcher looks for new collections every 2 s
LAUNCHER_WITHIN_S = 30.0


def an_event(slot: int) -> dict:
    return event_document(RULE, slot, value=12.0, severity="critical", at=datetime.now(UTC),
                          message="[CRITICAL] Busy: request_count = 12 (threshold: 5)")


@pytest.fixture
def ferretdb_events(mongo_test_db: str) -> Iterator[Collection]:
    """An events collection of this test's own in the tests' database, on FerretDB only."""
    client: pymongo.MongoClient = pymongo.MongoClient(os.environ["MONGO_URL"], tz_aware=True)
    if "ferretdbVersion" not in client.admin.command("buildInfo"):
        client.close()
        pytest.skip("the _id index repair is the FerretDB launcher's")
    collection = client[mongo_test_db][f"alertevents_{uuid.uuid4().hex[:10]}"]
    yield collection
    collection.drop()
    client.close()


def sqlite_plan(collection: Collection, event_id) -> str:
    """FerretDB's SQLite plan for a find by `_id`. A lookup runs first: SQLite's EXPLAIN
    plans with the schema its connection last loaded, a statement that runs loads the
    current one, and the pool hands out its most recently used connection."""
    collection.find_one({"_id": event_id})
    answer = collection.database.command(
        "explain", {"find": collection.name, "filter": {"_id": event_id}})
    return " ".join(answer["queryPlanner"]["Plan"])


def test_an_event_is_looked_up_by_id_through_the_index(ferretdb_events: Collection):
    events = [an_event(slot) for slot in range(50)]
    ferretdb_events.insert_many(events)
    wanted = events[-1]["_id"]
    give_up = time.monotonic() + LAUNCHER_WITHIN_S
    while "USING INDEX" not in (plan := sqlite_plan(ferretdb_events, wanted)):
        if time.monotonic() > give_up:
            pytest.fail(f"FerretDB still scans for an _id ({plan}): is the server on MONGO_URL "
                        "an older build of infra/ferretdb? Restart it to rebuild.")
        time.sleep(0.5)
    # the index is still unique, and answers as the scan did
    with pytest.raises(pymongo.errors.DuplicateKeyError):
        ferretdb_events.insert_one(an_event(49))
    assert ferretdb_events.find_one({"_id": wanted})["_id"] == wanted

