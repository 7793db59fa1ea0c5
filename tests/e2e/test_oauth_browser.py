"""Sign-in with the local OpenID provider in a real browser (Chromium through Playwright): a
person opens the console, follows its "Sign in with ..." link, signs in and consents on the
provider's own pages, and lands back in the console signed in, no code left in the address
(docs/api.md sections 16 and 17); and our small signed-in page does the same alone."""

from __future__ import annotations

import json
import uuid
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.conftest import Stack
from tests.e2e.helpers import Client
from tests.oidc_support import (
    PROVIDER_URL,
    cookies_set,
    get_no_redirect,
    provider_up,
    sign_in_at_provider,
)
from tests.support import free_port

PORT = free_port()


@pytest.fixture(scope="module")
def gw_settings() -> dict[str, str]:
    if not provider_up():
        pytest.fail(f"the local OpenID provider does not answer at {PROVIDER_URL} (make infra)")
    # the provider sends the browser back to APP_URL: this stack's own gateway
    return {"GATEWAY_PORT": str(PORT), "APP_URL": f"http://127.0.0.1:{PORT}",
            "OAUTH_PROVIDERS": "local", "OAUTH_LOCAL_ISSUER": PROVIDER_URL,
            "OAUTH_LOCAL_DISPLAY_NAME": "Local OpenID provider",
            "OAUTH_LOCAL_CLIENT_ID": "gateway-platform",
            "OAUTH_LOCAL_CLIENT_SECRET": "local-dev-secret"}


def sign_in_at_the_provider(page: Page, login: str) -> None:
    assert page.url.startswith(PROVIDER_URL)
    page.fill("input[name=login]", login)
    page.fill("input[name=password]", "anything")
    page.click("button[type=submit]")
    page.click("button[type=submit]")  # the consent page's Continue


def test_a_person_signs_in_to_the_console_with_the_provider(gw: Stack, page: Page):
    login = f"console-{uuid.uuid4().hex[:8]}@example.com"
    page.goto(f"{gw.gateway_url}/console/")
    page.get_by_role("link", name="Sign in with Local OpenID provider").click()
    sign_in_at_the_provider(page, login)
    expect(page.get_by_role("heading", level=1)).to_have_text("Projects", timeout=15_000)
    expect(page.get_by_text(login)).to_be_visible()
    assert "code=" not in page.url


def test_our_signed_in_page_swaps_the_code_for_working_tokens(gw: Stack, page: Page):
    """The page for an OAUTH_SUCCESS_URL that is not the console: a code made by a sign-in
    (its steps as a browser makes them, tests.oidc_support), opened there."""
    login = f"page-{uuid.uuid4().hex[:8]}@example.com"
    _, headers, body = get_no_redirect(f"{gw.gateway_url}/api/v1/oauth/initiate/local")
    back = urlsplit(sign_in_at_provider(json.loads(body)["authorizationUrl"], login))
    _, headers, _ = get_no_redirect(f"{gw.gateway_url}{back.path}?{back.query}",
                                    cookies_set(headers))
    code = headers["Location"].partition("#code=")[2]
    # the same browser: it holds the cookie the callback set for its code
    oauth_url = f"{gw.gateway_url}/api/v1/oauth/"
    page.context.add_cookies([{"name": name, "value": value, "url": oauth_url}
                              for name, value in cookies_set(headers).items()])
    page.goto(f"{gw.gateway_url}/api/v1/oauth/signed-in#code={code}")
    expect(page.locator("#title")).to_have_text("Signed in", timeout=15_000)
    assert page.url == f"{gw.gateway_url}/api/v1/oauth/signed-in"  # the code is gone
    expect(page.locator("#who")).to_have_text(login)
    token = page.locator("#access").input_value()
    assert Client(gw.gateway_url, token).ok("GET", "/api/v1/auth/profile")["email"] == login
