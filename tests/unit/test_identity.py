import time

import jwt
import pytest

from contracts import operations as op
from contracts.errors import Forbidden, TokenExpired, Unauthorized
from contracts.identity import (
    AUDIENCE,
    ISSUER,
    Identity,
    Role,
    issue_access_token,
    verify_access_token,
)
from contracts.operations import Operation
from contracts.routes import Access, Route
from gateway.steps.authenticator import authorize

SECRET = "s" * 40


def test_issued_token_round_trips_with_every_claim():
    token = issue_access_token(SECRET, user_id="u1", email="a@b.co", role="DEVELOPER")
    claims = jwt.decode(token, options={"verify_signature": False})
    assert {"sub", "userId", "email", "role", "iat", "exp", "jti", "iss", "aud"} <= set(claims)
    assert claims["exp"] - claims["iat"] == 900
    identity = verify_access_token(SECRET, token)
    assert identity == Identity("u1", "a@b.co", Role.DEVELOPER, claims["exp"])


def test_expired_token_with_a_valid_signature_is_token_expired():
    token = issue_access_token(SECRET, user_id="u1", email="a@b.co", role="VIEWER",
                               now=time.time() - 3600)
    with pytest.raises(TokenExpired):
        verify_access_token(SECRET, token)


def test_expired_token_with_a_bad_signature_is_unauthorized():
    token = issue_access_token("x" * 40, user_id="u1", email="a@b.co", role="VIEWER",
                               now=time.time() - 3600)
    with pytest.raises(Unauthorized):
        verify_access_token(SECRET, token)


def claims(**overrides):
    now = int(time.time())
    return {"sub": "u1", "userId": "u1", "email": "a@b.co", "role": "ADMIN", "iat": now,
            "exp": now + 86400, "jti": "j", "iss": ISSUER, "aud": AUDIENCE, **overrides}


@pytest.mark.parametrize("token", [
    jwt.encode(claims(), None, algorithm="none"),
    jwt.encode(claims(), "another-key-of-sufficient-length-123456", algorithm="HS256"),
    jwt.encode(claims(iss="someone-else"), SECRET, algorithm="HS256"),
    jwt.encode(claims(aud="another-api"), SECRET, algorithm="HS256"),
    jwt.encode(claims(role="ROOT"), SECRET, algorithm="HS256"),
    jwt.encode(claims(sub="u2"), SECRET, algorithm="HS256"),
    jwt.encode({k: v for k, v in claims().items() if k != "jti"}, SECRET, algorithm="HS256"),
    jwt.encode(claims(), SECRET, algorithm="HS512"),
    "not.a.jwt",
    "",
])
def test_bad_tokens_are_unauthorized(token):
    with pytest.raises(Unauthorized):
        verify_access_token(SECRET, token)


def route(method: str, access: Access, operation: Operation | None = None) -> Route:
    return Route(method, "/x", operation or Operation("x.op", None), access, "x")


def who(role: Role) -> Identity:
    return Identity("u1", "a@b.co", role, 0)


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE"])
def test_viewers_may_not_write(method):
    with pytest.raises(Forbidden, match=f"cannot perform {method} operations"):
        authorize(who(Role.VIEWER), route(method, Access.AUTHENTICATED), method)


def test_viewers_may_read_and_log_out():
    authorize(who(Role.VIEWER), route("GET", Access.AUTHENTICATED), "GET")
    authorize(who(Role.VIEWER), route("POST", Access.AUTHENTICATED, op.AUTH_LOGOUT), "POST")


def test_minimum_roles():
    authorize(who(Role.DEVELOPER), route("GET", Access.DEVELOPER), "GET")
    with pytest.raises(Forbidden, match="Insufficient permissions"):
        authorize(who(Role.VIEWER), route("GET", Access.DEVELOPER), "GET")
    with pytest.raises(Forbidden, match="Insufficient permissions"):
        authorize(who(Role.DEVELOPER), route("GET", Access.ADMIN), "GET")
    authorize(who(Role.ADMIN), route("DELETE", Access.ADMIN), "DELETE")


def test_verified_tokens_are_remembered_until_they_expire():
    from gateway.steps.authenticator import VerifiedTokens

    cache = VerifiedTokens(max_entries=2)
    token = issue_access_token(SECRET, user_id="u1", email="a@b.co", role="DEVELOPER",
                               now=time.time() - 900 + 1)  # one second left
    first = cache.verify(SECRET, token)
    assert cache.verify(SECRET, token) is first
    time.sleep(1.2)
    with pytest.raises(TokenExpired):
        cache.verify(SECRET, token)


def test_verified_tokens_never_remember_failures():
    from gateway.steps.authenticator import VerifiedTokens

    cache = VerifiedTokens()
    with pytest.raises(Unauthorized):
        cache.verify(SECRET, "bad")
    with pytest.raises(Unauthorized):
        cache.verify(SECRET, "bad")
