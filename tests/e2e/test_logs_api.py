"""The logging API (docs/api.md sections 1.3, 1.4, 2, 7 and 13.2) end to end: external ingestion
(`POST /logs`, `/logs/batch`), the queries (`GET /logs`, `/logs/errors`, `/logs/:requestId`)
and the gateway's own entries, which travel as `request.completed` events from the gateway
through RabbitMQ to the logging service and MongoDB.

Every test of this module shares one stack, and the Mongo database keeps its entries from
earlier runs (30-day retention), while every request made here is logged too. So no test
counts globally: each one filters by values of its own (a unique `userId` tag on external
entries, request ids, its own project), and each "cannot see" check first confirms, as an
authorized reader, that the entry really is stored.

The stack is this module's own (as in test_gateway_proxy.py) because the project routes of
the tenancy tests point at a loopback upstream, which needs `UPSTREAM_ALLOW_PRIVATE`. At its
end the module deletes the external entries it tagged (~1,700 per run), so the shared
test database does not grow with every run: its log queries scan the collection.
"""

from __future__ import annotations

import re
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import pytest

from tests.e2e.conftest import Stack
from tests.e2e.helpers import (
    GATEWAY_ENTRY_WITHIN_S,
    UUID4,
    Client,
    Response,
    assert_error,
    assert_invalid,
    assert_not_found,
    call,
    eventually,
    header,
    parse_time,
    project_with_route,
    register,
    wait_for_entry,
    with_role,
)

LOGS = "/api/v1/logs"
NOT_FOUND = "Log entry not found"
LOG_FIELDS = {"_id", "requestId", "timestamp", "method", "path", "route", "statusCode",
              "latency", "ip", "userId", "apiKeyId", "projectId", "ownerId", "userAgent",
              "contentLength", "error", "traceId", "source"}
PAGE_FIELDS = {"entries", "total", "totalExact", "page", "limit", "totalPages", "nextCursor"}
OBJECT_ID = re.compile(r"^[0-9a-f]{24}$")
TAG_PREFIX = "logs-e2e-"
TRACE_ID = re.compile(r"^[0-9a-f]{32}$")


# --- stack and users -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def viewer(gw: Stack) -> Client:
    return with_role(gw, register(gw, "viewer"), "VIEWER")


# --- requests ------------------------------------------------------------------------------


def get(stack: Stack, path: str, token: str | None = None, **query: Any) -> Response:
    url = path + (f"?{urlencode(query)}" if query else "")
    return call(stack, "GET", url, token=token)


def ok(response: Response, status: int = 200) -> Any:
    got, body, _ = response
    assert got == status, body
    return body


def iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def recent(seconds_ago: float = 3600) -> datetime:
    """A moment well inside the 30-day retention, whole milliseconds."""
    moment = datetime.now(UTC) - timedelta(seconds=seconds_ago)
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


def tag() -> str:
    """A userId that only this test's external entries carry."""
    return f"{TAG_PREFIX}{uuid.uuid4().hex}"


def ingest(**fields: Any) -> dict[str, Any]:
    """A valid ingest object with a fresh requestId, `fields` changed (`...` drops one)."""
    body = {"requestId": str(uuid.uuid4()), "method": "GET", "path": "/orders/7?x=1",
            "statusCode": 200, "latency": 12.5, "ip": "203.0.113.9", **fields}
    return {name: value for name, value in body.items() if value is not ...}


def entry(stack: Stack, token: str, request_id: str) -> Response:
    return get(stack, f"{LOGS}/{request_id}", token)


def list_all(stack: Stack, token: str, path: str = LOGS, **query: Any) -> list[dict[str, Any]]:
    """Every entry of a list, page by page (100 each)."""
    entries: list[dict[str, Any]] = []
    page = 1
    while True:
        body = ok(get(stack, path, token, page=page, limit=100, **query))
        entries += body["entries"]
        if page >= body["totalPages"]:
            return entries
        page += 1


def ids(entries: list[dict[str, Any]]) -> list[str]:
    return [e["requestId"] for e in entries]


def gateway_request(stack: Stack, method: str, path: str, token: str | None = None,
                    status: int = 200, **headers: str) -> str:
    """One request through the gateway with the expected status; returns its X-Request-Id."""
    got, body, response_headers = call(stack, method, path, token=token, headers=headers)
    assert got == status, body
    request_id = header(response_headers, "X-Request-Id")
    assert request_id and UUID4.match(request_id), response_headers
    return request_id


def visible_to(user: Client, item: dict[str, Any]) -> bool:
    return item["source"] == "external" or user.user_id in (item["userId"], item["ownerId"])


# --- assertions ----------------------------------------------------------------------------


def assert_absent(stack: Stack, admin: Client, *request_ids: str) -> None:
    """Nobody, not even an admin, can read these entries: they were never stored."""
    for request_id in request_ids:
        assert_not_found(entry(stack, admin.token, request_id), NOT_FOUND)


# --- POST /logs ----------------------------------------------------------------------------


