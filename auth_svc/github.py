"""GitHub's OAuth 2.0 (docs.github.com, "Authorizing OAuth apps"): no ID token, so who signed
in is the `/user` answer, and the email is the account's primary one only if GitHub marks it
verified (`/user/emails`, which the `user:email` scope opens). The subject is GitHub's
numeric user id (a login can be renamed). PKCE (S256) and `state` as for every provider.

The request building and answer parsing are plain functions, tested against recorded
answers (tests/unit/test_oauth_presets.py); GitHub itself is not reachable from our machines.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

import aiohttp

from auth_svc.oauth_providers import (
    TIMEOUT,
    Identity,
    ProviderRefused,
    ProviderUnavailable,
    printable,
    read_json,
    unreachable,
)
from contracts.oauth_settings import OAuthProviderSettings
from contracts.validation import normal_email

AUTHORIZE_URL = "https://github.com/login/oauth/authorize"
TOKEN_URL = "https://github.com/login/oauth/access_token"
API_URL = "https://api.github.com"
API_HEADERS = {"Accept": "application/vnd.github+json", "X-GitHub-Api-Version": "2022-11-28",
               "User-Agent": "gateway-platform"}


def authorization_url(settings: OAuthProviderSettings, *, state: str, code_challenge: str,
                      redirect_uri: str) -> str:
    return AUTHORIZE_URL + "?" + urlencode({
        "client_id": settings.client_id, "redirect_uri": redirect_uri,
        "scope": " ".join(settings.scopes), "state": state, "allow_signup": "true",
        "code_challenge": code_challenge, "code_challenge_method": "S256"})


def token_request(settings: OAuthProviderSettings, *, code: str, verifier: str,
                  redirect_uri: str) -> dict[str, str]:
    """The form posted to TOKEN_URL (with `Accept: application/json`)."""
    return {"client_id": settings.client_id, "client_secret": settings.client_secret,
            "code": code, "redirect_uri": redirect_uri, "code_verifier": verifier}


def access_token_of(answer: Any) -> str:
    """The token endpoint's JSON: GitHub answers 200 with `error` when it refuses."""
    if not isinstance(answer, dict):
        raise ProviderUnavailable("the token endpoint answered no object")
    if isinstance(answer.get("error"), str):
        raise ProviderRefused(answer["error"][:100])
    token = answer.get("access_token")
    if not isinstance(token, str) or not token:
        raise ProviderUnavailable("the token endpoint sent no access token")
    return token


def identity_of(user: Any, emails: Any) -> Identity:
    """`/user` and `/user/emails` as one identity: the primary verified email, or none."""
    if not isinstance(user, dict) or not isinstance(user.get("id"), int):
        raise ProviderUnavailable("/user answered no account id")
    entries = emails if isinstance(emails, list) else []
    primary = next((entry for entry in entries if isinstance(entry, dict)
                    and entry.get("primary") is True and isinstance(entry.get("email"), str)),
                   None)
    name = user.get("name") or user.get("login")
    email = normal_email(primary["email"]) if primary else None
    return Identity(subject=str(user["id"]), email=email,
                    email_verified=bool(email and primary and primary.get("verified") is True),
                    name=printable(name)[:100] if isinstance(name, str) else None)


class GitHubProvider:
    def __init__(self, settings: OAuthProviderSettings, http: aiohttp.ClientSession) -> None:
        self.settings = settings
        self._http = http

    @property
    def issuer(self) -> str | None:
        return None

    async def authorization_url(self, *, state: str, code_challenge: str, nonce: str,
                                redirect_uri: str) -> str:
        return authorization_url(self.settings, state=state, code_challenge=code_challenge,
                                 redirect_uri=redirect_uri)

    async def identify(self, *, code: str, verifier: str, nonce: str,
                       redirect_uri: str) -> Identity:
        try:
            async with self._http.post(
                    TOKEN_URL, data=token_request(self.settings, code=code, verifier=verifier,
                                                  redirect_uri=redirect_uri),
                    headers={"Accept": "application/json"}, timeout=TIMEOUT,
                    allow_redirects=False) as answer:
                token = access_token_of(await read_json(answer, "token endpoint"))
            headers = {**API_HEADERS, "Authorization": f"Bearer {token}"}
            async with self._http.get(f"{API_URL}/user", headers=headers, timeout=TIMEOUT,
                                      allow_redirects=False) as answer:
                user = await read_json(answer, "/user")
            async with self._http.get(f"{API_URL}/user/emails", headers=headers,
                                      timeout=TIMEOUT, allow_redirects=False) as answer:
                emails = await read_json(answer, "/user/emails")
        except aiohttp.ClientError as exc:
            raise unreachable("GitHub", exc) from None
        return identity_of(user, emails)
