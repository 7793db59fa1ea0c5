"""The developer console (`/console/`, issue 27) in a real browser: Playwright driving the Debian
`chromium` package. A new user's whole journey through the UI only (register, a project, a
key, a route to a local upstream, traffic, Logs, Analytics, an alert rule that fires and is
acknowledged, the live view); projects renamed and deleted; the account pages; every page at
a phone's width without horizontal scrolling; axe-core (vendored in tests/vendor) finding
nothing serious or critical on any page; the first load's weight. Screenshots of each page
are written to .local/console-screenshots/ for review."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, Response, ViewportSize, expect

from tests.e2e.conftest import Stack
from tests.e2e.helpers import PASSWORD, Client, Upstream, eventually, register, with_role
from tests.support import request_json

ROOT = Path(__file__).resolve().parents[2]
SHOTS = ROOT / ".local" / "console-screenshots"
AXE = ROOT / "tests" / "vendor" / "axe-core" / "axe.min.js"
PAGE_WEIGHT_LIMIT = 300_000
NAV = ("Projects", "Logs", "Analytics", "Alerts", "Live")
PHONE: ViewportSize = {"width": 390, "height": 844}


@pytest.fixture(scope="module")
def gw_settings() -> dict[str, str]:
    return {"ALERT_INTERVAL_MS": "500"}


@pytest.fixture
def phone(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport=PHONE, is_mobile=True, has_touch=True)
    opened = context.new_page()
    yield opened
    context.close()


def console(gw: Stack) -> str:
    return f"{gw.gateway_url}/console/"


def heading(page: Page, text: str) -> None:
    expect(page.get_by_role("heading", level=1)).to_have_text(text, timeout=10_000)


def check_page(page: Page, name: str) -> None:
    """axe-core finds nothing serious or critical; the screenshot is kept for review."""
    # not a script tag: the console's CSP (script-src 'self') refuses inline scripts, rightly;
    # what the test runner evaluates over the DevTools protocol is not subject to it
    if not page.evaluate("typeof axe !== 'undefined'"):
        page.evaluate(AXE.read_text() + "\n;0")
    violations: list[dict[str, Any]] = page.evaluate("""async () => {
        const result = await axe.run(document, { resultTypes: ["violations"] });
        return result.violations.map((v) => ({ id: v.id, impact: v.impact, help: v.help,
            nodes: v.nodes.slice(0, 5).map((n) => n.target.join(" ")) }));
    }""")
    serious = [v for v in violations if v["impact"] in ("serious", "critical")]
    assert serious == [], f"{name}: {serious}"
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def sign_up(page: Page, gw: Stack, tag: str) -> str:
    email = f"{tag}-{uuid.uuid4().hex[:10]}@example.com"
    page.goto(console(gw))
    heading(page, "Sign in")
    page.get_by_role("link", name="Create an account").click()
    heading(page, "Create account")
    page.get_by_label("Name").fill("Console User")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Create account").click()
    heading(page, "Projects")
    return email


def sign_in(page: Page, gw: Stack, email: str) -> None:
    page.goto(console(gw))
    heading(page, "Sign in")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    heading(page, "Projects")


def create_project(page: Page, name: str) -> None:
    page.get_by_role("link", name="Projects", exact=True).click()
    heading(page, "Projects")
    page.get_by_role("button", name="New project").click()
    page.get_by_label("Project name").fill(name)
    page.get_by_role("button", name="Create project").click()
    heading(page, name)


def send(gw: Stack, path: str, key: str, count: int) -> list[str]:
    """Requests with the API key through the gateway; their request ids."""
    ids = []
    for _ in range(count):
        status, _body, headers = request_json("GET", gw.gateway_url + path,
                                              headers={"X-API-Key": key})
        assert status == 200, (status, _body)
        ids.append(headers["X-Request-Id"])
    return ids


def test_a_new_user_goes_from_sign_up_to_an_acknowledged_alert(
        gw: Stack, upstream: Upstream, page: Page) -> None:
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    tag = uuid.uuid4().hex[:8]
    page.goto(console(gw))
    heading(page, "Sign in")
    expect(page.get_by_text("reloading or closing the page signs you out")).to_be_visible()
    check_page(page, "sign-in")
    email = sign_up(page, gw, "journey")
    expect(page.get_by_text(email)).to_be_visible()
    assert page.evaluate("localStorage.length + sessionStorage.length") == 0
    check_page(page, "projects-empty")

    project = f"Shop {tag}"
    create_project(page, project)

    # a key, shown once, copied with its button
    page.get_by_label("Key name").fill("checkout")
    page.get_by_role("button", name="Create key").click()
    secret = page.locator(".secret")
    expect(secret).to_have_text(re.compile(r"^gw_[0-9a-f]{64}$"))
    expect(page.get_by_text("you will not see this again")).to_be_visible()
    key = secret.inner_text()
    page.get_by_role("button", name="Copy key").click()
    expect(page.get_by_text("Copied.")).to_be_visible()
    assert page.evaluate("navigator.clipboard.readText()") == key
    keys = page.get_by_role("table")
    expect(keys).to_contain_text(key[:10] + "...")
    expect(keys).to_contain_text("checkout")
    check_page(page, "project-keys")

    # a route: the API's validation error shown next to the field it names, then saved
    page.get_by_role("link", name="Routes", exact=True).click()
    page.get_by_role("button", name="New route").click()
    page.get_by_label("Method").select_option("GET")
    page.get_by_label("Path").fill("no-leading-slash")
    page.get_by_label("Upstream URL").fill(f"http://127.0.0.1:{upstream.port}/base")
    page.get_by_label("Rate limit").fill("100")
    page.get_by_role("button", name="Save route").click()
    expect(page.get_by_label("Path")).to_have_attribute("aria-invalid", "true")
    expect(page.locator('[data-field="path"] .field-error')).not_to_be_empty()
    expect(page.get_by_role("alert").filter(has_text="Path")).to_be_visible()
    check_page(page, "project-route-error")
    path = f"/shop-{tag}/items"
    page.get_by_label("Path").fill(path)
    page.get_by_role("button", name="Save route").click()
    routes = page.get_by_role("table")
    expect(routes).to_contain_text(path)
    expect(routes).to_contain_text("100/min")
    check_page(page, "project-routes")

    # traffic with the key, through the gateway
    request_ids = send(gw, path, key, 5)

    # Logs: the entries, newest first, and one found by its request id
    page.get_by_role("link", name="Logs").click()
    heading(page, "Logs")
    rows = page.get_by_role("row").filter(has_text=path)
    for _ in range(20):  # the log store is eventually consistent: load the list again
        if rows.count() == 5:
            break
        page.get_by_role("button", name="Apply filters").click()
        page.wait_for_timeout(500)
    expect(rows).to_have_count(5)
    page.get_by_label("Request ID").fill(request_ids[2])
    page.get_by_role("button", name="Find").click()
    entry = page.get_by_role("region", name="Log entry")
    expect(entry).to_contain_text(request_ids[2])
    expect(entry).to_contain_text("200")
    page.get_by_label("Errors only").check()
    page.get_by_role("button", name="Apply filters").click()
    expect(page.get_by_role("row").filter(has_text=path)).to_have_count(0)
    check_page(page, "logs")

    # Analytics for the project
    page.get_by_role("link", name="Analytics").click()
    heading(page, "Analytics")
    page.get_by_label("Project", exact=True).select_option(label=project)
    endpoint = page.get_by_role("row").filter(has_text=f"/shop-{tag}/items")
    for _ in range(20):  # rollups follow the events
        page.get_by_role("button", name="Show").click()
        try:
            expect(endpoint).to_be_visible(timeout=1_000)
            break
        except AssertionError:
            continue
    expect(endpoint).to_contain_text("5")
    expect(page.locator(".stat").filter(has_text="Requests").locator(".value")).to_have_text("5")
    expect(page.get_by_role("img", name=re.compile("Requests per hour"))).to_be_visible()
    check_page(page, "analytics")

    # an alert rule over the project's traffic fires; its event is acknowledged
    page.get_by_role("link", name="Alerts").click()
    heading(page, "Alerts")
    page.get_by_role("button", name="New rule").click()
    rule = f"busy-{tag}"
    page.get_by_label("Rule name").fill(rule)
    page.get_by_label("Metric").select_option("request_count")
    page.get_by_label("Operator").select_option("gt")
    page.get_by_label("Threshold").fill("1")
    page.get_by_label("Project", exact=True).select_option(label=project)
    page.get_by_label("Cool-down (seconds)").fill("3600")
    page.get_by_role("button", name="Save rule").click()
    expect(page.get_by_role("row").filter(has_text=rule)).to_contain_text("request_count > 1")
    event = page.locator("li.event").filter(has_text=rule)
    expect(event).to_have_count(1, timeout=20_000)
    check_page(page, "alerts")
    event.get_by_role("button", name="Acknowledge").click()
    expect(page.locator("li.event").filter(has_text=rule)).to_have_count(0)
    page.get_by_label("Show").select_option("true")
    expect(page.locator("li.event").filter(has_text=rule)).to_contain_text(
        f"acknowledged by {email}")
    # the rule is turned off, then edited
    page.get_by_role("button", name=f"Disable {rule}").click()
    expect(page.get_by_role("button", name=f"Enable {rule}")).to_be_visible()
    page.get_by_role("button", name=f"Edit {rule}", exact=True).click()
    page.get_by_label("Threshold").fill("1000")
    page.get_by_role("button", name="Save rule").click()
    expect(page.get_by_role("row").filter(has_text=rule)).to_contain_text("request_count > 1000")

    # Live: the monitor stream shows the next requests
    page.get_by_role("link", name="Live").click()
    heading(page, "Live")
    expect(page.get_by_role("status").filter(has_text="live")).to_be_visible(timeout=10_000)
    send(gw, path + "?live=1", key, 2)
    expect(page.get_by_role("row").filter(has_text=path + "?live=1")).to_have_count(2)
    check_page(page, "live")

    page.get_by_role("button", name="Sign out").click()
    heading(page, "Sign in")
    expect(page.get_by_role("link", name="Logs")).to_have_count(0)


def test_a_project_is_renamed_gets_a_webhook_then_is_deleted_after_a_confirmation(
        gw: Stack, upstream: Upstream, page: Page) -> None:
    sign_up(page, gw, "projects")
    tag = uuid.uuid4().hex[:6]
    create_project(page, f"Draft {tag}")
    page.get_by_role("link", name="Settings").click()
    page.get_by_label("Project name").fill(f"Final {tag}")
    page.get_by_role("button", name="Save project").click()
    heading(page, f"Final {tag}")
    check_page(page, "project-settings")
    page.get_by_role("link", name="Webhooks").click()
    expect(page.get_by_role("heading", name="Webhooks")).to_be_visible()
    page.get_by_label("Webhook name").fill("orders")
    page.get_by_label("Endpoint URL").fill(f"http://127.0.0.1:{upstream.port}/base/hook")
    page.get_by_role("button", name="Create webhook").click()  # no event chosen: refused
    expect(page.get_by_role("alert")).to_contain_text("Events")
    page.get_by_label("project.updated").check()
    page.get_by_role("button", name="Create webhook").click()
    expect(page.locator(".secret")).to_have_text(re.compile(r"^whsec_"))
    expect(page.get_by_text("you will not see this again")).to_be_visible()
    page.get_by_role("button", name="Send test to orders").click()
    deliveries = page.get_by_role("table", name="Deliveries of orders")
    expect(deliveries).to_contain_text("webhook.test")
    for _ in range(20):  # delivered through the broker
        if "delivered" in deliveries.inner_text():
            break
        page.get_by_role("button", name="Deliveries of orders").click()
        page.wait_for_timeout(500)
    expect(deliveries).to_contain_text("delivered")
    check_page(page, "project-webhooks")
    page.get_by_role("button", name="Edit orders").click()
    page.get_by_label("Webhook name").fill("orders-v2")
    page.get_by_label("route.created").check()
    page.get_by_role("button", name="Save webhook").click()
    webhooks = page.get_by_role("table", name="Webhooks")
    expect(webhooks).to_contain_text("orders-v2")
    expect(webhooks).to_contain_text("project.updated, route.created")

    page.get_by_role("link", name="Settings").click()
    page.get_by_role("button", name="Delete project").click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_contain_text(f"Delete project “Final {tag}”?")
    page.keyboard.press("Escape")  # the keyboard's way out
    expect(dialog).to_have_count(0)
    expect(page.get_by_role("button", name="Delete project")).to_be_focused()
    page.get_by_role("button", name="Delete project").click()
    dialog.get_by_role("button", name="Cancel").click()
    expect(dialog).to_have_count(0)
    heading(page, f"Final {tag}")
    page.get_by_role("button", name="Delete project").click()
    page.get_by_role("dialog").get_by_role("button", name=f"Delete “Final {tag}”").click()
    heading(page, "Projects")
    expect(page.get_by_role("link", name=f"Final {tag}")).to_have_count(0)
    check_page(page, "projects")


def test_the_account_pages(gw: Stack, page: Page) -> None:
    user = register(gw, "account")
    page.goto(console(gw))
    # keyboard only: the email field, Tab to the password, Enter signs in
    page.get_by_label("Email").focus()
    page.keyboard.type(user.email)
    page.keyboard.press("Tab")
    page.keyboard.type("WrongPassw0rd")
    page.keyboard.press("Enter")
    expect(page.get_by_role("alert")).to_have_text("Invalid email or password")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_label("Password").press("Enter")
    heading(page, "Projects")
    page.get_by_role("button", name="Sign out").click()
    heading(page, "Sign in")

    page.get_by_role("link", name="Forgot your password?").click()
    heading(page, "Forgot password")
    page.get_by_label("Email").fill(user.email)
    page.get_by_role("button", name="Send reset link").click()
    expect(page.get_by_role("status").filter(has_text="If email exists")).to_be_visible()
    check_page(page, "forgot-password")

    page.goto(console(gw) + "#/reset-password?token=" + "0" * 32)
    heading(page, "Choose a new password")
    page.get_by_label("New password").fill("NewPassw0rd")
    page.get_by_role("button", name="Set password").click()
    expect(page.get_by_role("alert")).to_contain_text("reset token")
    check_page(page, "reset-password")

    page.goto(console(gw) + "#/verify-email?token=" + "0" * 32)
    heading(page, "Verify email")
    expect(page.locator(".form-error")).to_contain_text("token")
    check_page(page, "verify-email")

    page.goto(console(gw) + "#/register")
    heading(page, "Create account")
    check_page(page, "register")

    # a provider sign-in that came back: the code leaves the address bar before its exchange
    page.goto(console(gw) + "#code=not-a-real-code")
    heading(page, "Sign in")
    expect(page.get_by_text("Signing in with the provider failed")).to_be_visible()
    assert "code=" not in page.url

    # a page behind the sign-in comes back after it
    page.goto(console(gw) + "#/logs")
    heading(page, "Sign in")
    page.get_by_label("Email").fill(user.email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    heading(page, "Logs")


def always_firing_rule(user: Client, name: str, **rule: Any) -> dict[str, Any]:
    """A rule over the user's own gateway traffic that fires at the next evaluation."""
    answer: dict[str, Any] = user.ok("POST", "/api/v1/alerts/rules", {
        "name": name, "service": "gateway", "metric": "request_count", "windowSeconds": 60,
        "threshold": 0, "operator": "gt", "coolDownSeconds": 3600, **rule}, status=201)
    return answer


