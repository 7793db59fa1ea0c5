"""Sign-in with the local OpenID provider in a real browser (Chromium through Playwright): a
person opens the initiate link, signs in and consents on the provider's own pages, and lands
on our signed-in page, which shows working tokens and leaves no code in the address bar or
the history (docs/api.md section 16)."""

from __future__ import annotations

import uuid

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.conftest import Stack
from tests.e2e.helpers import Client
from tests.oidc_support import PROVIDER_URL, provider_up
from tests.support import free_port

PORT = free_port()


@pytest.fixture(scope="module")
def gw_settings() -> dict[str, str]:
    if not provider_up():
        pytest.fail(f"the local OpenID provider does not answer at {PROVIDER_URL} (make infra)")
    # the provider sends the browser back to APP_URL: this stack's own gateway
    return {"GATEWAY_PORT": str(PORT), "APP_URL": f"http://127.0.0.1:{PORT}",
            "OAUTH_PROVIDERS": "local", "OAUTH_LOCAL_ISSUER": PROVIDER_URL,
            "OAUTH_LOCAL_CLIENT_ID": "gateway-platform",
            "OAUTH_LOCAL_CLIENT_SECRET": "local-dev-secret"}


def test_a_person_signs_in_with_the_provider_in_a_browser(gw: Stack, page: Page):
    login = f"browser-{uuid.uuid4().hex[:8]}@example.com"
    page.goto(f"{gw.gateway_url}/api/v1/oauth/initiate/local?redirect=1")
    assert page.url.startswith(PROVIDER_URL)
    page.fill("input[name=login]", login)
    page.fill("input[name=password]", "anything")
    page.click("button[type=submit]")
    page.click("button[type=submit]")  # the consent page's Continue
    expect(page.locator("#title")).to_have_text("Signed in", timeout=15_000)
    assert page.url == f"{gw.gateway_url}/api/v1/oauth/signed-in"  # the code is gone
    assert "code=" not in page.evaluate("window.location.href + document.referrer")
    expect(page.locator("#who")).to_have_text(login)
    token = page.locator("#access").input_value()
    profile = Client(gw.gateway_url, token).ok("GET", "/api/v1/auth/profile")
    assert profile["email"] == login
