"""Sign-in with providers end to end (docs/api.md section 16), against the real OpenID
Connect provider that `make infra` runs (infra/oidc, oidc-provider 9.13.3) and, for what a
real provider never sends, a forging provider of the tests in front of it
(tests/oidc_proxy.py): a person signs in at the provider's own login and consent pages
(tests/oidc_support.py drives them like a browser), comes back through the gateway, and
swaps the one-time code for tokens that work; and every way it can go wrong is a 4xx.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest

from gateway.sign_in_binding import NOT_THIS_BROWSER, cookie_name
from tests.e2e.conftest import Stack
from tests.e2e.helpers import PASSWORD, Client, call, register, wait_for_entry
from tests.oidc_proxy import ForgingProvider
from tests.oidc_support import (
    PROVIDER_URL,
    cookies_set,
    get_no_redirect,
    provider_up,
    sign_in_at_provider,
)

# The provider redirects to APP_URL's callback (any loopback port is allowed for its native
# client); the tests read that redirect and bring its query to the real gateway themselves.
APP_URL = "http://127.0.0.1:3999"
OAUTH = "/api/v1/oauth"


@pytest.fixture(scope="module")
def forging() -> Iterator[ForgingProvider]:
    if not provider_up():
        pytest.fail(f"the local OpenID provider does not answer at {PROVIDER_URL} (make infra)")
    server = ForgingProvider()
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def gw_settings(forging: ForgingProvider) -> dict[str, str]:
    client = {"CLIENT_ID": "gateway-platform", "CLIENT_SECRET": "local-dev-secret"}
    return {"APP_URL": APP_URL, "OAUTH_PROVIDERS": "local,local-proxied",
            "OAUTH_LOCAL_ISSUER": PROVIDER_URL, "OAUTH_LOCAL_DISPLAY_NAME": "Local",
            **{f"OAUTH_LOCAL_{k}": v for k, v in client.items()},
            "OAUTH_LOCAL_PROXIED_ISSUER": forging.issuer,
            "OAUTH_LOCAL_PROXIED_TRUST_EMAIL": "false",
            **{f"OAUTH_LOCAL_PROXIED_{k}": v for k, v in client.items()}}


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def new_login(tag: str = "oidc") -> str:
    return f"{tag}-{uuid.uuid4().hex[:10]}@example.com"


# The cookies the gateway set on initiate, as a browser keeps them (one per started
# sign-in); every callback below sends them all, as that browser would.
JAR: dict[str, str] = {}


def initiate(gw: Stack, provider: str = "local") -> dict[str, Any]:
    status, headers, body = get_no_redirect(f"{gw.gateway_url}{OAUTH}/initiate/{provider}")
    assert status == 200, body
    JAR.update(cookies_set(headers))
    started: dict[str, Any] = json.loads(body)
    return started


def at_provider(gw: Stack, login: str, provider: str = "local", consent: bool = True
                ) -> dict[str, str]:
    """Initiate, then sign in at the provider as `login`: the callback's query."""
    started = initiate(gw, provider)
    back = sign_in_at_provider(started["authorizationUrl"], login, consent=consent)
    parts = urlsplit(back)
    assert parts.path == f"{OAUTH}/{provider}/callback", back
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    assert query["state"] == started["state"]
    if provider != "local":
        query.pop("iss", None)  # the real provider's issuer, not the forging one's
    return query


def callback(gw: Stack, query: dict[str, str], provider: str = "local",
             cookies: dict[str, str] | None = None) -> tuple[int, dict[str, str], str]:
    return get_no_redirect(f"{gw.gateway_url}{OAUTH}/{provider}/callback?{urlencode(query)}",
                           JAR if cookies is None else cookies)


def error_of(got: tuple[int, dict[str, str], str]) -> tuple[int, str]:
    status, _, body = got
    return status, json.loads(body)["message"]


def exchange(gw: Stack, code: str, cookies: dict[str, str] | None = None) -> Any:
    jar = JAR if cookies is None else cookies
    return call(gw, "POST", f"{OAUTH}/exchange", {"code": code},
                headers={"Cookie": "; ".join(f"{k}={v}" for k, v in jar.items())})