def test_ingest_stores_an_external_entry_with_defaults(gw, alice):
    user = tag()
    sent = ingest(userId=user, apiKeyId="claimed-key",
                  # never accepted from clients (docs/api.md 7.2): ignored, not refused
                  source="gateway", projectId=str(uuid.uuid4()), ownerId=alice.user_id,
                  route="/orders/:id", _id="0" * 24)
    before = datetime.now(UTC) - timedelta(seconds=1)
    status, body, _ = call(gw, "POST", LOGS, sent)
    after = datetime.now(UTC) + timedelta(seconds=1)
    assert (status, body) == (201, {"message": "Log ingested"})

    stored = ok(entry(gw, alice.token, sent["requestId"]))
    assert set(stored) == LOG_FIELDS, stored
    assert OBJECT_ID.match(stored["_id"]) and stored["_id"] != "0" * 24, stored
    assert before <= parse_time(stored["timestamp"]) <= after, stored  # server time
    assert {k: v for k, v in stored.items() if k not in ("_id", "timestamp")} == {
        "requestId": sent["requestId"], "method": "GET", "path": "/orders/7?x=1",
        "route": None, "statusCode": 200, "latency": 12.5, "ip": "203.0.113.9",
        "userId": user, "apiKeyId": "claimed-key", "projectId": None,
        "ownerId": None, "userAgent": "", "contentLength": 0, "error": None,
        "traceId": None, "source": "external"}


def test_ingest_keeps_the_optional_fields(gw, alice):
    moment = recent(120)
    sent = ingest(timestamp=moment.strftime("%Y-%m-%dT%H:%M:%S.") + "123456Z",
                  userAgent="probe/1.0", contentLength=512, latency=0, statusCode=503,
                  method="PATCH", error={"code": "UPSTREAM", "message": "Bad gateway"})
    assert ok(call(gw, "POST", LOGS, sent), 201) == {"message": "Log ingested"}
    stored = ok(entry(gw, alice.token, sent["requestId"]))
    assert stored["timestamp"] == moment.strftime("%Y-%m-%dT%H:%M:%S.") + "123Z"
    assert stored["userAgent"] == "probe/1.0" and stored["contentLength"] == 512
    assert stored["latency"] == 0 and stored["statusCode"] == 503
    assert stored["method"] == "PATCH"
    assert stored["error"] == {"code": "UPSTREAM", "message": "Bad gateway", "stack": None}
    assert stored["userId"] is None and stored["apiKeyId"] is None
    assert stored["source"] == "external"

    with_stack = ingest(error={"code": "E", "message": "m", "stack": "at line 1"})
    ok(call(gw, "POST", LOGS, with_stack), 201)
    assert ok(entry(gw, alice.token, with_stack["requestId"]))["error"] == {
        "code": "E", "message": "m", "stack": "at line 1"}


def test_ingest_accepts_the_limits(gw, alice):
    sent = [ingest(method="X" * 10, path="/" + "p" * 1999, statusCode=100, latency=0,
                   ip="f" * 45, userAgent="u" * 500, contentLength=0, userId=tag()),
            ingest(statusCode=599, ip="", userId=None, apiKeyId=None, error=None)]
    for body in sent:
        assert ok(call(gw, "POST", LOGS, body), 201) == {"message": "Log ingested"}
    stored = ok(entry(gw, alice.token, sent[0]["requestId"]))
    assert (len(stored["method"]), len(stored["path"]), len(stored["ip"]),
            len(stored["userAgent"])) == (10, 2000, 45, 500)
    assert ok(entry(gw, alice.token, sent[1]["requestId"]))["statusCode"] == 599


@pytest.mark.parametrize(("changes", "field", "code"), [
    ({"requestId": "not-a-uuid"}, "requestId", "invalid_string"),
    ({"requestId": ...}, "requestId", "invalid_type"),
    ({"method": ...}, "method", "invalid_type"),
    ({"path": ...}, "path", "invalid_type"),
    ({"statusCode": ...}, "statusCode", "invalid_type"),
    ({"latency": ...}, "latency", "invalid_type"),
    ({"ip": ...}, "ip", "invalid_type"),
    ({"method": "X" * 11}, "method", "too_big"),
    ({"path": "/" + "p" * 2000}, "path", "too_big"),
    ({"statusCode": 99}, "statusCode", "too_small"),
    ({"statusCode": 600}, "statusCode", "too_big"),
    ({"statusCode": "200"}, "statusCode", "invalid_type"),
    ({"statusCode": 1.5}, "statusCode", "invalid_type"),
    ({"latency": -1}, "latency", "too_small"),
    ({"latency": "1"}, "latency", "invalid_type"),
    ({"ip": "1" * 46}, "ip", "too_big"),
    ({"userAgent": "u" * 501}, "userAgent", "too_big"),
    ({"contentLength": -1}, "contentLength", "too_small"),
    ({"contentLength": 1.5}, "contentLength", "invalid_type"),
    ({"timestamp": "2026-01-01T00:00:00.000+01:00"}, "timestamp", "invalid_string"),
    ({"timestamp": "2026-01-01"}, "timestamp", "invalid_string"),
    ({"error": "boom"}, "error", "invalid_type"),
    ({"error": {"code": "E"}}, "error.message", "invalid_type"),
])
def test_ingest_validation(gw, admin, changes, field, code):
    body = ingest(**changes)
    assert_invalid(call(gw, "POST", LOGS, body), "body", field, code=code)
    if isinstance(body.get("requestId"), str) and UUID4.match(body["requestId"]):
        assert_absent(gw, admin, body["requestId"])


