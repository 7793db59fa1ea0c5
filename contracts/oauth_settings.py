"""Sign-in providers from the environment (docs/api.md section 16; README "Configuration").

    OAUTH_PROVIDERS=google,github,local,<name>,...
    OAUTH_<NAME>_CLIENT_ID, OAUTH_<NAME>_CLIENT_SECRET     required for every listed provider
    OAUTH_<NAME>_ISSUER         OIDC issuer (discovery at <issuer>/.well-known/openid-
                                configuration); preset for `google`, unused by `github`
    OAUTH_<NAME>_SCOPES         space-separated; preset per kind
    OAUTH_<NAME>_DISPLAY_NAME   what a sign-in button says
    OAUTH_<NAME>_TRUST_EMAIL    whether a verified email from this provider may link an
                                existing account of that address (default: true for `google`
                                and `local`, false otherwise: any issuer can claim any address)
    OAUTH_SUCCESS_URL           where a signed-in browser goes, a one-time `code` in the
                                fragment (default: the console, <APP_URL>/console/; our small
                                page <APP_URL>/api/v1/oauth/signed-in does the same alone)

`google` is the generic OpenID Connect provider with Google's issuer; `github` is GitHub's
OAuth 2.0 (no ID token: the account's primary verified email from its API). Any other name is
a generic OpenID Connect provider and needs its ISSUER.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

ProviderKind = Literal["oidc", "github"]

NAME = re.compile(r"^[a-z][a-z0-9-]{0,39}$")
# path segments of /api/v1/oauth/... that are not a provider
NOT_A_NAME = frozenset({"providers", "initiate", "exchange", "signed-in"})
OIDC_SCOPES = ("openid", "email", "profile")


@dataclass(frozen=True)
class Preset:
    kind: ProviderKind
    display_name: str
    issuer: str = ""
    scopes: tuple[str, ...] = OIDC_SCOPES
    trust_email: bool = False


PRESETS = {
    "google": Preset("oidc", "Google", issuer="https://accounts.google.com", trust_email=True),
    "github": Preset("github", "GitHub", scopes=("read:user", "user:email")),
    # the development provider `make run` starts (infra/oidc), which verifies what it asserts
    "local": Preset("oidc", "Local OpenID provider", trust_email=True),
}


@dataclass(frozen=True)
class OAuthProviderSettings:
    name: str
    kind: ProviderKind
    display_name: str
    client_id: str
    client_secret: str
    issuer: str  # "" for github
    scopes: tuple[str, ...]
    trust_email: bool

    def __repr__(self) -> str:  # never the secret in a log line
        return f"OAuthProviderSettings({self.name}, {self.kind}, issuer={self.issuer!r})"


class OAuthSettingsError(ValueError):
    pass


def read_oauth_providers(env: Any, *, production: bool) -> tuple[OAuthProviderSettings, ...]:
    """The providers of OAUTH_PROVIDERS, each complete; OAuthSettingsError lists what is
    wrong. `env` is an environs Env (or anything with its `str` and `bool`)."""
    names = [name.strip().lower() for name in (env.str("OAUTH_PROVIDERS", "") or "").split(",")
             if name.strip()]
    problems: list[str] = []
    providers: list[OAuthProviderSettings] = []
    for name in names:
        if not NAME.match(name) or name in NOT_A_NAME:
            problems.append(f"OAUTH_PROVIDERS: {name!r} is not a provider name (lowercase "
                            "letters, digits and '-', not providers/initiate/exchange)")
            continue
        if name in (p.name for p in providers):
            problems.append(f"OAUTH_PROVIDERS: {name!r} is listed twice")
            continue
        prefix = f"OAUTH_{name.upper().replace('-', '_')}_"
        preset = PRESETS.get(name, Preset("oidc", name.capitalize()))
        client_id = env.str(prefix + "CLIENT_ID", "") or ""
        client_secret = env.str(prefix + "CLIENT_SECRET", "") or ""
        # kept as given: discovery and ID tokens must name it exactly (a trailing / included)
        issuer = env.str(prefix + "ISSUER", "") or preset.issuer
        scopes = tuple((env.str(prefix + "SCOPES", "") or "").split()) or preset.scopes
        for variable, value in (("CLIENT_ID", client_id), ("CLIENT_SECRET", client_secret)):
            if not value:
                problems.append(f"{prefix}{variable} is required (provider {name!r})")
        if preset.kind == "oidc":
            problems += _issuer_problems(prefix, issuer, production)
            if "openid" not in scopes:
                problems.append(f"{prefix}SCOPES must include openid")
        providers.append(OAuthProviderSettings(
            name=name, kind=preset.kind,
            display_name=env.str(prefix + "DISPLAY_NAME", "") or preset.display_name,
            client_id=client_id, client_secret=client_secret,
            issuer=issuer if preset.kind == "oidc" else "", scopes=scopes,
            # the development provider lets anyone be anyone: never trusted in production
            trust_email=env.bool(prefix + "TRUST_EMAIL",
                                 preset.trust_email and not (production and name == "local"))))
    if problems:
        raise OAuthSettingsError("; ".join(problems))
    return tuple(providers)


def _issuer_problems(prefix: str, issuer: str, production: bool) -> list[str]:
    if not issuer:
        return [f"{prefix}ISSUER is required (an OpenID Connect issuer URL)"]
    parts = urlsplit(issuer)
    if parts.scheme not in ("https", "http") or not parts.hostname or parts.query \
            or parts.fragment:
        return [f"{prefix}ISSUER must be an http(s) URL without query or fragment"]
    loopback = parts.hostname in ("127.0.0.1", "localhost", "::1")
    if parts.scheme == "http" and production and not loopback:
        return [f"{prefix}ISSUER must be https in production"]
    return []
