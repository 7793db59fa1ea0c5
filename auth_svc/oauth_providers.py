"""A sign-in provider: where to send the browser, and who came back (docs/api.md section 16).

Two kinds (contracts.oauth_settings): OpenID Connect (auth_svc.oidc: any issuer, Google's
included) and GitHub's OAuth 2.0 (auth_svc.github). Both use the authorization code flow with
PKCE (S256) and `state`; OpenID Connect adds `nonce`. What they answer is an `Identity`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Protocol

import aiohttp

from contracts.errors import ApiError, BadRequest, Unauthorized, UpstreamError
from contracts.oauth_settings import OAuthProviderSettings

# a provider's answers are small; anything larger is refused rather than read
MAX_ANSWER_BYTES = 256 * 1024
TIMEOUT = aiohttp.ClientTimeout(total=10)


@dataclass(frozen=True)
class Identity:
    """Who the provider says signed in: its stable subject, and an email only as far as the
    provider vouches for it (`email_verified`)."""

    subject: str
    email: str | None
    email_verified: bool
    name: str | None


def printable(text: str) -> str:
    """`text` without control characters (a provider's name or subject, before storing)."""
    return "".join(ch for ch in text if ch.isprintable()).strip()


class ProviderRefused(BadRequest):
    """The provider answered with an OAuth error (`access_denied`, `invalid_grant`...)."""

    def __init__(self, error: str, description: str | None = None) -> None:
        text = f"Sign-in refused by the provider: {error}"
        super().__init__(f"{text} ({description})" if description else text)
        self.error = error


class IdTokenInvalid(Unauthorized):
    """The ID token failed a check (signature, issuer, audience, expiry, nonce)."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"Invalid ID token: {reason}")


class ProviderUnavailable(UpstreamError):
    """The provider could not be reached or answered something unusable (502)."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"Sign-in provider unavailable: {reason}")


class SignInProvider(Protocol):
    settings: OAuthProviderSettings

    async def authorization_url(self, *, state: str, code_challenge: str, nonce: str,
                                redirect_uri: str) -> str:
        """Where to send the browser."""
        ...

    async def identify(self, *, code: str, verifier: str, nonce: str,
                       redirect_uri: str) -> Identity:
        """Exchange `code` (with the PKCE verifier) and say who signed in."""
        ...

    @property
    def issuer(self) -> str | None:
        """The issuer an `iss` callback parameter must name (RFC 9207), None if none."""
        ...


async def read_json(response: aiohttp.ClientResponse, what: str) -> Any:
    """A provider's JSON answer, bounded; ProviderUnavailable when it is not JSON."""
    body = await response.content.read(MAX_ANSWER_BYTES + 1)
    if len(body) > MAX_ANSWER_BYTES:
        raise ProviderUnavailable(f"{what} answer too large")
    try:
        return json.loads(body)
    except ValueError:
        raise ProviderUnavailable(f"{what} did not answer JSON "
                                  f"(HTTP {response.status})") from None


def unreachable(what: str, exc: Exception) -> ApiError:
    return ProviderUnavailable(f"{what}: {type(exc).__name__}")