def test_ingest_reports_every_bad_field_at_once(gw):
    body = ingest(requestId="x", method="", statusCode=600, latency=-1, ip=...)
    assert_invalid(call(gw, "POST", LOGS, body), "body",
                   "requestId", "method", "statusCode", "latency", "ip")


def test_a_duplicate_request_id_is_a_conflict(gw, alice):
    first = ingest(userId=tag(), statusCode=201)
    ok(call(gw, "POST", LOGS, first), 201)
    again = {**ingest(userId=tag(), statusCode=500), "requestId": first["requestId"]}
    assert_error(call(gw, "POST", LOGS, again), 409, "CONFLICT")
    stored = ok(entry(gw, alice.token, first["requestId"]))
    assert (stored["userId"], stored["statusCode"]) == (first["userId"], 201)  # not replaced


# --- POST /logs/batch ----------------------------------------------------------------------


def test_a_batch_of_1000_is_stored_and_readable(gw, alice):
    user = tag()
    batch = [ingest(userId=user, path=f"/batch/{i}") for i in range(1000)]
    assert ok(call(gw, "POST", f"{LOGS}/batch", batch), 201) == {"message": "1000 logs ingested"}
    first = ok(get(gw, LOGS, alice.token, userId=user, limit=100))
    assert (first["total"], first["totalPages"], len(first["entries"])) == (1000, 10, 100)
    stored = list_all(gw, alice.token, userId=user)
    assert sorted(ids(stored)) == sorted(b["requestId"] for b in batch)
    assert {e["source"] for e in stored} == {"external"}
    assert {e["path"] for e in stored} == {f"/batch/{i}" for i in range(1000)}


def test_a_batch_over_1000_is_refused_and_nothing_stored(gw, alice):
    user = tag()
    batch = [ingest(userId=user) for _ in range(1001)]
    details = assert_invalid(call(gw, "POST", f"{LOGS}/batch", batch), "body", "",
                             code="too_big")
    assert len(details) == 1
    assert ok(get(gw, LOGS, alice.token, userId=user))["total"] == 0


def test_a_batch_must_be_an_array(gw, admin):
    single = ingest()
    assert_invalid(call(gw, "POST", f"{LOGS}/batch", single), "body", "", code="invalid_type")
    assert_absent(gw, admin, single["requestId"])
    empty = call(gw, "POST", f"{LOGS}/batch", [])
    assert ok(empty, 201) == {"message": "0 logs ingested"}


def test_an_invalid_item_refuses_the_whole_batch(gw, alice):
    user = tag()
    batch = [ingest(userId=user) for _ in range(5)]
    batch[3]["statusCode"] = "200"
    del batch[1]["ip"]
    assert_invalid(call(gw, "POST", f"{LOGS}/batch", batch), "body",
                   "3.statusCode", "1.ip", code="invalid_type")
    batch[4] = "not an object"
    batch[3]["statusCode"] = 200
    batch[1]["ip"] = "10.0.0.1"
    assert_invalid(call(gw, "POST", f"{LOGS}/batch", batch), "body", "4")
    assert ok(get(gw, LOGS, alice.token, userId=user))["total"] == 0


def test_a_request_id_repeated_within_a_batch_stores_nothing(gw, alice, admin):
    user = tag()
    batch = [ingest(userId=user) for _ in range(4)]
    batch.append({**ingest(userId=user), "requestId": batch[1]["requestId"]})
    assert_error(call(gw, "POST", f"{LOGS}/batch", batch), 409, "CONFLICT")
    assert ok(get(gw, LOGS, alice.token, userId=user))["total"] == 0
    assert_absent(gw, admin, *(b["requestId"] for b in batch))


def test_a_batch_meeting_a_stored_request_id_stores_nothing(gw, alice, admin):
    user = tag()
    existing = ingest(userId=tag())
    ok(call(gw, "POST", LOGS, existing), 201)
    batch = [ingest(userId=user) for _ in range(3)] + [{**ingest(userId=user),
                                                       "requestId": existing["requestId"]}]
    batch += [ingest(userId=user) for _ in range(3)]
    assert_error(call(gw, "POST", f"{LOGS}/batch", batch), 409, "CONFLICT")
    assert ok(get(gw, LOGS, alice.token, userId=user))["total"] == 0
    others = [b["requestId"] for b in batch if b["requestId"] != existing["requestId"]]
    assert_absent(gw, admin, *others)
    assert ok(entry(gw, alice.token, existing["requestId"]))["userId"] == existing["userId"]

    # the refused batch left nothing behind that would block its ids later
    retry = [b for b in batch if b["requestId"] != existing["requestId"]]
    assert ok(call(gw, "POST", f"{LOGS}/batch", retry), 201) == {"message": "6 logs ingested"}
    assert ok(get(gw, LOGS, alice.token, userId=user))["total"] == 6


def _send_together(stack: Stack, batches: list[list[dict[str, Any]]]) -> list[int]:
    """POST the batches at the same moment, one thread each; their statuses in order."""
    start = threading.Barrier(len(batches))

    def send(batch: list[dict[str, Any]]) -> int:
        start.wait(10)
        status, body, _ = call(stack, "POST", f"{LOGS}/batch", batch)
        assert status in (201, 409), body
        return status

    with ThreadPoolExecutor(len(batches)) as pool:
        return list(pool.map(send, batches))