def signed_in(gw: Stack, query: dict[str, str], provider: str = "local") -> dict[str, Any]:
    """The callback's 302 to the success page, and the session its code is swapped for."""
    status, headers, body = callback(gw, query, provider)
    assert status == 302, body
    location = headers["Location"]
    page, _, fragment = location.partition("#code=")
    assert page == f"{APP_URL}/console/" and fragment, location  # the default
    assert headers["Cache-Control"] == "no-store"
    JAR.update(cookies_set(headers))
    got, session, _ = exchange(gw, fragment)
    assert got == 200, session
    session["code"] = fragment
    return session


def test_the_providers_are_listed_publicly(gw: Stack):
    status, body, _ = call(gw, "GET", f"{OAUTH}/providers")
    assert status == 200
    assert body == [{"name": "local", "displayName": "Local"},
                    {"name": "local-proxied", "displayName": "Local-proxied"}]


def test_initiate_starts_a_pkce_flow_and_redirects_on_request(gw: Stack):
    started = initiate(gw)
    url = urlsplit(started["authorizationUrl"])
    query = {k: v[0] for k, v in parse_qs(url.query).items()}
    assert f"{url.scheme}://{url.netloc}" == PROVIDER_URL
    assert query["response_type"] == "code" and query["client_id"] == "gateway-platform"
    assert query["code_challenge_method"] == "S256" and len(query["code_challenge"]) == 43
    assert query["state"] == started["state"] and len(query["nonce"]) >= 43
    assert query["redirect_uri"] == f"{APP_URL}{OAUTH}/local/callback"
    assert set(query["scope"].split()) == {"openid", "email", "profile"}
    status, headers, _ = get_no_redirect(f"{gw.gateway_url}{OAUTH}/initiate/local?redirect=1")
    assert status == 302 and headers["Location"].startswith(f"{PROVIDER_URL}/auth?")
    redirected_state = parse_qs(urlsplit(headers["Location"]).query)["state"][0]
    assert cookies_set(headers) == {cookie_name(redirected_state): sha256_hex(redirected_state)}
    assert "HttpOnly" in headers["Set-Cookie"] and "SameSite=Lax" in headers["Set-Cookie"]
    assert headers["Cache-Control"] == "no-store"
    assert call(gw, "GET", f"{OAUTH}/initiate/nowhere")[0] == 404
    assert call(gw, "GET", f"{OAUTH}/initiate/local?redirect=maybe")[0] == 400


def test_a_new_person_signs_in_and_the_tokens_work(gw: Stack):
    login = new_login()
    session = signed_in(gw, at_provider(gw, login))
    user = session["user"]
    assert user["email"] == login and user["role"] == "DEVELOPER" and user["active"] is True
    profile = Client(gw.gateway_url, session["accessToken"]).ok("GET", "/api/v1/auth/profile")
    assert profile["id"] == user["id"] and profile["email"] == login
    got, refreshed, _ = call(gw, "POST", "/api/v1/auth/refresh",
                             {"refreshToken": session["refreshToken"]})
    assert got == 200 and refreshed["accessToken"]
    # the code is good once
    got, body, _ = exchange(gw, session["code"])
    assert (got, body["message"]) == (400, "Invalid, used or expired code")
    # no password: a password login is the usual 401
    got, _, _ = call(gw, "POST", "/api/v1/auth/login", {"email": login, "password": PASSWORD})
    assert got == 401
    # signing in again finds the same account
    again = signed_in(gw, at_provider(gw, login))
    assert again["user"]["id"] == user["id"]


def test_a_state_is_good_once_and_for_its_own_provider(gw: Stack):
    query = at_provider(gw, new_login())
    tampered = {**query, "state": query["state"][:-2] + "xx"}
    assert error_of(callback(gw, tampered)) == (400, NOT_THIS_BROWSER)  # no cookie for it
    assert error_of(callback(gw, {"code": query["code"]})) == (
        400, "Invalid, used or expired state")
    # the state of a `local` sign-in is not one of `local-proxied`'s (and is used up by it)
    assert error_of(callback(gw, query, "local-proxied"))[0] == 400
    assert error_of(callback(gw, query)) == (400, "Invalid, used or expired state")
    fresh = at_provider(gw, new_login())
    signed_in(gw, fresh)
    assert error_of(callback(gw, fresh)) == (400, "Invalid, used or expired state")  # replay


