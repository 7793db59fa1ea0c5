"""How the gateway serves the developer console (docs/api.md section 17): its files under
`/console/`, exempt from logs and limits and out of reach of route configs, and the mailed
links opened in a browser sent to its pages with the token in the fragment."""

from __future__ import annotations

import uuid

import pytest

from tests.e2e.conftest import Stack
from tests.e2e.helpers import Client, call, wait_for_entry
from tests.oidc_support import get_no_redirect

BROWSER = {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}


def test_the_console_is_served_with_a_strict_policy(gw: Stack):
    status, headers, _ = get_no_redirect(f"{gw.gateway_url}/console")
    assert status == 301 and headers["Location"].endswith("/console/")
    status, headers, body = get_no_redirect(f"{gw.gateway_url}/console/")
    assert status == 200 and "/console/console.js" in body
    policy = headers["Content-Security-Policy"]
    for directive in ("default-src 'self'", "script-src 'self'", "style-src 'self'",
                      "connect-src 'self'", "frame-ancestors 'none'"):
        assert directive in policy, policy
    assert "unsafe" not in policy
    assert headers["Referrer-Policy"] == "no-referrer"
    status, headers, _ = get_no_redirect(f"{gw.gateway_url}/console/console.js")
    assert status == 200
    assert headers["Cache-Control"] == "no-cache"  # one release's page and script together
    # the page is served at /console/ only, with its policy (no framing it by another name)
    status, headers, _ = get_no_redirect(f"{gw.gateway_url}/console/index.html")
    assert status == 301 and headers["Location"].endswith("/console/")


def test_the_consoles_files_are_neither_counted_nor_logged(gw: Stack, alice: Client):
    """A browser loads several files per view: none is rate limited or logged, even for a
    caller who is known (a Bearer token)."""
    probe = uuid.uuid4().hex
    bearer = {"Authorization": f"Bearer {alice.token}"}
    for path in ("/console/", "/console/console.js", "/console/console.css"):
        status, headers, _ = get_no_redirect(f"{gw.gateway_url}{path}?probe={probe}",
                                             headers=bearer)
        assert status == 200, path
        assert not [name for name in headers if name.lower().startswith("x-ratelimit")], path
    # a counted request afterwards: once its entry is in, the files' would be too
    status, _, headers = alice.call("GET", "/api/v1/auth/profile")
    assert status == 200 and "X-RateLimit-Limit" in headers
    assert wait_for_entry(gw, alice.token or "", headers["X-Request-Id"]) is not None
    entries = alice.ok("GET", "/api/v1/logs", query={"limit": 100})["entries"]
    assert not [e["path"] for e in entries if probe in e["path"]]


def test_no_route_config_can_take_the_console(alice: Client, upstream):
    project = alice.ok("POST", "/api/v1/projects", {"name": "console squatter"}, status=201)
    got, body, _ = alice.call("POST", f"/api/v1/projects/{project['id']}/routes", {
        "path": "/console/app", "method": "GET", "authRequired": False,
        "upstreamUrl": f"http://127.0.0.1:{upstream.port}/base"})
    assert got == 400 and body["details"][0]["field"] == "path", body


@pytest.mark.parametrize("page", ["verify-email", "reset-password"])
def test_a_mailed_link_opened_in_a_browser_goes_to_the_console(gw: Stack, page: str):
    status, headers, _ = get_no_redirect(f"{gw.gateway_url}/api/v1/auth/{page}?token=abc123",
                                         headers=BROWSER)
    assert status == 302
    assert headers["Location"] == f"/console/#/{page}?token=abc123"
    # whatever the token holds stays inside the fragment's value
    odd = "a%20b%26c%23d%0D%0Ae"  # a b&c#d CR LF e
    status, headers, _ = get_no_redirect(f"{gw.gateway_url}/api/v1/auth/{page}?token={odd}",
                                         headers=BROWSER)
    assert status == 302
    assert headers["Location"] == f"/console/#/{page}?token=a%20b%26c%23d%0D%0Ae"
    assert headers["Cache-Control"] == "no-store"


def test_other_clients_get_the_apis_answers(gw: Stack):
    got, body, _ = call(gw, "GET", "/api/v1/auth/verify-email?token=abc123")
    assert (got, body["message"]) == (400, "Invalid verification token")
    got, body, _ = call(gw, "GET", "/api/v1/auth/reset-password?token=abc123")
    assert (got, body["message"]) == (404, "Route not found")