def test_live_shows_traffic_its_chart_and_an_alert_acknowledged_there(
        gw: Stack, page: Page) -> None:
    """The monitor page's journey (tests/e2e/test_monitor_page.py), in the console's Live
    view: the caller's requests appear, the chart and the numbers move, an alert arrives and
    is acknowledged there."""
    dave = register(gw, "live")
    sign_in(page, gw, dave.email)
    page.get_by_role("link", name="Live").click()
    heading(page, "Live")
    expect(page.get_by_role("status").filter(has_text="live")).to_be_visible(timeout=10_000)
    expect(page.locator("#live-connections")).not_to_have_text("0")
    probe = uuid.uuid4().hex[:8]
    for index in range(5):
        assert dave.call("GET", "/api/v1/auth/profile", query={"probe": f"{probe}-{index}"}
                         )[0] == 200
    expect(page.get_by_role("row").filter(has_text=probe)).to_have_count(5)
    # `stats` arrive every second: the line gets points, requests per second a number
    expect(page.locator("svg.chart polyline")).not_to_have_attribute("points", "")
    expect(page.locator("#live-rps")).not_to_have_text("\u2013")

    rule = f"live-{probe}"
    always_firing_rule(dave, rule)
    alert = page.locator("li.event").filter(has_text=rule)
    expect(alert).to_have_count(1, timeout=20_000)
    check_page(page, "live-alert")
    alert.get_by_role("button", name="Acknowledge", exact=True).click()
    expect(alert).to_contain_text(f"acknowledged by {dave.email}")
    expect(alert).to_have_class(re.compile(r"\backnowledged\b"))
    events = dave.ok("GET", "/api/v1/alerts/events", query={"acknowledged": "true"})
    assert [e["acknowledgedBy"] for e in events["events"] if e["ruleName"] == rule] == \
        [dave.email]