def test_a_sign_in_finishes_only_in_the_browser_that_started_it(gw: Stack):
    """Login CSRF: someone signs in at the provider as themselves and sends the callback
    URL to another person; that person's browser has no cookie of this sign-in."""
    theirs = at_provider(gw, new_login("attacker"))
    assert error_of(callback(gw, theirs, cookies={})) == (400, NOT_THIS_BROWSER)
    other_browser = {name: value for name, value in JAR.items()
                     if name != cookie_name(theirs["state"])}
    assert error_of(callback(gw, theirs, cookies=other_browser)) == (400, NOT_THIS_BROWSER)
    signed_in(gw, theirs)  # the browser that started it still can


def test_a_code_is_swapped_only_in_the_browser_it_came_back_to(gw: Stack):
    """Login CSRF at the last step: someone's own one-time code (`/console/#code=…`) sent to
    another person, whose browser has no cookie of it."""
    status, headers, _ = callback(gw, at_provider(gw, new_login("attacker")))
    assert status == 302
    code = headers["Location"].partition("#code=")[2]
    got, body, _ = exchange(gw, code, cookies={})
    assert (got, body["message"]) == (400, NOT_THIS_BROWSER)
    got, session, _ = exchange(gw, code, cookies_set(headers))  # where it came back: fine
    assert got == 200 and session["accessToken"]


def test_a_code_cannot_be_carried_into_another_sign_in(gw: Stack):
    """A code was issued for its own sign-in's PKCE challenge: with another sign-in's state
    (and so its verifier) the provider refuses it."""
    first = at_provider(gw, new_login())
    signed_in(gw, first)
    replay = {**first, "state": initiate(gw)["state"]}
    status, message = error_of(callback(gw, replay))
    assert status == 400 and message.startswith("Sign-in refused by the provider: invalid_grant")


def test_a_callback_naming_another_issuer_is_refused(gw: Stack):
    query = at_provider(gw, new_login())
    assert query["iss"] == PROVIDER_URL
    assert error_of(callback(gw, {**query, "iss": "https://evil.example.com"})) == (
        400, "The callback names another issuer")


def test_unknown_providers_are_not_found_and_odd_errors_are_not_echoed(gw: Stack):
    for name in ("nowhere", "Local", "x" * 60, "local_proxied"):
        got, body, _ = call(gw, "GET", f"{OAUTH}/initiate/{name}")
        assert (got, body["message"]) == (404, "Unknown OAuth provider"), name
    state = initiate(gw)["state"]
    assert error_of(callback(gw, {"state": state, "error": "<script>alert(1)</script>"})) == (
        400, "Sign-in refused by the provider: invalid_error")


def test_a_person_who_cancels_at_the_provider_gets_its_error(gw: Stack):
    query = at_provider(gw, new_login(), consent=False)
    assert query["error"] == "access_denied"
    assert error_of(callback(gw, query)) == (
        400, "Sign-in refused by the provider: access_denied")


def test_an_unverified_address_never_makes_or_takes_an_account(gw: Stack):
    status, message = error_of(callback(gw, at_provider(gw, new_login("unverified"))))
    assert (status, message) == (
        400, "The provider did not verify an email address for this account")
    taken = register(gw, "unverified")
    status, message = error_of(callback(gw, at_provider(gw, taken.email)))
    assert status == 409 and "did not verify" in message
    # the account is untouched: its password still works
    assert call(gw, "POST", "/api/v1/auth/login",
                {"email": taken.email, "password": PASSWORD})[0] == 200


