"""A provider of the tests' own in front of the real local one (infra/oidc), to forge what a
real provider never sends: it serves a discovery document naming itself as the issuer, its
own token endpoint and JWKS; its token endpoint passes the request to the real provider and
re-signs the real ID token with its own key, after changing it as `mode` says:

    honest       only the issuer (its own): the flow works through it
    forged       signed by a key that is not in its JWKS (same kid)
    unknown-kid  signed by a key whose kid its JWKS does not have
    audience     `aud` another client
    expired      `exp` an hour ago
    nonce        another nonce
    issuer       `iss` some other issuer
    hs256        signed with HMAC (a shared secret as key)
    none         not signed at all (`alg: none`)
(HS256 and none are listed in its discovery, so only the client's own rule refuses them.)

The browser still signs in at the real provider (the discovery's authorization endpoint is
the real one), whose callback carries `iss` = the real issuer; a test calling our callback
for this provider leaves that parameter out (a provider that does not send it).
"""

from __future__ import annotations

import json
import time
import urllib.request
from typing import Any

import jwt
from aiohttp import ClientSession, web
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.e2e.helpers import LoopbackServer
from tests.oidc_support import PROVIDER_URL

KID = "proxy-key"


def _private_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


class ForgingProvider(LoopbackServer):
    def __init__(self) -> None:
        super().__init__()
        self.mode = "honest"
        self._key = _private_key()
        self._rogue = _private_key()
        with urllib.request.urlopen(f"{PROVIDER_URL}/.well-known/openid-configuration",
                                    timeout=10) as answer:
            self._real: dict[str, Any] = json.load(answer)

    @property
    def issuer(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/.well-known/openid-configuration", self._discovery)
        app.router.add_get("/jwks", self._jwks)
        app.router.add_post("/token", self._token)

    async def _discovery(self, _request: web.Request) -> web.Response:
        return web.json_response({**self._real, "issuer": self.issuer,
                                  "token_endpoint": f"{self.issuer}/token",
                                  "jwks_uri": f"{self.issuer}/jwks",
                                  # offered, so that only our own rule refuses them
                                  "id_token_signing_alg_values_supported": [
                                      "RS256", "HS256", "none"]})

    async def _jwks(self, _request: web.Request) -> web.Response:
        public = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self._key.public_key()))
        return web.json_response({"keys": [{**public, "kid": KID, "use": "sig",
                                            "alg": "RS256"}]})

    async def _token(self, request: web.Request) -> web.Response:
        headers = {k: v for k, v in request.headers.items()
                   if k.lower() in ("authorization", "content-type", "accept")}
        async with ClientSession() as http, http.post(
                self._real["token_endpoint"], data=await request.read(),
                headers=headers) as answer:
            body = await answer.json()
            if answer.status != 200 or "id_token" not in body:
                return web.json_response(body, status=answer.status)
        claims = jwt.decode(body["id_token"], options={"verify_signature": False})
        body["id_token"] = self._reissued(claims)
        return web.json_response(body)

    def _reissued(self, claims: dict[str, Any]) -> str:
        claims = {**claims, "iss": self.issuer}
        key: Any = self._key
        headers = {"kid": KID}
        algorithm = "RS256"
        now = int(time.time())
        if self.mode == "forged":
            key = self._rogue
        elif self.mode == "unknown-kid":
            key, headers = self._rogue, {"kid": "not-in-the-jwks"}
        elif self.mode == "audience":
            claims["aud"] = "someone-else"
        elif self.mode == "expired":
            claims |= {"exp": now - 3600, "iat": now - 7200}
        elif self.mode == "nonce":
            claims["nonce"] = "not-the-one-sent"
        elif self.mode == "issuer":
            claims["iss"] = "http://127.0.0.1:1/elsewhere"
        elif self.mode == "hs256":
            key, algorithm = "local-dev-secret-" + "x" * 32, "HS256"
        elif self.mode == "none":
            key, algorithm = None, "none"
        return jwt.encode(claims, key, algorithm=algorithm, headers=headers)