def test_alert_events_are_filtered_and_paged(gw: Stack, page: Page) -> None:
    user = register(gw, "events")
    tag = uuid.uuid4().hex[:6]
    for _ in range(3):
        user.call("GET", "/api/v1/auth/profile")
    chatty = always_firing_rule(user, f"chatty-{tag}", coolDownSeconds=0, severity="warning")
    always_firing_rule(user, f"rare-{tag}", severity="critical")

    def warnings() -> int:
        total: int = user.ok("GET", "/api/v1/alerts/events",
                             query={"severity": "warning", "limit": 1})["total"]
        return total

    assert eventually(lambda: warnings() > 21, within_s=60), warnings()
    user.ok("PUT", f"/api/v1/alerts/rules/{chatty['id']}", {"enabled": False})

    sign_in(page, gw, user.email)
    page.get_by_role("link", name="Alerts").click()
    heading(page, "Alerts")
    events = page.locator("li.event")
    expect(events).to_have_count(20)
    expect(page.get_by_text(re.compile(r"^1\u201320 of \d+ event"))).to_be_visible()
    page.get_by_role("button", name="Older events").click()
    expect(page.get_by_text(re.compile(r"^21\u2013\d+ of \d+ event"))).to_be_visible()
    expect(page.get_by_role("button", name="Newer events")).to_be_visible()
    page.get_by_role("button", name="Newer events").click()
    expect(page.get_by_text(re.compile(r"^1\u201320 of \d+ event"))).to_be_visible()

    page.get_by_label("Severity").select_option("critical")
    expect(events).to_have_count(1)
    expect(events).to_contain_text(f"rare-{tag}")
    page.get_by_label("Severity").select_option("")
    page.get_by_label("Service", exact=True).fill("no-such-service")
    page.get_by_role("button", name="Filter events").click()
    expect(page.get_by_text("No events.")).to_be_visible()
    page.get_by_label("Service", exact=True).fill("gateway")
    page.get_by_label("Fired").select_option("1h")
    expect(page.get_by_text(re.compile(r"^1\u201320 of \d+ event"))).to_be_visible()
    check_page(page, "alerts-paged")