def test_a_trusted_provider_links_the_account_of_its_verified_address(gw: Stack):
    squatter = register(gw, "linked")  # registered, its address never verified
    got, before, _ = call(gw, "POST", "/api/v1/auth/login",
                          {"email": squatter.email, "password": PASSWORD})
    assert got == 200
    session = signed_in(gw, at_provider(gw, squatter.email))
    assert session["user"]["id"] == squatter.user_id
    # whoever registered the address without owning it lost the password and sessions
    assert call(gw, "POST", "/api/v1/auth/login",
                {"email": squatter.email, "password": PASSWORD})[0] == 401
    assert call(gw, "POST", "/api/v1/auth/refresh",
                {"refreshToken": before["refreshToken"]})[0] in (401, 403)


def test_an_untrusted_provider_signs_in_new_people_but_links_no_account(gw: Stack,
                                                                        forging):
    forging.mode = "honest"
    login = new_login("proxied")
    session = signed_in(gw, at_provider(gw, login, "local-proxied"), "local-proxied")
    assert session["user"]["email"] == login
    taken = register(gw, "taken")
    status, message = error_of(callback(gw, at_provider(gw, taken.email, "local-proxied"),
                                        "local-proxied"))
    assert status == 409 and "may not sign in" in message


@pytest.mark.parametrize(("mode", "reason"), [
    ("forged", "signature does not verify"),
    ("unknown-kid", "signed by an unknown key"),
    ("audience", "audience is not this client"),
    ("expired", "expired"),
    ("nonce", "nonce does not match"),
    ("issuer", "issuer does not match"),
    ("hs256", "algorithm 'HS256' not accepted"),
    ("none", "algorithm 'none' not accepted"),
])
def test_an_id_token_that_fails_a_check_is_refused(gw: Stack, forging, mode, reason):
    forging.mode = mode
    try:
        query = at_provider(gw, new_login("forged"), "local-proxied")
        assert error_of(callback(gw, query, "local-proxied")) == (
            401, f"Invalid ID token: {reason}")
    finally:
        forging.mode = "honest"


def test_a_deactivated_account_is_refused(gw: Stack):
    login = new_login("inactive")
    signed_in(gw, at_provider(gw, login))
    gw.cli("set-active", login, "false")
    assert error_of(callback(gw, at_provider(gw, login))) == (403, "Account is deactivated")


def test_the_signed_in_page_is_served_without_referrer_or_cache(gw: Stack):
    status, headers, body = get_no_redirect(f"{gw.gateway_url}{OAUTH}/signed-in")
    assert status == 200 and "signed-in.js" in body
    assert headers["Referrer-Policy"] == "no-referrer"
    assert headers["Cache-Control"] == "no-store"


def test_the_logs_never_hold_a_code_or_a_state(gw: Stack, admin: Client):
    query = at_provider(gw, new_login("logged"))
    status, headers, _ = callback(gw, query)
    assert status == 302
    request_id = {k.lower(): v for k, v in headers.items()}["x-request-id"]
    entry = wait_for_entry(gw, admin.token, request_id)
    assert entry is not None, "the callback was not logged"
    text = json.dumps(entry)
    assert query["code"] not in text and query["state"] not in text
    assert headers["Location"].partition("#code=")[2] not in text
    assert "code=REDACTED" in entry["path"] and "state=REDACTED" in entry["path"]


def test_proving_an_address_ends_what_an_untrusted_provider_made(gw: Stack, forging):
    """Someone claims a person's address at a provider not trusted with addresses: that
    makes an account, unverified. When the owner signs in with a trusted provider, the
    planted identity and its sessions are gone, and it cannot sign in again."""
    forging.mode = "honest"
    victim = new_login("planted")
    planted = signed_in(gw, at_provider(gw, victim, "local-proxied"), "local-proxied")
    owner = signed_in(gw, at_provider(gw, victim))
    assert owner["user"]["id"] == planted["user"]["id"]
    assert call(gw, "POST", "/api/v1/auth/refresh",
                {"refreshToken": planted["refreshToken"]})[0] == 401
    status, message = error_of(callback(gw, at_provider(gw, victim, "local-proxied"),
                                        "local-proxied"))
    assert status == 409 and "may not sign in" in message
