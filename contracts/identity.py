"""Who is calling: roles, and the access token that carries them (docs/api.md sections 1.3, 3.1).

The auth service issues access tokens and the gateway verifies them; both use this module, so
the claims, algorithm, issuer and audience cannot drift apart.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Any

import jwt
from pydantic import ConfigDict, Strict, TypeAdapter, with_config
from pydantic.alias_generators import to_camel

from contracts.errors import TokenExpired, Unauthorized

ALGORITHM = "HS256"
ISSUER = "gateway-platform"
AUDIENCE = "gateway-platform-api"
ACCESS_TOKEN_TTL_S = 15 * 60
_REQUIRED_CLAIMS = ["exp", "iat", "sub", "iss", "aud", "jti", "userId", "email", "role"]


class Role(StrEnum):
    ADMIN = "ADMIN"
    DEVELOPER = "DEVELOPER"
    VIEWER = "VIEWER"


@with_config(ConfigDict(alias_generator=to_camel, serialize_by_alias=True))
@dataclass(frozen=True, slots=True)
class Caller:
    """Who a service is answering: what the gateway hands to services in every RPC call.

    A plain dataclass to construct (the gateway builds one per request from a token it has
    verified); its fields are declared for pydantic, which reads and writes the wire form
    `{"userId", "email", "role"}` (contracts.messages.RpcRequest carries it).
    """

    user_id: Annotated[str, Strict()]
    email: Annotated[str, Strict()]
    role: Role  # lax: the wire has the role's value, e.g. "ADMIN", never an enum member

    @property
    def is_admin(self) -> bool:
        return self.role is Role.ADMIN

    def to_wire(self) -> dict[str, Any]:
        wire: dict[str, Any] = _CALLER.dump_python(self, mode="json")
        return wire

    @classmethod
    def from_wire(cls, wire: dict[str, Any]) -> Caller:
        """Raise ValueError (pydantic's ValidationError) for anything else."""
        return _CALLER.validate_python(wire)


_CALLER = TypeAdapter(Caller)


@dataclass(frozen=True)
class Identity:
    user_id: str
    email: str
    role: Role
    expires_at: int  # Unix seconds

    @property
    def caller(self) -> Caller:
        return Caller(self.user_id, self.email, self.role)


def issue_access_token(
    secret: str, *, user_id: str, email: str, role: str, now: float | None = None
) -> str:
    issued = int(now if now is not None else time.time())
    claims = {
        "sub": user_id,
        "userId": user_id,
        "email": email,
        "role": role,
        "iat": issued,
        "exp": issued + ACCESS_TOKEN_TTL_S,
        "jti": uuid.uuid4().hex,
        "iss": ISSUER,
        "aud": AUDIENCE,
    }
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def verify_access_token(secret: str, token: str) -> Identity:
    """Raise TokenExpired for a well-signed token past `exp`, Unauthorized for anything else."""
    try:
        claims = jwt.decode(
            token, secret, algorithms=[ALGORITHM], audience=AUDIENCE, issuer=ISSUER,
            options={"require": _REQUIRED_CLAIMS},
        )
    except jwt.ExpiredSignatureError:
        raise TokenExpired("Token expired") from None
    except (jwt.PyJWTError, UnicodeError, ValueError):  # incl. non-ASCII bytes in a header
        raise Unauthorized("Invalid token") from None
    try:
        role = Role(claims["role"])
    except ValueError:
        raise Unauthorized("Invalid token") from None
    if claims["sub"] != claims["userId"] or not isinstance(claims["email"], str):
        raise Unauthorized("Invalid token")
    return Identity(str(claims["userId"]), claims["email"], role, int(claims["exp"]))