def test_a_webhooks_deliveries_are_inspected_filtered_paged_and_redelivered(
        gw: Stack, upstream: Upstream, page: Page) -> None:
    user = register(gw, "deliveries")
    project = user.ok("POST", "/api/v1/projects", {"name": f"Hooks {uuid.uuid4().hex[:6]}"},
                      status=201)
    hook = user.ok("POST", f"/api/v1/projects/{project['id']}/webhooks", {
        "name": "orders", "url": f"http://127.0.0.1:{upstream.port}/base/hook",
        "events": ["project.updated"]}, status=201)
    for _ in range(21):
        user.ok("POST", f"/api/v1/webhooks/{hook['id']}/test", status=202)

    def delivered() -> int:
        total: int = user.ok("GET", f"/api/v1/webhooks/{hook['id']}/deliveries",
                             query={"status": "delivered", "limit": 1})["total"]
        return total

    assert eventually(lambda: delivered() == 21, within_s=30), delivered()

    sign_in(page, gw, user.email)
    page.goto(console(gw) + f"#/projects/{project['id']}/webhooks")
    heading(page, project["name"])
    page.get_by_role("button", name="Deliveries of orders").click()
    deliveries = page.get_by_role("table", name="Deliveries of orders")
    expect(deliveries.get_by_role("row")).to_have_count(21)  # a header and 20
    expect(page.get_by_text("Page 1 of 2 · 21 deliveries")).to_be_visible()
    page.get_by_role("button", name="Older deliveries").click()
    expect(page.get_by_text("Page 2 of 2 · 21 deliveries")).to_be_visible()
    expect(deliveries.get_by_role("row")).to_have_count(2)
    page.get_by_label("Delivery status").select_option("failed")
    expect(page.get_by_text("No failed deliveries.")).to_be_visible()
    page.get_by_label("Delivery status").select_option("delivered")
    expect(page.get_by_text("Page 1 of 2 · 21 deliveries")).to_be_visible()

    # one delivery: its payload and its attempt; sent again, a second attempt
    deliveries.get_by_role("button", name=re.compile("^Details of webhook.test")).first.click()
    detail = page.get_by_role("region", name="Delivery")
    expect(detail).to_contain_text('"type": "webhook.test"')
    attempts = detail.get_by_role("table")
    expect(attempts.get_by_role("row")).to_have_count(2)
    expect(attempts).to_contain_text("200")
    check_page(page, "project-webhook-delivery")
    first = deliveries.get_by_role("row").nth(1)
    label = first.get_by_role("button", name=re.compile("^Details of")).get_attribute(
        "aria-label")
    assert label is not None
    delivery_id = label.rsplit(" ", 1)[1]
    first.get_by_role("button", name="Redeliver").click()
    expect(page.get_by_text("Redelivery queued")).to_be_visible()
    assert eventually(lambda: user.ok(
        "GET", f"/api/v1/webhooks/{hook['id']}/deliveries/{delivery_id}")["attempts"] == 2,
        within_s=30)
    # the list again, unfiltered (while it was pending the delivery left the filtered one)
    page.get_by_label("Delivery status").select_option("")
    deliveries.get_by_role("button", name=f"Details of webhook.test delivery {delivery_id}",
                           exact=True).click()
    expect(detail.get_by_role("table").get_by_role("row")).to_have_count(3)

    # a new secret, shown once; the old one signs beside it for a day
    page.get_by_role("button", name="Rotate secret of orders").click()
    page.get_by_role("dialog").get_by_role("button", name="Rotate secret").click()
    expect(page.locator(".secret")).to_have_text(re.compile(r"^whsec_"))
    got = user.ok("GET", f"/api/v1/webhooks/{hook['id']}")
    assert got["previousSecretUntil"]


