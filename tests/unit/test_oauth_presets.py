"""The `google` and `github` presets, which cannot be reached from our machines: their
settings, the requests we build and the answers we read, against recorded answers (Google's
discovery document in tests/unit/fixtures; GitHub's answers as its documentation shows
them); and PKCE against RFC 7636's own example."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from auth_svc import github, oidc
from auth_svc.oauth_providers import IdTokenInvalid, ProviderRefused, ProviderUnavailable
from auth_svc.oauth_state import code_challenge
from contracts.settings import SettingsError, load_settings
from gateway.sign_in_binding import same_origin

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture
def providers(monkeypatch):
    monkeypatch.setenv("APP_ENV", "test")
    monkeypatch.setenv("OAUTH_PROVIDERS", "google,github")
    for name in ("GOOGLE", "GITHUB"):
        monkeypatch.setenv(f"OAUTH_{name}_CLIENT_ID", f"{name.lower()}-client")
        monkeypatch.setenv(f"OAUTH_{name}_CLIENT_SECRET", f"{name.lower()}-secret")
    return {p.name: p for p in load_settings("auth").oauth_providers}


def query_of(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


def test_pkce_s256_is_rfc_7636s_example():
    assert code_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk") == \
        "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"


def test_the_presets_fill_in_what_a_provider_needs(providers):
    google, hub = providers["google"], providers["github"]
    assert (google.kind, google.issuer, google.display_name, google.trust_email) == (
        "oidc", "https://accounts.google.com", "Google", True)
    assert google.scopes == ("openid", "email", "profile")
    assert (hub.kind, hub.issuer, hub.display_name, hub.trust_email) == (
        "github", "", "GitHub", False)
    assert hub.scopes == ("read:user", "user:email")
    assert "secret" not in repr(google)


@pytest.mark.parametrize(("env", "complaint"), [
    ({"OAUTH_PROVIDERS": "google"}, "OAUTH_GOOGLE_CLIENT_ID is required"),
    ({"OAUTH_PROVIDERS": "corp", "OAUTH_CORP_CLIENT_ID": "x", "OAUTH_CORP_CLIENT_SECRET": "y"},
     "OAUTH_CORP_ISSUER is required"),
    ({"OAUTH_PROVIDERS": "initiate"}, "not a provider name"),
    ({"OAUTH_PROVIDERS": "Bad_Name"}, "not a provider name"),
    ({"OAUTH_PROVIDERS": "corp", "OAUTH_CORP_CLIENT_ID": "x", "OAUTH_CORP_CLIENT_SECRET": "y",
      "OAUTH_CORP_ISSUER": "https://id.example.com", "OAUTH_CORP_SCOPES": "email"},
     "must include openid"),
    ({"OAUTH_SUCCESS_URL": "https://console.example.com/#x"}, "OAUTH_SUCCESS_URL"),
])
def test_an_incomplete_provider_stops_the_auth_service(monkeypatch, env, complaint):
    monkeypatch.setenv("APP_ENV", "test")
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError, match=complaint):
        load_settings("auth")
    if complaint == "OAUTH_SUCCESS_URL":  # the gateway reads it too (whether codes are bound)
        with pytest.raises(SettingsError, match=complaint):
            load_settings("gateway")
    else:
        load_settings("gateway")  # the providers are read by the auth service only


def test_the_local_provider_is_never_trusted_with_addresses_in_production(monkeypatch):
    from environs import Env

    from contracts.oauth_settings import read_oauth_providers

    monkeypatch.setenv("OAUTH_PROVIDERS", "local")
    monkeypatch.setenv("OAUTH_LOCAL_ISSUER", "http://127.0.0.1:9400")
    monkeypatch.setenv("OAUTH_LOCAL_CLIENT_ID", "x")
    monkeypatch.setenv("OAUTH_LOCAL_CLIENT_SECRET", "y")
    assert read_oauth_providers(Env(), production=False)[0].trust_email is True
    assert read_oauth_providers(Env(), production=True)[0].trust_email is False


def test_production_wants_an_https_issuer_but_for_loopback(monkeypatch):
    monkeypatch.setenv("OAUTH_PROVIDERS", "corp")
    monkeypatch.setenv("OAUTH_CORP_CLIENT_ID", "x")
    monkeypatch.setenv("OAUTH_CORP_CLIENT_SECRET", "y")
    from environs import Env

    from contracts.oauth_settings import OAuthSettingsError, read_oauth_providers

    monkeypatch.setenv("OAUTH_CORP_ISSUER", "http://id.example.com")
    with pytest.raises(OAuthSettingsError, match="https in production"):
        read_oauth_providers(Env(), production=True)
    monkeypatch.setenv("OAUTH_CORP_ISSUER", "http://127.0.0.1:9400/")
    [corp] = read_oauth_providers(Env(), production=True)
    assert corp.issuer == "http://127.0.0.1:9400/"  # as given: tokens name it exactly


def test_the_success_url_defaults_to_the_console(monkeypatch):
    monkeypatch.setenv("APP_ENV", "test")
    monkeypatch.setenv("APP_URL", "https://gw.example.com")
    assert load_settings("auth").oauth_success_url == \
        "https://gw.example.com/console/"


# --- Google (OpenID Connect) ---------------------------------------------------------------

def test_googles_authorization_request(providers):
    discovery = json.loads((FIXTURES / "google_discovery.json").read_text())
    url = oidc.authorization_url(discovery, providers["google"], state="s", nonce="n",
                                 code_challenge="c", redirect_uri="https://gw/cb")
    assert url.startswith("https://accounts.google.com/o/oauth2/v2/auth?")
    assert query_of(url) == {
        "response_type": "code", "client_id": "google-client", "redirect_uri": "https://gw/cb",
        "scope": "openid email profile", "state": "s", "nonce": "n", "code_challenge": "c",
        "code_challenge_method": "S256"}


def test_googles_id_token_claims(providers):
    claims = {"iss": "https://accounts.google.com", "azp": "google-client",
              "aud": "google-client", "sub": "110169484474386276334",
              "email": "Someone@Gmail.com", "email_verified": True, "name": "Some One",
              "nonce": "n", "iat": 1, "exp": 2}
    oidc.check_claims(claims, providers["google"], "n")
    identity = oidc.identity_of(claims)
    assert (identity.subject, identity.email, identity.email_verified, identity.name) == (
        "110169484474386276334", "someone@gmail.com", True, "Some One")
    assert oidc.identity_of({**claims, "email_verified": "true"}).email_verified is True
    assert oidc.identity_of({**claims, "email_verified": False}).email_verified is False
    # an address elsewhere is Google's to vouch for only within a Workspace domain (`hd`)
    elsewhere = {**claims, "email": "someone@corp.example"}
    assert oidc.identity_of(elsewhere, issuer=oidc.GOOGLE_ISSUER).email_verified is False
    assert oidc.identity_of({**elsewhere, "hd": "corp.example"},
                            issuer=oidc.GOOGLE_ISSUER).email_verified is True
    assert oidc.identity_of(claims, issuer=oidc.GOOGLE_ISSUER).email_verified is True
    # what is not an address is none
    for odd in (["a@b.co"], "not an address", "x" * 250 + "@example.com"):
        assert oidc.identity_of({**claims, "email": odd}).email is None
    with pytest.raises(IdTokenInvalid, match="subject"):
        oidc.check_claims({**claims, "sub": "a\x00b"}, providers["google"], "n")
    with pytest.raises(IdTokenInvalid, match="nonce"):
        oidc.check_claims(claims, providers["google"], "other")
    with pytest.raises(IdTokenInvalid, match="azp"):
        oidc.check_claims({**claims, "aud": ["google-client", "x"], "azp": "x"},
                          providers["google"], "n")


# --- GitHub (OAuth 2.0) --------------------------------------------------------------------

def test_githubs_authorization_and_token_requests(providers):
    hub = providers["github"]
    url = github.authorization_url(hub, state="s", code_challenge="c",
                                   redirect_uri="https://gw/cb")
    assert url.startswith("https://github.com/login/oauth/authorize?")
    assert query_of(url) == {"client_id": "github-client", "redirect_uri": "https://gw/cb",
                             "scope": "read:user user:email", "state": "s",
                             "allow_signup": "true", "code_challenge": "c",
                             "code_challenge_method": "S256"}
    assert github.token_request(hub, code="k", verifier="v", redirect_uri="https://gw/cb") == {
        "client_id": "github-client", "client_secret": "github-secret", "code": "k",
        "redirect_uri": "https://gw/cb", "code_verifier": "v"}


def test_githubs_token_answers():
    assert github.access_token_of({"access_token": "gho_16C7e42F292c6912E7710c838347Ae178B4a",
                                   "scope": "read:user,user:email", "token_type": "bearer"}) \
        == "gho_16C7e42F292c6912E7710c838347Ae178B4a"
    with pytest.raises(ProviderRefused, match="bad_verification_code"):
        github.access_token_of({"error": "bad_verification_code",
                                "error_description": "The code passed is incorrect or expired.",
                                "error_uri": "https://docs.github.com/apps/troubleshooting"})
    with pytest.raises(ProviderUnavailable):
        github.access_token_of({"token_type": "bearer"})


USER = {"login": "octocat", "id": 583231, "node_id": "MDQ6VXNlcjU4MzIzMQ==",
        "type": "User", "name": "The Octocat", "email": None}
EMAILS = [{"email": "octocat@github.com", "verified": True, "primary": True,
           "visibility": "public"},
          {"email": "other@example.com", "verified": True, "primary": False,
           "visibility": None}]


def test_githubs_identity_is_the_primary_verified_address():
    identity = github.identity_of(USER, EMAILS)
    assert (identity.subject, identity.email, identity.email_verified, identity.name) == (
        "583231", "octocat@github.com", True, "The Octocat")
    unverified = [{**EMAILS[0], "verified": False}, EMAILS[1]]
    assert github.identity_of(USER, unverified).email_verified is False
    assert github.identity_of({**USER, "name": None}, []).name == "octocat"
    assert github.identity_of(USER, []).email is None
    with pytest.raises(ProviderUnavailable):
        github.identity_of({"login": "x"}, EMAILS)


def test_codes_are_bound_to_the_browser_only_on_the_gateways_own_origin():
    assert same_origin("http://localhost:3000/console/", "http://localhost:3000")
    assert same_origin("https://GW.example.com/x", "https://gw.example.com:443/")
    assert not same_origin("https://app.example.com/done", "https://gw.example.com")
    assert not same_origin("http://gw.example.com/", "https://gw.example.com")
    assert not same_origin("http://localhost:3001/", "http://localhost:3000")
