"""What an OpenID provider may answer that is not what it should: the client says 401 or
502, never 500, and a failed key fetch is not kept. A pure unit test: the provider's HTTP
answers come from a fake session (the real provider is tests/e2e/test_oauth.py's)."""

from __future__ import annotations

import json
import time
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from auth_svc.oauth_providers import IdTokenInvalid, ProviderUnavailable
from auth_svc.oidc import OidcProvider
from contracts.oauth_settings import OAuthProviderSettings

ISSUER = "https://id.example.com/"  # a trailing slash, as some issuers have
SETTINGS = OAuthProviderSettings(name="corp", kind="oidc", display_name="Corp",
                                 client_id="client", client_secret="secret", issuer=ISSUER,
                                 scopes=("openid",), trust_email=False)
KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)


class _Answer:
    def __init__(self, status: int, body: Any) -> None:
        self.status = status
        self._raw = json.dumps(body).encode()
        self.content = self

    async def read(self, _limit: int) -> bytes:
        return self._raw

    async def __aenter__(self) -> _Answer:
        return self

    async def __aexit__(self, *_: object) -> None:
        return None


class FakeHttp:
    """Answers by URL; counts the JWKS fetches."""

    def __init__(self, jwks: Any, jwks_status: int = 200, discovery: dict | None = None):
        self.jwks, self.jwks_status, self.jwks_fetches = jwks, jwks_status, 0
        self.discovery = {"issuer": ISSUER, "authorization_endpoint": f"{ISSUER}auth",
                          "token_endpoint": f"{ISSUER}token", "jwks_uri": f"{ISSUER}jwks",
                          **(discovery or {})}

    def get(self, url: str, **_: Any) -> _Answer:
        if url.endswith("/.well-known/openid-configuration"):
            assert url == "https://id.example.com/.well-known/openid-configuration"
            return _Answer(200, self.discovery)
        self.jwks_fetches += 1
        return _Answer(self.jwks_status, self.jwks)


def public_jwk(kid: str = "k1") -> dict[str, Any]:
    return {**json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(KEY.public_key())), "kid": kid,
            "use": "sig"}


def token(kid: str = "k1", **claims: Any) -> str:
    now = int(time.time())
    return jwt.encode({"iss": ISSUER, "aud": "client", "sub": "s", "iat": now,
                       "exp": now + 60, **claims}, KEY, algorithm="RS256",
                      headers={"kid": kid})


async def verified(http: FakeHttp, id_token: str) -> dict[str, Any]:
    provider = OidcProvider(SETTINGS, http)  # type: ignore[arg-type]
    discovery = await provider._discovered()
    return await provider._verified(discovery, id_token)


async def test_an_issuer_with_a_trailing_slash_is_compared_as_given():
    claims = await verified(FakeHttp({"keys": [public_jwk()]}), token())
    assert claims["iss"] == ISSUER


@pytest.mark.parametrize("jwks", [
    {"keys": None}, {"keys": "nope"}, ["not", "an", "object"],
    {"keys": [17, "x", None, {"kty": "oct"}, {"kty": "RSA", "alg": ["RS256"]}]},
])
async def test_a_malformed_key_set_means_an_unknown_key(jwks):
    with pytest.raises(IdTokenInvalid, match="unknown key"):
        await verified(FakeHttp(jwks), token())


async def test_a_key_unfit_for_the_algorithm_is_a_401():
    ec_key = ec.generate_private_key(ec.SECP256R1())
    ec_jwk = {**json.loads(jwt.algorithms.ECAlgorithm.to_jwk(ec_key.public_key())),
              "kid": "k1", "use": "sig"}
    with pytest.raises(IdTokenInvalid):
        await verified(FakeHttp({"keys": [ec_jwk]}), token())


async def test_null_lists_in_discovery_fall_back_to_the_defaults():
    http = FakeHttp({"keys": [public_jwk()]},
                    discovery={"id_token_signing_alg_values_supported": None,
                               "token_endpoint_auth_methods_supported": None})
    assert (await verified(http, token()))["sub"] == "s"


async def test_a_failed_key_fetch_is_a_502_and_is_not_kept():
    http = FakeHttp({"keys": [public_jwk()]}, jwks_status=503)
    provider = OidcProvider(SETTINGS, http)  # type: ignore[arg-type]
    discovery = await provider._discovered()
    with pytest.raises(ProviderUnavailable):
        await provider._verified(discovery, token())
    http.jwks_status = 200
    assert (await provider._verified(discovery, token()))["sub"] == "s"
    assert http.jwks_fetches == 2


async def test_an_unknown_kid_fetches_the_keys_again_once():
    http = FakeHttp({"keys": [public_jwk("old")]})
    provider = OidcProvider(SETTINGS, http)  # type: ignore[arg-type]
    discovery = await provider._discovered()
    with pytest.raises(IdTokenInvalid, match="unknown key"):
        await provider._verified(discovery, token(kid="new"))
    assert http.jwks_fetches == 1  # fetched a moment ago: not again at once
    provider._jwks.at -= 60  # the keys are older than the refetch interval
    http.jwks = {"keys": [public_jwk("new")]}  # the provider rotated its key
    assert (await provider._verified(discovery, token(kid="new")))["sub"] == "s"
    assert http.jwks_fetches == 2