def test_a_key_is_revoked_and_a_route_deleted(gw: Stack, upstream: Upstream,
                                               page: Page) -> None:
    user = register(gw, "revoke")
    tag = uuid.uuid4().hex[:6]
    project = user.ok("POST", "/api/v1/projects", {"name": f"Revoke {tag}"}, status=201)
    key = user.ok("POST", f"/api/v1/projects/{project['id']}/keys", {"name": "leaked"},
                  status=201)["key"]
    path = f"/revoke-{tag}/items"
    user.ok("POST", f"/api/v1/projects/{project['id']}/routes", {
        "method": "GET", "path": path, "upstreamUrl": f"http://127.0.0.1:{upstream.port}/base"},
        status=201)
    assert eventually(lambda: request_json("GET", gw.gateway_url + path,
                                           headers={"X-API-Key": key})[0] == 200)

    sign_in(page, gw, user.email)
    page.goto(console(gw) + f"#/projects/{project['id']}/keys")
    heading(page, project["name"])
    page.get_by_role("button", name="Revoke").click()
    expect(page.get_by_role("table", name="API keys")).to_contain_text("revoked")
    expect(page.get_by_role("button", name="Revoke")).to_have_count(0)
    def refused() -> tuple[int, Any, Any] | None:
        got = request_json("GET", gw.gateway_url + path, headers={"X-API-Key": key})
        return got if got[0] == 403 else None

    # the revocation reaches the gateway by event, within a second (gateway/api_keys.py)
    answer = eventually(refused, within_s=5)
    assert answer is not None, "the revoked key still works"
    assert answer[1]["message"] == "Key revoked"

    page.get_by_role("link", name="Routes", exact=True).click()
    page.get_by_role("button", name=f"Delete GET {path}").click()
    page.get_by_role("dialog").get_by_role("button", name="Delete route").click()
    expect(page.get_by_text("No routes yet")).to_be_visible()
    assert user.ok("GET", f"/api/v1/projects/{project['id']}/routes") == []