def test_concurrent_overlapping_batches_are_all_or_nothing(gw, alice, admin):
    for _ in range(3):
        users = [tag(), tag()]
        shared = str(uuid.uuid4())
        batches = [[ingest(userId=user) for _ in range(60)] for user in users]
        for batch, user in zip(batches, users, strict=True):
            batch.insert(30, ingest(userId=user, requestId=shared))
        statuses = _send_together(gw, batches)
        # one id in common: exactly one batch can hold it, and the other has no reason left
        # to fail, so exactly one wins (all 61 stored) and the other leaves nothing behind
        assert sorted(statuses) == [201, 409], statuses
        winner = statuses.index(201)
        assert ok(get(gw, LOGS, alice.token, userId=users[winner]))["total"] == 61
        assert ok(get(gw, LOGS, alice.token, userId=users[1 - winner]))["total"] == 0
        assert ok(entry(gw, alice.token, shared))["userId"] == users[winner]
        assert_absent(gw, admin, batches[1 - winner][0]["requestId"],
                      batches[1 - winner][-1]["requestId"])

    # several ids in common, met in opposite orders: whatever the outcome, each batch is
    # wholly stored or wholly absent, and the common ids belong to a winner if any
    users = [tag(), tag()]
    shared = [str(uuid.uuid4()) for _ in range(3)]
    batches = [[ingest(userId=user) for _ in range(40)] for user in users]
    for position, request_id in zip((5, 20, 35), shared, strict=True):
        batches[0].insert(position, ingest(userId=users[0], requestId=request_id))
    for position, request_id in zip((5, 20, 35), reversed(shared), strict=True):
        batches[1].insert(position, ingest(userId=users[1], requestId=request_id))
    statuses = _send_together(gw, batches)
    assert statuses.count(201) <= 1, statuses
    for user, status in zip(users, statuses, strict=True):
        assert ok(get(gw, LOGS, alice.token, userId=user))["total"] == \
            (43 if status == 201 else 0), (statuses, user)
    for request_id in shared:
        owner = wait_for_entry(gw, admin.token, request_id, within_s=0)
        winners = [u for u, s in zip(users, statuses, strict=True) if s == 201]
        assert (owner["userId"] if owner else None) == (winners[0] if winners else None)

    # batches without a common id never refuse each other
    users = [tag(), tag()]
    batches = [[ingest(userId=user) for _ in range(50)] for user in users]
    assert _send_together(gw, batches) == [201, 201]
    for user in users:
        assert ok(get(gw, LOGS, alice.token, userId=user))["total"] == 50


# --- GET /logs, /logs/errors, /logs/:requestId ---------------------------------------------


def test_reading_logs_needs_a_bearer_token(gw):
    for path in (LOGS, f"{LOGS}/errors", f"{LOGS}/{uuid.uuid4()}"):
        assert_error(get(gw, path), 401, "UNAUTHORIZED")
        assert_error(call(gw, "GET", path, headers={"Authorization": "Token abc"}), 401,
                     "UNAUTHORIZED")
        assert_error(call(gw, "GET", path, token="not-a-jwt"), 401, "UNAUTHORIZED")


def _timeline(user: str, statuses: list[int], methods: list[str] | None = None
              ) -> tuple[list[dict[str, Any]], list[datetime]]:
    """External entries of `user`, one second apart in the recent past, sent out of order."""
    base = recent()
    moments = [base + timedelta(seconds=i) for i in range(len(statuses))]
    methods = methods or ["GET"] * len(statuses)
    items = [ingest(userId=user, timestamp=iso(m), statusCode=s, method=verb)
             for m, s, verb in zip(moments, statuses, methods, strict=True)]
    shuffled = items[1::2] + items[0::2]
    return shuffled, moments


def test_pages_limit_and_newest_first(gw, alice):
    user = tag()
    items, moments = _timeline(user, [200] * 5)
    ok(call(gw, "POST", f"{LOGS}/batch", items), 201)
    by_time = {i["timestamp"]: i["requestId"] for i in items}
    newest_first = [by_time[iso(m)] for m in reversed(moments)]

    default = ok(get(gw, LOGS, alice.token, userId=user))
    assert set(default) == PAGE_FIELDS
    assert (default["total"], default["page"], default["limit"], default["totalPages"]) == \
        (5, 1, 20, 1)
    assert ids(default["entries"]) == newest_first
    assert [e["timestamp"] for e in default["entries"]] == [iso(m) for m in reversed(moments)]

    pages = [ok(get(gw, LOGS, alice.token, userId=user, page=n, limit=2)) for n in (1, 2, 3, 4)]
    assert [ids(p["entries"]) for p in pages] == [newest_first[0:2], newest_first[2:4],
                                                 newest_first[4:], []]
    for number, page in enumerate(pages, start=1):
        assert (page["total"], page["page"], page["limit"], page["totalPages"]) == \
            (5, number, 2, 3), page
    exact = ok(get(gw, LOGS, alice.token, userId=user, limit=5))
    assert (exact["total"], exact["totalPages"]) == (5, 1)
    one = ok(get(gw, LOGS, alice.token, userId=user, limit=1, page=5))
    assert (ids(one["entries"]), one["totalPages"]) == ([newest_first[4]], 5)
    empty = ok(get(gw, LOGS, alice.token, userId=tag()))
    assert (empty["entries"], empty["total"], empty["totalPages"]) == ([], 0, 0)


