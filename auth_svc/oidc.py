"""An OpenID Connect provider (OpenID Connect Core 1.0, Discovery 1.0): any issuer, Google's
and the local development provider (infra/oidc) included.

- Discovery: `<issuer>/.well-known/openid-configuration`, cached for an hour; its `issuer`
  must be the configured one exactly (Discovery section 4.3).
- The ID token is checked as Core section 3.1.3.7 says: signed with an asymmetric algorithm
  the provider lists (never `none` or an HMAC), by a key of its JWKS (cached; fetched again
  when a token names a `kid` it does not have, at most every `JWKS_REFETCH_S`); `iss` the
  issuer; `aud` containing the client id (and `azp` the client id when there are several
  audiences); `exp` and `iat` present and `exp` not past (60 s leeway for clocks); `nonce`
  the one the sign-in started with.
- The email comes from the ID token or, when the token carries none, the userinfo endpoint
  (whose `sub` must be the token's).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote_plus, urlencode

import aiohttp
import jwt

from auth_svc.oauth_providers import (
    TIMEOUT,
    Identity,
    IdTokenInvalid,
    ProviderRefused,
    ProviderUnavailable,
    printable,
    read_json,
    unreachable,
)
from contracts.oauth_settings import PRESETS, OAuthProviderSettings
from contracts.validation import normal_email

DISCOVERY_TTL_S = 3600.0
JWKS_TTL_S = 3600.0
JWKS_REFETCH_S = 10.0  # an unknown kid fetches the keys again, at most this often
LEEWAY_S = 60
GOOGLE_ISSUER = PRESETS["google"].issuer
ASYMMETRIC = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384",
              "ES512", "EdDSA")


@dataclass
class _Cached:
    value: Any = None
    at: float = field(default=float("-inf"))


def authorization_url(discovery: dict[str, Any], settings: OAuthProviderSettings, *,
                      state: str, code_challenge: str, nonce: str, redirect_uri: str) -> str:
    """The authorization request (Core section 3.1.2.1, with PKCE)."""
    query = urlencode({
        "response_type": "code", "client_id": settings.client_id,
        "redirect_uri": redirect_uri, "scope": " ".join(settings.scopes), "state": state,
        "nonce": nonce, "code_challenge": code_challenge, "code_challenge_method": "S256"})
    endpoint = str(discovery["authorization_endpoint"])
    return f"{endpoint}{'&' if '?' in endpoint else '?'}{query}"


def identity_of(claims: dict[str, Any], *, issuer: str = "") -> Identity:
    """Who the verified claims name. An address that is not one (or a claim of another
    type) counts as none; Google vouches only for its own addresses (gmail.com and those of
    a Workspace domain, named by `hd`): any other it reports unverified for our purposes."""
    email = normal_email(claims.get("email"))
    verified = claims.get("email_verified")
    verified = verified is True or verified == "true"  # some providers send the string
    if email is not None and verified and issuer == GOOGLE_ISSUER:
        domain = email.rpartition("@")[2]
        verified = domain == "gmail.com" or claims.get("hd") == domain
    name = claims.get("name")
    return Identity(subject=str(claims["sub"]), email=email,
                    email_verified=email is not None and verified,
                    name=printable(name)[:100] if isinstance(name, str) else None)


def check_claims(claims: dict[str, Any], settings: OAuthProviderSettings, nonce: str) -> None:
    """What PyJWT does not check itself: `azp` with several audiences, and the nonce."""
    audiences = claims.get("aud")
    if isinstance(audiences, list) and len(audiences) > 1 \
            and claims.get("azp") != settings.client_id:
        raise IdTokenInvalid("azp is not this client")
    if claims.get("nonce") != nonce:
        raise IdTokenInvalid("nonce does not match")
    subject = claims.get("sub")
    if not isinstance(subject, str) or not subject or len(subject) > 255 \
            or printable(subject) != subject:
        raise IdTokenInvalid("no usable subject")


class OidcProvider:
    def __init__(self, settings: OAuthProviderSettings, http: aiohttp.ClientSession) -> None:
        self.settings = settings
        self._http = http
        self._discovery = _Cached()
        self._jwks = _Cached()

    @property
    def issuer(self) -> str | None:
        return self.settings.issuer

    async def authorization_url(self, *, state: str, code_challenge: str, nonce: str,
                                redirect_uri: str) -> str:
        return authorization_url(await self._discovered(), self.settings, state=state,
                                 code_challenge=code_challenge, nonce=nonce,
                                 redirect_uri=redirect_uri)

    async def identify(self, *, code: str, verifier: str, nonce: str,
                       redirect_uri: str) -> Identity:
        discovery = await self._discovered()
        tokens = await self._exchange(discovery, code, verifier, redirect_uri)
        id_token = tokens.get("id_token")
        if not isinstance(id_token, str):
            raise ProviderUnavailable("the token endpoint sent no ID token")
        claims = await self._verified(discovery, id_token)
        check_claims(claims, self.settings, nonce)
        if "email" not in claims and isinstance(discovery.get("userinfo_endpoint"), str) \
                and isinstance(tokens.get("access_token"), str):
            extra = await self._userinfo(discovery, tokens["access_token"])
            if extra.get("sub") == claims["sub"]:
                # the address and whether it is verified from one source, never mixed
                claims = {**claims, "email": extra.get("email"),
                          "email_verified": extra.get("email_verified"),
                          "name": claims.get("name", extra.get("name")),
                          "hd": extra.get("hd")}
        return identity_of(claims, issuer=self.settings.issuer)

    # --- the provider's endpoints -------------------------------------------------------

    async def _discovered(self) -> dict[str, Any]:
        if time.monotonic() - self._discovery.at < DISCOVERY_TTL_S:
            document: dict[str, Any] = self._discovery.value
            return document
        url = f"{self.settings.issuer.rstrip('/')}/.well-known/openid-configuration"
        try:
            async with self._http.get(url, timeout=TIMEOUT, allow_redirects=False) as answer:
                document = await read_json(answer, "discovery")
                if answer.status != 200:
                    raise ProviderUnavailable(f"discovery answered HTTP {answer.status}")
        except aiohttp.ClientError as exc:
            raise unreachable("discovery", exc) from None
        if not isinstance(document, dict) or document.get("issuer") != self.settings.issuer:
            raise ProviderUnavailable("discovery names another issuer")
        for needed in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
            if not isinstance(document.get(needed), str):
                raise ProviderUnavailable(f"discovery has no {needed}")
        self._discovery = _Cached(document, time.monotonic())
        return document

    async def _exchange(self, discovery: dict[str, Any], code: str, verifier: str,
                        redirect_uri: str) -> dict[str, Any]:
        form = {"grant_type": "authorization_code", "code": code,
                "redirect_uri": redirect_uri, "code_verifier": verifier}
        methods = _listed(discovery, "token_endpoint_auth_methods_supported",
                          ["client_secret_basic"])
        auth = None
        if "client_secret_basic" in methods:
            auth = aiohttp.BasicAuth(_form_encoded(self.settings.client_id),
                                     _form_encoded(self.settings.client_secret))
        else:
            form |= {"client_id": self.settings.client_id,
                     "client_secret": self.settings.client_secret}
        try:
            async with self._http.post(discovery["token_endpoint"], data=form, auth=auth,
                                       headers={"Accept": "application/json"},
                                       timeout=TIMEOUT, allow_redirects=False) as answer:
                tokens = await read_json(answer, "token endpoint")
                status = answer.status
        except aiohttp.ClientError as exc:
            raise unreachable("token endpoint", exc) from None
        if not isinstance(tokens, dict):
            raise ProviderUnavailable("the token endpoint answered no object")
        if status != 200 or "error" in tokens:
            if status < 500 and isinstance(tokens.get("error"), str):
                raise ProviderRefused(tokens["error"][:100])
            raise ProviderUnavailable(f"the token endpoint answered HTTP {status}")
        return tokens

    async def _verified(self, discovery: dict[str, Any], id_token: str) -> dict[str, Any]:
        try:
            header = jwt.get_unverified_header(id_token)
        except jwt.PyJWTError:
            raise IdTokenInvalid("malformed") from None
        offered = _listed(discovery, "id_token_signing_alg_values_supported", ["RS256"])
        algorithm = header.get("alg")
        if algorithm not in ASYMMETRIC or algorithm not in offered:
            raise IdTokenInvalid(f"algorithm {algorithm!r} not accepted")
        key = await self._key(discovery, header.get("kid"), algorithm)
        try:
            claims: dict[str, Any] = jwt.decode(
                id_token, key, algorithms=[algorithm], audience=self.settings.client_id,
                issuer=self.settings.issuer, leeway=LEEWAY_S,
                options={"require": ["iss", "aud", "exp", "iat", "sub"]})
        except jwt.ExpiredSignatureError:
            raise IdTokenInvalid("expired") from None
        except jwt.InvalidAudienceError:
            raise IdTokenInvalid("audience is not this client") from None
        except jwt.InvalidIssuerError:
            raise IdTokenInvalid("issuer does not match") from None
        except jwt.InvalidSignatureError:
            raise IdTokenInvalid("signature does not verify") from None
        except (jwt.PyJWTError, TypeError, ValueError) as exc:  # a key unfit for the token...
            raise IdTokenInvalid(type(exc).__name__) from None
        return claims

    async def _key(self, discovery: dict[str, Any], kid: Any, algorithm: str) -> Any:
        """The JWKS key for `kid` (the only key, when the token names none); the keys are
        fetched again once when none fits, at most every JWKS_REFETCH_S."""
        for fresh in (False, True):
            keys = await self._keys(discovery, refresh=fresh)
            found = [k for k in keys if kid is None or k.key_id == kid]
            if len(found) == 1 or (kid is not None and found):
                return found[0].key
        if kid is None:
            raise IdTokenInvalid("no kid and not exactly one key")
        raise IdTokenInvalid("signed by an unknown key")

    async def _keys(self, discovery: dict[str, Any], *, refresh: bool) -> list[jwt.PyJWK]:
        age = time.monotonic() - self._jwks.at
        if age < JWKS_TTL_S and not (refresh and age >= JWKS_REFETCH_S):
            keys: list[jwt.PyJWK] = self._jwks.value
            return keys
        try:
            async with self._http.get(discovery["jwks_uri"], timeout=TIMEOUT,
                                      allow_redirects=False) as answer:
                document = await read_json(answer, "JWKS")
                if answer.status != 200:
                    raise ProviderUnavailable(f"JWKS answered HTTP {answer.status}")
        except aiohttp.ClientError as exc:
            raise unreachable("JWKS", exc) from None
        entries = document.get("keys") if isinstance(document, dict) else None
        keys = []
        for entry in entries if isinstance(entries, list) else []:
            if not isinstance(entry, dict) or entry.get("use", "sig") != "sig":
                continue
            try:
                keys.append(jwt.PyJWK(entry))
            except Exception:  # a key this library cannot use is not ours to use
                continue
        self._jwks = _Cached(keys, time.monotonic())
        return keys

    async def _userinfo(self, discovery: dict[str, Any], access_token: str) -> dict[str, Any]:
        try:
            async with self._http.get(discovery["userinfo_endpoint"], timeout=TIMEOUT,
                                      headers={"Authorization": f"Bearer {access_token}"},
                                      allow_redirects=False) as answer:
                claims = await read_json(answer, "userinfo")
                if answer.status != 200 or not isinstance(claims, dict):
                    raise ProviderUnavailable(f"userinfo answered HTTP {answer.status}")
        except aiohttp.ClientError as exc:
            raise unreachable("userinfo", exc) from None
        return claims


def _listed(document: dict[str, Any], key: str, default: list[str]) -> list[Any]:
    value = document.get(key)
    return value if isinstance(value, list) else default


def _form_encoded(value: str) -> str:
    """RFC 6749 section 2.3.1: client id and secret are form-encoded before Basic auth."""
    return quote_plus(value)