def test_a_viewer_and_an_admin_see_what_their_role_lets_them(gw: Stack, page: Page) -> None:
    owner = register(gw, "tenant")
    theirs = owner.ok("POST", "/api/v1/projects", {"name": f"Tenant {uuid.uuid4().hex[:6]}"},
                      status=201)
    owner.call("GET", "/api/v1/auth/profile")
    rule = f"tenant-{uuid.uuid4().hex[:6]}"
    always_firing_rule(owner, rule, projectId=theirs["id"])
    always_firing_rule(owner, f"{rule}-all")
    assert eventually(lambda: owner.ok("GET", "/api/v1/alerts/events")["total"] > 0,
                      within_s=20)

    admin = with_role(gw, register(gw, "admin"), "ADMIN")
    sign_in(page, gw, admin.email)
    expect(page.get_by_text("admin", exact=True)).to_be_visible()
    projects = page.get_by_role("table", name="Projects")
    expect(projects.get_by_role("columnheader", name="Owner")).to_be_visible()
    expect(projects.get_by_role("row").filter(has_text=theirs["name"])).to_contain_text(
        owner.user_id)
    page.get_by_role("link", name="Logs").click()
    page.get_by_label("User ID").fill(owner.user_id)
    page.get_by_role("button", name="Apply filters").click()
    rows = page.get_by_role("row").filter(has_text="/api/v1/auth/profile")
    expect(rows.first).to_be_visible()
    page.get_by_role("link", name="Alerts").click()
    page.get_by_role("button", name=f"Edit {rule}", exact=True).click()
    # another tenant's rule keeps its project when an admin edits it
    expect(page.get_by_label("Project", exact=True)).to_have_value(theirs["id"])
    page.get_by_role("button", name="Cancel").click()
    page.get_by_role("button", name="Sign out").click()

    # a developer whose rule fired is made a viewer: the event is shown, not acknowledgeable
    viewer = register(gw, "viewer")
    viewer.call("GET", "/api/v1/auth/profile")
    always_firing_rule(viewer, f"viewer-{uuid.uuid4().hex[:6]}")
    assert eventually(lambda: viewer.ok("GET", "/api/v1/alerts/events")["total"] > 0,
                      within_s=20)
    viewer = with_role(gw, viewer, "VIEWER")
    sign_in(page, gw, viewer.email)
    expect(page.get_by_text("viewer", exact=True)).to_be_visible()
    page.get_by_role("link", name="Alerts").click()
    heading(page, "Alerts")
    expect(page.locator("li.event")).to_have_count(1)
    expect(page.get_by_role("button", name="Acknowledge")).to_have_count(0)
    expect(page.get_by_role("button", name="New rule")).to_have_count(0)
    page.get_by_role("link", name="Projects", exact=True).click()
    heading(page, "Projects")
    expect(page.get_by_role("button", name="New project")).to_have_count(0)
    check_page(page, "viewer-projects")