@pytest.mark.parametrize("path", [LOGS, f"{LOGS}/errors"])
@pytest.mark.parametrize(("query", "field"), [
    ({"limit": 101}, "limit"),
    ({"limit": 0}, "limit"),
    ({"page": 0}, "page"),
    ({"page": "first"}, "page"),
    ({"statusCode": "abc"}, "statusCode"),
    ({"statusCode": 600}, "statusCode"),
    ({"method": "X" * 11}, "method"),
    ({"from": "2026-01-01T00:00:00+01:00"}, "from"),
    ({"to": "yesterday"}, "to"),
    ({"source": "internal"}, "source"),
    ({"projectId": "not-a-uuid"}, "projectId"),
])
def test_list_query_validation(gw, alice, path, query, field):
    assert_invalid(get(gw, path, alice.token, **query), "query", field)


def test_limit_100_is_the_largest_page(gw, alice):
    body = ok(get(gw, LOGS, alice.token, limit=100))
    assert body["limit"] == 100 and len(body["entries"]) <= 100


def test_every_filter(gw, alice):
    user = tag()
    statuses = [200, 201, 404, 500, 200, 399, 400, 599]
    methods = ["GET", "POST", "GET", "DELETE", "POST", "GET", "PUT", "GET"]
    items, moments = _timeline(user, statuses, methods)
    ok(call(gw, "POST", f"{LOGS}/batch", items), 201)
    order = sorted(items, key=lambda i: i["timestamp"], reverse=True)

    def expect(predicate) -> list[str]:
        return [i["requestId"] for i in order if predicate(i)]

    def listed(path: str = LOGS, **query: Any) -> list[str]:
        return ids(ok(get(gw, path, alice.token, userId=user, **query))["entries"])

    assert listed() == expect(lambda i: True)
    assert listed(statusCode=200) == expect(lambda i: i["statusCode"] == 200)
    assert listed(method="post") == expect(lambda i: i["method"] == "POST")
    assert listed(method="Get", statusCode=200) == \
        expect(lambda i: i["method"] == "GET" and i["statusCode"] == 200)
    # from and to are inclusive
    between = listed(**{"from": iso(moments[2]), "to": iso(moments[4])})
    assert between == expect(lambda i: iso(moments[2]) <= i["timestamp"] <= iso(moments[4]))
    assert len(between) == 3
    assert listed(**{"from": iso(moments[6])}) == expect(lambda i: i["timestamp"] >= iso(
        moments[6]))
    assert listed(to=iso(moments[0])) == expect(lambda i: i["timestamp"] == iso(moments[0]))
    assert listed(source="external") == expect(lambda i: True)
    assert listed(source="gateway") == []
    # userId is an exact match, not a prefix or a pattern
    assert ids(ok(get(gw, LOGS, alice.token, userId=user[:-1]))["entries"]) == []

    # /logs/errors: only status >= 400, newest first, the same filters on top
    errors = listed(f"{LOGS}/errors")
    assert errors == expect(lambda i: i["statusCode"] >= 400) and len(errors) == 4
    assert listed(f"{LOGS}/errors", statusCode=200) == []
    assert listed(f"{LOGS}/errors", statusCode=404) == expect(lambda i: i["statusCode"] == 404)
    assert listed(f"{LOGS}/errors", method="get") == \
        expect(lambda i: i["statusCode"] >= 400 and i["method"] == "GET")
    assert listed(f"{LOGS}/errors", to=iso(moments[4])) == \
        expect(lambda i: i["statusCode"] >= 400 and i["timestamp"] <= iso(moments[4]))
    assert listed(f"{LOGS}/errors", source="gateway") == []
    second = ok(get(gw, f"{LOGS}/errors", alice.token, userId=user, limit=3, page=2))
    assert (second["total"], second["totalPages"], ids(second["entries"])) == (4, 2, errors[3:])


def test_get_by_request_id_validates_and_hides_unknown_ids(gw, alice):
    for bad in ("not-a-uuid", "1234", "0" * 24):
        assert_invalid(entry(gw, alice.token, bad), "params", "requestId")
    assert_not_found(entry(gw, alice.token, str(uuid.uuid4())), NOT_FOUND)
    # the literal /logs/errors is the list, not a malformed request id
    assert set(ok(get(gw, f"{LOGS}/errors", alice.token))) == PAGE_FIELDS


# --- gateway entries -----------------------------------------------------------------------


