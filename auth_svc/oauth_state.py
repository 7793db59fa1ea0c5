"""What a sign-in with a provider keeps between its steps, in Redis (so any gateway and auth
replica can serve any step), each entry single use:

- a pending sign-in, under its `state` (10 minutes): the provider's name, the PKCE verifier,
  the OIDC nonce and the redirect URI it was started with. The callback takes it (GETDEL):
  a state is good once, for its own provider;
- a finished sign-in, under the SHA-256 of a one-time `code` (60 s): the signed-in user. The
  browser brings the code to `POST /oauth/exchange` (it travelled in a URL fragment, which
  is never sent to a server or in a Referer), which takes it once for the session's tokens.

State, verifier, nonce and code are 256-bit random values (`secrets.token_urlsafe(32)`).
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from dataclasses import asdict, dataclass

from contracts.redis_clients import RedisClient

PENDING_TTL_S = 600
EXCHANGE_TTL_S = 60
_PENDING = "auth:oauth:pending:"
_FINISHED = "auth:oauth:finished:"


def random_value() -> str:
    return secrets.token_urlsafe(32)


def code_challenge(verifier: str) -> str:
    """PKCE S256 (RFC 7636 section 4.2): base64url of SHA-256 of the verifier, unpadded."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


@dataclass(frozen=True)
class PendingSignIn:
    provider: str
    verifier: str
    nonce: str
    redirect_uri: str


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


class SignInStates:
    def __init__(self, redis: RedisClient) -> None:
        self._redis = redis

    async def begin(self, pending: PendingSignIn) -> str:
        """A new state for `pending`."""
        state = random_value()
        await self._redis.set(_PENDING + _digest(state), json.dumps(asdict(pending)),
                              ex=PENDING_TTL_S)
        return state

    async def take(self, state: str) -> PendingSignIn | None:
        """The pending sign-in of `state`, once; None when unknown, used or expired."""
        raw = await self._redis.getdel(_PENDING + _digest(state))
        return None if raw is None else PendingSignIn(**json.loads(raw))

    async def finish(self, user_id: str) -> str:
        """A one-time code for `user_id`'s session."""
        code = random_value()
        await self._redis.set(_FINISHED + _digest(code), user_id, ex=EXCHANGE_TTL_S)
        return code

    async def exchange(self, code: str) -> str | None:
        """The user id of a finished sign-in's code, once; None when unknown, used or
        expired."""
        raw = await self._redis.getdel(_FINISHED + _digest(code))
        if raw is None:
            return None
        return raw.decode() if isinstance(raw, bytes) else str(raw)