def test_tokens_are_refreshed_in_memory_and_a_sign_out_wins_over_a_refresh(
        gw: Stack, page: Page) -> None:
    """The page's own refresh (what its timer runs before the access token expires), then a
    sign-out while a refresh is on its way: the pair that comes back is ended, not kept."""
    user = register(gw, "refresh")
    sign_in(page, gw, user.email)
    before = page.evaluate("session.access")
    page.evaluate("refreshTokens()")
    assert page.evaluate("session.access") not in (before, None)
    page.get_by_role("link", name="Logs").click()
    heading(page, "Logs")  # the API answers the new token

    pairs: list[dict[str, Any]] = []
    page.on("response", lambda response: pairs.append(response.json())
            if response.url.endswith("/api/v1/auth/refresh") and response.ok else None)
    left = page.evaluate("""async () => {
        const refreshing = refreshTokens();
        await signOut();
        await refreshing.catch(() => {});
        return session.access;
    }""")
    assert left is None
    heading(page, "Sign in")
    assert len(pairs) == 1

    def revoked() -> bool:
        status, _, _ = request_json("POST", f"{gw.gateway_url}/api/v1/auth/refresh",
                                    {"refreshToken": pairs[0]["refreshToken"]})
        return status == 401

    assert eventually(revoked)