def test_a_gateway_request_is_logged_with_its_fields(gw, alice):
    before = datetime.now(UTC) - timedelta(seconds=1)
    request_id = gateway_request(gw, "GET", "/api/v1/auth/profile?probe=1", alice.token,
                                 **{"User-Agent": "logs-e2e/1.0"})
    answered = time.monotonic()
    stored = wait_for_entry(gw, alice.token, request_id)
    waited = time.monotonic() - answered
    assert stored is not None, f"gateway entry not readable after {GATEWAY_ENTRY_WITHIN_S} s"
    assert waited <= GATEWAY_ENTRY_WITHIN_S, waited
    assert set(stored) == LOG_FIELDS, stored
    assert OBJECT_ID.match(stored["_id"])
    assert before <= parse_time(stored["timestamp"]) <= datetime.now(UTC), stored
    assert isinstance(stored["latency"], int | float) and stored["latency"] >= 0, stored
    assert TRACE_ID.match(stored["traceId"]), stored  # its trace: tests/e2e/test_tracing.py
    assert {k: v for k, v in stored.items()
            if k not in ("_id", "timestamp", "latency", "traceId")} == {
        "requestId": request_id, "method": "GET", "path": "/api/v1/auth/profile?probe=1",
        "route": "/api/v1/auth/profile", "statusCode": 200, "ip": "127.0.0.1",
        "userId": alice.user_id, "apiKeyId": None, "projectId": None, "ownerId": None,
        "userAgent": "logs-e2e/1.0", "contentLength": 0, "error": None, "source": "gateway"}
    mine = ids(ok(get(gw, LOGS, alice.token, userId=alice.user_id, source="gateway",
                      limit=100))["entries"])
    assert request_id in mine


def test_error_responses_are_logged_too(gw, alice, admin):
    not_found = gateway_request(gw, "GET", f"/api/v1/projects/{uuid.uuid4()}", alice.token,
                                status=404)
    stored = wait_for_entry(gw, alice.token, not_found)
    assert stored is not None
    assert (stored["route"], stored["statusCode"], stored["userId"], stored["source"]) == \
        ("/api/v1/projects/:id", 404, alice.user_id, "gateway")
    assert stored["error"] == {"code": "CLIENT_ERROR", "message": "Not Found", "stack": None}

    unauthorized = gateway_request(gw, "GET", f"{LOGS}?page=1", status=401)
    stored = wait_for_entry(gw, admin.token, unauthorized)
    assert stored is not None
    assert (stored["route"], stored["path"], stored["statusCode"], stored["userId"],
            stored["ownerId"]) == (LOGS, f"{LOGS}?page=1", 401, None, None)
    assert stored["error"] == {"code": "CLIENT_ERROR", "message": "Unauthorized",
                               "stack": None}
    # nobody's: admins only
    assert_not_found(entry(gw, alice.token, unauthorized), NOT_FOUND)

    body = {"name": "x"}  # too short: 400 from the validator, with a request body
    status, _, headers = call(gw, "POST", "/api/v1/projects", body, token=alice.token)
    assert status == 400
    invalid = header(headers, "X-Request-Id")
    stored = wait_for_entry(gw, alice.token, invalid)
    assert stored is not None
    assert (stored["method"], stored["route"], stored["statusCode"]) == \
        ("POST", "/api/v1/projects", 400)
    assert stored["contentLength"] == len(b'{"name": "x"}')
    assert stored["error"] == {"code": "CLIENT_ERROR", "message": "Bad Request", "stack": None}

    unmatched = gateway_request(gw, "GET", f"/api/v1/no-such-{uuid.uuid4().hex[:8]}",
                                alice.token, status=404)
    stored = wait_for_entry(gw, admin.token, unmatched)
    assert stored is not None
    assert (stored["route"], stored["statusCode"]) == (None, 404)
    assert stored["error"]["code"] == "CLIENT_ERROR"

    errors = ids(list_all(gw, alice.token, f"{LOGS}/errors", userId=alice.user_id,
                          source="gateway"))
    assert not_found in errors and invalid in errors
    ok_request = gateway_request(gw, "GET", "/api/v1/auth/profile", alice.token)
    assert wait_for_entry(gw, alice.token, ok_request) is not None
    assert ok_request not in ids(list_all(gw, alice.token, f"{LOGS}/errors", userId=alice.user_id))


def test_one_time_tokens_are_redacted_from_logged_paths(gw, admin):
    secret = uuid.uuid4().hex
    got, _, headers = call(gw, "GET", f"/api/v1/auth/verify-email?token={secret}")
    assert got in (200, 400), got
    stored = wait_for_entry(gw, admin.token, header(headers, "X-Request-Id"))
    assert stored is not None
    assert stored["route"] == "/api/v1/auth/verify-email"
    assert secret not in stored["path"]
    assert stored["path"] == "/api/v1/auth/verify-email?token=REDACTED"


# --- tenancy (docs/api.md 1.3) ------------------------------------------------------------------


