"""The monitor page (docs/api.md section 11.1) in a real browser: Playwright driving the Debian
`chromium` package (installed by `make test`; nothing is downloaded by Playwright). A developer
logs in, sees their requests appear, the chart move and an alert arrive, and acknowledges it;
the API docs load ten times without a failed asset. The page's screenshot is kept in
tests/artifacts/monitor.png. The console's Live view has the same journey
(tests/e2e/test_console.py); this page stays for the links people kept."""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.conftest import Stack
from tests.e2e.helpers import PASSWORD, Client, register

ARTIFACTS = Path(__file__).resolve().parent.parent / "artifacts"


@pytest.fixture(scope="module")
def gw_settings() -> dict[str, str]:
    return {"ALERT_INTERVAL_MS": "500"}


def log_in(page: Page, gw: Stack, user: Client) -> None:
    page.goto(f"{gw.gateway_url}/monitor/")
    page.fill("#email", user.email)
    page.fill("#password", PASSWORD)
    page.click("#login button[type=submit]")
    expect(page.locator("#link")).to_have_text("live", timeout=10_000)
    expect(page.locator("#login")).to_be_hidden()
    expect(page.locator("#dashboard")).to_be_visible()


def test_a_developer_watches_their_traffic_and_acknowledges_an_alert(gw: Stack, page: Page):
    dave = register(gw, "dave")
    log_in(page, gw, dave)
    expect(page.locator("#who")).to_contain_text(dave.email)
    chart_before = page.evaluate("document.getElementById('chart').toDataURL()")

    probe = uuid.uuid4().hex[:8]
    for index in range(5):
        assert dave.call("GET", "/api/v1/auth/profile", query={"probe": f"{probe}-{index}"}
                         )[0] == 200
    rows = page.locator("#requests tr", has_text=probe)
    expect(rows).to_have_count(5)
    expect(page.locator("#connections")).not_to_have_text("0")

    # the chart is redrawn every second from `stats`, and now has traffic to show
    page.wait_for_function("(before) => document.getElementById('chart').toDataURL() !== before",
                           arg=chart_before)
    expect(page.locator("#rps")).not_to_have_text(re.compile(r"^(0(\.0+)?|)$"))

    rule = f"page-{probe}"
    dave.ok("POST", "/api/v1/alerts/rules", {
        "name": rule, "service": "gateway", "metric": "request_count", "windowSeconds": 60,
        "threshold": 0, "operator": "gt", "coolDownSeconds": 3600}, status=201)
    alert = page.locator("#alerts li", has_text=rule)
    expect(alert).to_have_count(1, timeout=10_000)
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "monitor.png"), full_page=True)
    alert.get_by_role("button", name="Acknowledge").click()
    expect(alert).to_have_class("critical acknowledged", timeout=5_000)
    events = dave.ok("GET", "/api/v1/alerts/events", query={"acknowledged": "true"})
    assert [e["acknowledgedBy"] for e in events["events"] if e["ruleName"] == rule] == \
        [dave.email]


def test_a_wrong_password_is_shown_and_nothing_connects(gw: Stack, page: Page):
    page.goto(f"{gw.gateway_url}/monitor/")
    page.fill("#email", f"nobody-{uuid.uuid4().hex[:6]}@example.com")
    page.fill("#password", "WrongPassw0rd")
    page.click("#login button[type=submit]")
    expect(page.locator("#login-error")).not_to_be_empty(timeout=5_000)
    expect(page.locator("#dashboard")).to_be_hidden()


def test_the_api_docs_load_ten_times_without_a_failed_asset(gw: Stack, page: Page):
    failures: list[str] = []
    page.on("requestfailed", lambda request: failures.append(f"failed {request.url}"))
    page.on("response", lambda response: failures.append(f"{response.status} {response.url}")
            if response.status >= 400 else None)
    for _ in range(10):
        page.goto(f"{gw.gateway_url}/api-docs/", wait_until="networkidle")
        expect(page.locator(".swagger-ui")).to_be_visible()
        # the document itself rendered (its fetch can start after the network looked idle;
        # the next visit must not cut it off)
        expect(page.locator(".opblock").first).to_be_visible(timeout=10_000)
    assert failures == []