def test_every_page_fits_a_phone(gw: Stack, upstream: Upstream, phone: Page) -> None:
    user = register(gw, "phone")
    project = user.ok("POST", "/api/v1/projects", {"name": "Phone project"}, status=201)
    user.ok("POST", f"/api/v1/projects/{project['id']}/keys", {"name": "mobile"}, status=201)
    user.ok("POST", f"/api/v1/projects/{project['id']}/routes", {
        "method": "GET", "path": f"/phone-{uuid.uuid4().hex[:6]}/a-rather-long/path/:id",
        "upstreamUrl": f"http://127.0.0.1:{upstream.port}/base/with/a/long/prefix"},
        status=201)
    user.ok("POST", "/api/v1/alerts/rules", {
        "name": "phone rule", "service": "gateway", "metric": "error_rate",
        "windowSeconds": 60, "threshold": 50, "operator": "gt"}, status=201)
    for _ in range(3):
        user.call("GET", "/api/v1/auth/profile")

    phone.goto(console(gw))
    heading(phone, "Sign in")
    assert_fits(phone, "phone-sign-in")
    sign_in(phone, gw, user.email)
    pages = [("#/projects", "Projects", "projects"),
             (f"#/projects/{project['id']}/keys", "Phone project", "project-keys"),
             (f"#/projects/{project['id']}/routes", "Phone project", "project-routes"),
             (f"#/projects/{project['id']}/webhooks", "Phone project", "project-webhooks"),
             (f"#/projects/{project['id']}/settings", "Phone project", "project-settings"),
             ("#/logs", "Logs", "logs"), ("#/analytics", "Analytics", "analytics"),
             ("#/alerts", "Alerts", "alerts"), ("#/live", "Live", "live")]
    # what each page shows once its data is in (a hash change does not reset the load state)
    loaded = {"projects": "Phone project", "project-keys": "mobile",
              "project-routes": "a-rather-long/path", "project-webhooks": "No webhooks yet.",
              "project-settings": "Delete project", "logs": "/api/v1/auth/profile",
              "analytics": "Top endpoints", "alerts": "phone rule", "live": "monitors connected"}
    for fragment, title, name in pages:
        phone.evaluate("(fragment) => { location.hash = fragment; }", fragment)
        heading(phone, title)
        nav = phone.get_by_role("navigation", name="Main")
        expect(nav.get_by_role("link", name=title if title in NAV else "Projects")
               ).to_have_attribute("aria-current", "page")
        expect(phone.get_by_text(loaded[name]).first).to_be_visible()
        if name == "live":
            expect(phone.get_by_role("status").filter(has_text="live")).to_be_visible()
        assert_fits(phone, f"phone-{name}")
    # the menu and the forms stay reachable too
    phone.evaluate("location.hash = '#/alerts'")
    phone.get_by_role("button", name="New rule").click()
    assert_fits(phone, "phone-alerts-new-rule")


def assert_fits(page: Page, name: str) -> None:
    """No horizontal scrolling, and every control is within the viewport's width."""
    overflow = page.evaluate("""() => {
        const width = document.documentElement.clientWidth;
        const out = [];
        const scrolled = document.documentElement.scrollWidth;
        if (scrolled > width) out.push(`page ${scrolled}`);
        for (const el of document.querySelectorAll("a, button, input, select, textarea, summary")) {
            const box = el.getBoundingClientRect();
            if (!box.width || !box.height) continue;
            if (box.left < 0 || box.right > width + 0.5) {
                out.push(`${el.outerHTML.slice(0, 80)} ${box.right}`);
            }
        }
        return out;
    }""")
    assert overflow == [], f"{name}: {overflow}"
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def test_the_first_load_weighs_under_300_kb(gw: Stack, page: Page) -> None:
    responses: list[Response] = []
    page.on("response", lambda response: responses.append(response))
    page.goto(console(gw), wait_until="networkidle")
    heading(page, "Sign in")
    sizes = {}
    for response in responses:
        body = len(response.body()) if response.status < 300 else 0
        sizes[response.url] = body + response.request.sizes()["responseHeadersSize"]
    total = sum(sizes.values())
    print(f"\nconsole first load: {total} bytes over {len(sizes)} responses")
    for url, size in sorted(sizes.items(), key=lambda item: -item[1]):
        print(f"  {size:>8}  {url}")
    assert any(url.endswith("/console/console.js") for url in sizes)
    assert not any("socket.io" in url for url in sizes)  # loaded by the Live page only
    assert total < PAGE_WEIGHT_LIMIT