def test_developers_never_see_each_others_gateway_entries(gw, alice, bob, admin):
    def not_found_by(user: Client) -> str:  # a 404, so it is in /logs/errors too
        return gateway_request(gw, "GET", f"/api/v1/projects/{uuid.uuid4()}", user.token,
                               status=404)

    early_bob, from_alice, from_bob = not_found_by(bob), not_found_by(alice), not_found_by(bob)
    for user, request_id in ((bob, early_bob), (alice, from_alice), (bob, from_bob)):
        assert wait_for_entry(gw, user.token, request_id) is not None  # stored, and its own

    assert_not_found(entry(gw, alice.token, from_bob), NOT_FOUND)
    assert_not_found(entry(gw, alice.token, early_bob), NOT_FOUND)
    assert_not_found(entry(gw, bob.token, from_alice), NOT_FOUND)
    # Unfiltered, newest first: each page holds an own request made before the other's, so
    # the other's request, if it leaked, would be on that page too (this holds even when
    # the database has external entries dated in the future at the top of every list).
    for user, own_earlier, foreign, foreign_requests in (
            (alice, from_alice, bob, {early_bob, from_bob}),
            (bob, early_bob, alice, {from_alice})):
        for path in (LOGS, f"{LOGS}/errors"):
            newest = ok(get(gw, path, user.token, limit=100))["entries"]
            assert own_earlier in ids(newest), (path, user)
            assert all(visible_to(user, e) for e in newest), newest
            assert not foreign_requests & set(ids(newest))
        filtered = ok(get(gw, LOGS, user.token, userId=foreign.user_id, limit=100))["entries"]
        assert all(e["source"] == "external" for e in filtered), filtered
        gateway = ok(get(gw, LOGS, user.token, source="gateway", limit=100))["entries"]
        assert own_earlier in ids(gateway), user
        assert all(user.user_id in (e["userId"], e["ownerId"]) for e in gateway), gateway

    # an admin sees everyone's
    assert ok(entry(gw, admin.token, from_alice))["userId"] == alice.user_id
    assert ok(entry(gw, admin.token, from_bob))["userId"] == bob.user_id
    errors = ok(get(gw, f"{LOGS}/errors", admin.token, source="gateway", limit=100))["entries"]
    assert {from_alice, from_bob, early_bob} <= set(ids(errors))


def test_external_entries_are_visible_to_every_authenticated_user(gw, alice, bob, admin,
                                                                   viewer):
    user = tag()
    sent = ingest(userId=user)
    ok(call(gw, "POST", LOGS, sent), 201)
    for reader in (alice, bob, admin, viewer):
        assert ok(entry(gw, reader.token, sent["requestId"]))["source"] == "external"
        assert ids(ok(get(gw, LOGS, reader.token, userId=user))["entries"]) == \
            [sent["requestId"]]
    assert_error(entry(gw, None, sent["requestId"]), 401, "UNAUTHORIZED")


def test_a_viewer_reads_its_own_traffic_and_nobody_elses(gw, viewer, alice):
    own = gateway_request(gw, "GET", "/api/v1/auth/profile", viewer.token)
    others = gateway_request(gw, "GET", "/api/v1/auth/profile", alice.token)
    assert wait_for_entry(gw, viewer.token, own) is not None
    assert wait_for_entry(gw, alice.token, others) is not None
    assert_not_found(entry(gw, viewer.token, others), NOT_FOUND)
    newest = ok(get(gw, LOGS, viewer.token, limit=100))["entries"]
    assert own in ids(newest)  # made before alice's: hers would be on this page if leaked
    assert all(visible_to(viewer, e) for e in newest) and others not in ids(newest)


@pytest.fixture(scope="module")
def alice_route(gw, alice, upstream) -> tuple[str, str]:
    """Alice's project with an anonymous upstream route: (project id, request path)."""
    project_id, config = project_with_route(gw, alice.token, upstream,
                                            f"/logs-e2e-{uuid.uuid4().hex[:8]}/items")
    path = config["path"]
    assert eventually(lambda: call(gw, "GET", path)[0] == 200), "route config never applied"
    return project_id, path


def test_project_traffic_belongs_to_the_project_owner(gw, alice, bob, admin, alice_route):
    project_id, path = alice_route
    anonymous = gateway_request(gw, "GET", path)
    by_bob = gateway_request(gw, "GET", path, bob.token)

    stored = wait_for_entry(gw, alice.token, anonymous)
    assert stored is not None
    assert (stored["route"], stored["path"], stored["statusCode"], stored["source"]) == \
        (path, path, 200, "gateway")
    assert (stored["projectId"], stored["ownerId"], stored["userId"]) == \
        (project_id, alice.user_id, None)
    stored = wait_for_entry(gw, alice.token, by_bob)
    assert stored is not None
    assert (stored["projectId"], stored["ownerId"], stored["userId"]) == \
        (project_id, alice.user_id, bob.user_id)
    # bob sees his own request to alice's route, not the anonymous one
    assert ok(entry(gw, bob.token, by_bob))["userId"] == bob.user_id
    assert_not_found(entry(gw, bob.token, anonymous), NOT_FOUND)
    assert by_bob in ids(ok(get(gw, LOGS, bob.token, userId=bob.user_id,
                                limit=100))["entries"])

    # the projectId filter: alice gets exactly her project's entries
    own_profile = gateway_request(gw, "GET", "/api/v1/auth/profile", alice.token)
    assert wait_for_entry(gw, alice.token, own_profile) is not None
    in_project = list_all(gw, alice.token, projectId=project_id)
    assert {anonymous, by_bob} <= set(ids(in_project))
    assert own_profile not in ids(in_project)
    assert all(e["projectId"] == project_id and e["ownerId"] == alice.user_id for e in in_project)
    assert ids(list_all(gw, alice.token, projectId=project_id, userId=bob.user_id)) == [by_bob]
    assert ok(get(gw, f"{LOGS}/errors", alice.token, projectId=project_id))["total"] == 0
    assert set(ids(list_all(gw, admin.token, projectId=project_id))) >= {anonymous, by_bob}

    # a project the caller cannot see, or that does not exist, is 404 on both lists
    for path_ in (LOGS, f"{LOGS}/errors"):
        assert_not_found(get(gw, path_, bob.token, projectId=project_id), "Project not found")
        assert_not_found(get(gw, path_, alice.token, projectId=str(uuid.uuid4())),
                         "Project not found")


def test_a_foreign_api_key_does_not_take_the_route_owners_traffic(gw, alice, bob,
                                                                  alice_route):
    project_id, path = alice_route
    bobs_project = ok(call(gw, "POST", "/api/v1/projects", {"name": "Bob's"}, token=bob.token),
                      201)
    key = ok(call(gw, "POST", f"/api/v1/projects/{bobs_project['id']}/keys", {"name": "k"},
                  token=bob.token), 201)
    request_id = gateway_request(gw, "GET", path, **{"X-API-Key": key["rawKey"]})
    stored = wait_for_entry(gw, alice.token, request_id)
    assert stored is not None, "alice cannot see a request to her own route"
    assert (stored["projectId"], stored["ownerId"]) == (project_id, alice.user_id)


# --- paging at scale (issue 20): capped totals, depth cap, cursors --------------------------


def _many(gw, user: str, count: int) -> None:
    """`count` external entries of `user`, a millisecond apart, in batches of 1000."""
    base = recent(7200)
    items = [ingest(userId=user, timestamp=iso(base + timedelta(milliseconds=i)),
                    statusCode=500 if i % 2 else 200) for i in range(count)]
    for start in range(0, count, 1000):
        ok(call(gw, "POST", f"{LOGS}/batch", items[start:start + 1000]), 201)


def test_totals_are_exact_up_to_ten_thousand_and_cursors_reach_every_entry(gw, alice):
    user = tag()
    _many(gw, user, 10_050)
    first = ok(get(gw, LOGS, alice.token, userId=user, limit=100))
    assert (first["total"], first["totalExact"], first["totalPages"], first["page"]) == \
        (10_000, False, 100, 1)
    deepest = ok(get(gw, LOGS, alice.token, userId=user, limit=100, page=100))
    assert len(deepest["entries"]) == 100 and deepest["nextCursor"]
    # deeper than 10,000 entries by page: refused, pointing at the cursor
    details = assert_invalid(get(gw, LOGS, alice.token, userId=user, limit=100, page=101),
                             "query", "page")
    assert "cursor" in details[0]["message"]
    # the cursor walks all of them, newest first, each page as cheap as the first
    seen, cursor, pages = [], None, 0
    while True:
        query = {"userId": user, "limit": 100, **({"cursor": cursor} if cursor else {})}
        body = ok(get(gw, LOGS, alice.token, **query))
        pages += 1
        if cursor:
            assert (body["page"], body["total"], body["totalExact"]) == (None, 10_000, False)
        seen += body["entries"]
        cursor = body["nextCursor"]
        if cursor is None:
            break
    assert pages == 101 and len({e["requestId"] for e in seen}) == 10_050
    stamps = [e["timestamp"] for e in seen]
    assert stamps == sorted(stamps, reverse=True)
    assert seen[:100] == first["entries"]


def test_a_cursor_is_stable_while_entries_arrive(gw, alice):
    user = tag()
    items, moments = _timeline(user, [200] * 6)
    ok(call(gw, "POST", f"{LOGS}/batch", items), 201)
    first = ok(get(gw, LOGS, alice.token, userId=user, limit=3))
    newer = ingest(userId=user, timestamp=iso(moments[-1] + timedelta(seconds=5)))
    ok(call(gw, "POST", LOGS, newer), 201)
    second = ok(get(gw, LOGS, alice.token, userId=user, limit=3, cursor=first["nextCursor"]))
    assert ids(first["entries"]) + ids(second["entries"]) == [
        i["requestId"] for i in sorted(items, key=lambda i: i["timestamp"], reverse=True)]
    assert second["nextCursor"] is None and second["total"] == 6
    # the errors list pages the same way
    errors = ok(get(gw, f"{LOGS}/errors", alice.token, userId=tag(), limit=1))
    assert errors["nextCursor"] is None and errors["totalExact"] is True


def test_a_cursor_cannot_be_forged_moved_or_shared(gw, alice, bob):
    user = tag()
    items, _ = _timeline(user, [200, 500, 200, 500])
    ok(call(gw, "POST", f"{LOGS}/batch", items), 201)
    cursor = ok(get(gw, LOGS, alice.token, userId=user, limit=1))["nextCursor"]
    assert cursor
    altered = cursor[:-2] + ("AA" if cursor[-2:] != "AA" else "BB")
    for token, query in (
            (alice.token, {"userId": user, "cursor": altered}),  # altered
            (alice.token, {"userId": user, "cursor": "not-a-cursor"}),  # forged
            (alice.token, {"userId": tag(), "cursor": cursor}),  # other filters
            (alice.token, {"userId": user, "statusCode": 500, "cursor": cursor}),
            (bob.token, {"userId": user, "cursor": cursor}),  # another caller
            (alice.token, {"userId": user, "cursor": cursor, "page": 2})):  # both ways
        assert_invalid(get(gw, LOGS, token, limit=1, **query), "query", "cursor")
    assert_invalid(get(gw, f"{LOGS}/errors", alice.token, userId=user, limit=1,
                       cursor=cursor), "query", "cursor")  # another list
    ok(get(gw, LOGS, alice.token, userId=user, limit=1, cursor=cursor))  # the real one
