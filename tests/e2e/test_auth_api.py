"""The auth API (docs/api.md sections 1.2, 1.3, 2 and 3) end to end: every call goes through the
gateway to the real auth service, its PostgreSQL database, Redis and an SMTP sink.

All tests of this module share one stack and one database, so each one registers its own
users with unique emails. Failed logins also count per client address (50 per window), so
the module as a whole stays well below that: mind it when adding wrong-password attempts.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

import jwt
import pytest

from contracts.identity import AUDIENCE, ISSUER
from contracts.settings import DEV_SECRETS
from tests.e2e.conftest import Stack
from tests.e2e.helpers import ISO_MS, UUID4, Response, assert_error, header, raw, sql
from tests.support import MailSink, link_in, request_json

AUTH = "/api/v1/auth"
SECRET = DEV_SECRETS["ACCESS_TOKEN_SECRET"]
PASSWORD = "Correct1Horse"
NEW_PASSWORD = "Battery2Staple"
VERIFY_SUBJECT = "Verify your email address"
RESET_SUBJECT = "Reset your password"
APP_URL = "http://localhost:3000"

USER_FIELDS = {"id", "email", "name", "role", "active", "createdAt"}
REFRESH_TOKEN = re.compile(r"^[0-9a-f]{80}$")
ONE_TIME_TOKEN = re.compile(r"^[0-9a-f]{32}$")

INVALID_LOGIN = "Invalid email or password"
INVALID_REFRESH = "Invalid or revoked refresh token"


# --- helpers ---------------------------------------------------------------------------------


@dataclass
class Account:
    email: str
    password: str
    id: str
    access: str
    refresh: str


def new_email(tag: str = "user") -> str:
    return f"{tag}-{uuid.uuid4().hex[:12]}@example.com"


def call(stack: Stack, method: str, path: str, body: Any = None, *, token: str | None = None,
         headers: dict[str, str] | None = None) -> Response:
    """One request to `/api/v1/auth<path>` through the gateway."""
    sent = dict(headers or {})
    if token is not None:
        sent["Authorization"] = f"Bearer {token}"
    return request_json(method, f"{stack.gateway_url}{AUTH}{path}", body, sent)


def register(stack: Stack, email: str | None = None, password: str = PASSWORD,
             name: str = "Test User") -> Account:
    status, body, _ = call(stack, "POST", "/register",
                           {"email": email or new_email(), "password": password, "name": name})
    assert status == 201, body
    return Account(body["user"]["email"], password, body["user"]["id"], body["accessToken"],
                   body["refreshToken"])


def login(stack: Stack, account: Account, password: str | None = None) -> Account:
    status, body, _ = call(stack, "POST", "/login",
                           {"email": account.email, "password": password or account.password})
    assert status == 200, body
    return Account(account.email, password or account.password, body["user"]["id"],
                   body["accessToken"], body["refreshToken"])


def refresh(stack: Stack, token: str) -> Response:
    return call(stack, "POST", "/refresh", {"refreshToken": token})


def assert_validation(response: Response, *details: dict[str, str]) -> list[dict[str, str]]:
    """A 400 VALIDATION_ERROR whose details are exactly the ones given (any order)."""
    body = assert_error(response, 400, "VALIDATION_ERROR", "Request validation failed")
    for detail in body["details"]:
        assert set(detail) == {"field", "location", "message", "code"}, detail
    assert sorted(body["details"], key=_detail_key) == sorted(details, key=_detail_key)
    return body["details"]


def _detail_key(entry: dict[str, str]) -> tuple[str, str]:
    return entry["field"], entry["message"]


def detail(field: str, message: str, code: str, location: str = "body") -> dict[str, str]:
    return {"field": field, "location": location, "message": message, "code": code}


def claims_of(token: str) -> dict[str, Any]:
    return jwt.decode(token, options={"verify_signature": False})


def sign(claims: dict[str, Any], key: str = SECRET) -> str:
    return jwt.encode(claims, key, algorithm="HS256")


def valid_claims(account: Account, **changes: Any) -> dict[str, Any]:
    now = int(time.time())
    claims = {"sub": account.id, "userId": account.id, "email": account.email,
              "role": "DEVELOPER", "iat": now, "exp": now + 900, "jti": uuid.uuid4().hex,
              "iss": ISSUER, "aud": AUDIENCE}
    claims.update(changes)
    return claims


def sha256(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def via_gateway(stack: Stack, link: str, path: str) -> str:
    """A mailed link (pointing at APP_URL) rewritten to this stack's gateway."""
    assert link.startswith(f"{APP_URL}{AUTH}{path}?token="), link
    parts = urlsplit(link)
    return f"{stack.gateway_url}{parts.path}?{parts.query}"


def token_in(link: str) -> str:
    token = parse_qs(urlsplit(link).query)["token"][0]
    assert ONE_TIME_TOKEN.match(token), token
    return token


def verification_link(stack: Stack, mail_sink: MailSink, email: str, after: int) -> str:
    message = mail_sink.wait_for(email, VERIFY_SUBJECT, timeout=10, after=after)
    return via_gateway(stack, link_in(message, f"{AUTH}/verify-email"), "/verify-email")


def reset_token(mail_sink: MailSink, email: str, after: int) -> str:
    message = mail_sink.wait_for(email, RESET_SUBJECT, timeout=10, after=after)
    # The mail also names the POST endpoint without a token: take the link that has one.
    return token_in(link_in(message, f"{AUTH}/reset-password?token="))


def registered_with_mail(stack: Stack, mail_sink: MailSink) -> tuple[Account, str]:
    """A new user and the verification link of its registration mail (already arrived)."""
    start = mail_sink.count()
    account = register(stack)
    return account, verification_link(stack, mail_sink, account.email, start)


def get_url(url: str) -> Response:
    return request_json("GET", url)


# --- register --------------------------------------------------------------------------------


def test_register_returns_user_and_token_pair_and_mails_a_verification_link(
        shared_stack: Stack, mail_sink: MailSink):
    email = new_email("reg")
    start = mail_sink.count()
    status, body, headers = call(shared_stack, "POST", "/register",
                                 {"email": email, "password": PASSWORD, "name": "Ada"})

    assert status == 201, body
    assert set(body) == {"message", "user", "accessToken", "refreshToken"}
    assert body["message"] == "Registration successful. Verification email sent."
    user = body["user"]
    assert set(user) == USER_FIELDS
    assert UUID4.match(user["id"])
    assert (user["email"], user["name"], user["role"], user["active"]) == (
        email, "Ada", "DEVELOPER", True)
    assert ISO_MS.match(user["createdAt"])
    assert REFRESH_TOKEN.match(body["refreshToken"])
    assert claims_of(body["accessToken"])["userId"] == user["id"]
    assert UUID4.match(header(headers, "X-Request-Id") or "")

    message = mail_sink.wait_for(email, VERIFY_SUBJECT, timeout=10, after=start)
    link = link_in(message, f"{AUTH}/verify-email")
    assert link.startswith(f"{APP_URL}{AUTH}/verify-email?token=")
    token_in(link)


def test_register_normalises_email_and_name_and_ignores_unknown_fields(shared_stack: Stack):
    local = f"MiXeD-{uuid.uuid4().hex[:8]}"
    status, body, _ = call(shared_stack, "POST", "/register", {
        "email": f"  {local}@Example.COM ", "password": PASSWORD, "name": "  Grace  ",
        "role": "ADMIN", "active": False, "id": str(uuid.uuid4()), "createdAt": "2000-01-01",
    })

    assert status == 201, body
    user = body["user"]
    assert set(user) == USER_FIELDS
    assert user["email"] == f"{local.lower()}@example.com"
    assert user["name"] == "Grace"
    assert user["role"] == "DEVELOPER" and user["active"] is True
    assert claims_of(body["accessToken"])["role"] == "DEVELOPER"
    assert not user["createdAt"].startswith("2000")


def test_register_accepts_the_boundary_lengths(shared_stack: Stack):
    longest_password = "A1" + "x" * 126
    account = register(shared_stack, password=longest_password, name="N" * 100)
    login(shared_stack, account)
    register(shared_stack, name="Al")


def test_register_refuses_a_taken_email_in_any_case(shared_stack: Stack):
    account = register(shared_stack)
    for email in (account.email, f" {account.email.upper()} "):
        response = call(shared_stack, "POST", "/register",
                        {"email": email, "password": PASSWORD, "name": "Someone Else"})
        assert_error(response, 409, "CONFLICT", "Email already registered")


@pytest.mark.parametrize(("password", "message", "code"), [
    ("Short1A", "Password must be at least 8 characters", "too_small"),
    ("lowercase1only", "Password must contain at least one uppercase letter", "invalid_string"),
    ("NoDigitsHere", "Password must contain at least one number", "invalid_string"),
    ("A1" + "x" * 127, "Password must be at most 128 characters", "too_big"),
])
def test_register_reports_each_password_rule(shared_stack: Stack, password: str, message: str,
                                             code: str):
    response = call(shared_stack, "POST", "/register",
                    {"email": new_email(), "password": password, "name": "Valid Name"})
    assert_validation(response, detail("password", message, code))


@pytest.mark.parametrize(("name", "message", "code"), [
    ("A", "Name must be at least 2 characters", "too_small"),
    ("   B   ", "Name must be at least 2 characters", "too_small"),  # trimmed first
    ("N" * 101, "Name must be at most 100 characters", "too_big"),
])
def test_register_reports_name_length(shared_stack: Stack, name: str, message: str, code: str):
    response = call(shared_stack, "POST", "/register",
                    {"email": new_email(), "password": PASSWORD, "name": name})
    assert_validation(response, detail("name", message, code))


@pytest.mark.parametrize("email", ["not-an-email", "two@@example.com", "@example.com", ""])
def test_register_refuses_an_invalid_email(shared_stack: Stack, email: str):
    response = call(shared_stack, "POST", "/register",
                    {"email": email, "password": PASSWORD, "name": "Valid Name"})
    body = assert_error(response, 400, "VALIDATION_ERROR", "Request validation failed")
    assert [(d["field"], d["location"], d["code"]) for d in body["details"]] == [
        ("email", "body", "invalid_string")]
    assert body["details"][0]["message"]


def test_register_refuses_an_email_over_255_characters(shared_stack: Stack):
    email = "a" * 64 + "@" + ".".join(["b" * 60] * 3) + ".example.com"
    assert len(email) > 255
    response = call(shared_stack, "POST", "/register",
                    {"email": email, "password": PASSWORD, "name": "Valid Name"})
    assert_validation(response, detail("email", "Email must be at most 255 characters", "too_big"))


def test_register_reports_every_missing_or_mistyped_field(shared_stack: Stack):
    details = assert_validation(call(shared_stack, "POST", "/register", {}), *[
        detail(field, "Missing data for required field.", "invalid_type")
        for field in ("email", "password", "name")])
    assert len(details) == 3

    response = call(shared_stack, "POST", "/register",
                    {"email": 42, "password": PASSWORD, "name": "Valid Name"})
    assert_validation(response, detail("email", "Not a valid string.", "invalid_type"))


@pytest.mark.parametrize("body", [[], ["a"], "text", 42, True])
def test_register_refuses_a_body_that_is_not_an_object(shared_stack: Stack, body: Any):
    response = call(shared_stack, "POST", "/register", body)
    details = assert_error(response, 400, "VALIDATION_ERROR")["details"]
    assert len(details) == 1
    assert details[0]["location"] == "body" and details[0]["code"] == "invalid_type"


@pytest.mark.parametrize("data", [b"{", b'{"email": "a@b.c",}', b"not json", b"\xff\xfe"])
def test_malformed_json_is_bad_request(shared_stack: Stack, data: bytes):
    assert_error(raw(shared_stack, "POST", f"{AUTH}/register", data), 400, "BAD_REQUEST")


def test_an_oversized_body_is_payload_too_large(shared_stack: Stack):
    padding = "x" * (1024 * 1024)
    data = json.dumps({"email": new_email(), "password": PASSWORD, "name": padding}).encode()
    assert_error(raw(shared_stack, "POST", f"{AUTH}/register", data), 413, "PAYLOAD_TOO_LARGE")


# --- login -----------------------------------------------------------------------------------


def test_login_returns_user_and_a_new_token_pair(shared_stack: Stack):
    account = register(shared_stack, name="Linus")
    status, body, _ = call(shared_stack, "POST", "/login",
                           {"email": f"  {account.email.upper()}", "password": PASSWORD})

    assert status == 200, body
    assert set(body) == {"user", "accessToken", "refreshToken"}
    assert set(body["user"]) == USER_FIELDS
    assert body["user"]["id"] == account.id
    assert body["user"]["email"] == account.email
    assert (body["user"]["name"], body["user"]["role"], body["user"]["active"]) == (
        "Linus", "DEVELOPER", True)
    assert REFRESH_TOKEN.match(body["refreshToken"])
    assert body["refreshToken"] != account.refresh
    assert claims_of(body["accessToken"])["userId"] == account.id


def test_login_does_not_tell_a_wrong_password_from_an_unknown_email(shared_stack: Stack):
    account = register(shared_stack)
    wrong = call(shared_stack, "POST", "/login",
                 {"email": account.email, "password": "Wrong1Password"})
    unknown = call(shared_stack, "POST", "/login",
                   {"email": new_email("nobody"), "password": PASSWORD})
    first = assert_error(wrong, 401, "UNAUTHORIZED", INVALID_LOGIN)
    second = assert_error(unknown, 401, "UNAUTHORIZED", INVALID_LOGIN)
    assert set(first) == set(second)


def test_login_validates_its_body(shared_stack: Stack):
    assert_validation(call(shared_stack, "POST", "/login", {"email": new_email(), "password": ""}),
                      detail("password", "Password is required", "too_small"))
    assert_validation(call(shared_stack, "POST", "/login", {"password": PASSWORD}),
                      detail("email", "Missing data for required field.", "invalid_type"))


def test_a_deactivated_account_is_refused_only_after_the_right_password(shared_stack: Stack):
    account = register(shared_stack)
    shared_stack.cli("set-active", account.email, "false")

    right = call(shared_stack, "POST", "/login", {"email": account.email, "password": PASSWORD})
    assert_error(right, 403, "FORBIDDEN", "Account is deactivated")
    wrong = call(shared_stack, "POST", "/login",
                 {"email": account.email, "password": "Wrong1Password"})
    assert_error(wrong, 401, "UNAUTHORIZED", INVALID_LOGIN)

    # Deactivation does not revoke access tokens already issued: they run out (docs/api.md 3.1).
    status, profile, _ = call(shared_stack, "GET", "/profile", token=account.access)
    assert status == 200 and profile["active"] is False

    shared_stack.cli("set-active", account.email, "true")
    login(shared_stack, account)


def test_ten_failed_logins_lock_the_account_even_for_the_right_password(shared_stack: Stack):
    account = register(shared_stack)
    bystander = register(shared_stack)
    for _ in range(10):
        response = call(shared_stack, "POST", "/login",
                        {"email": account.email, "password": "Guess1Wrong"})
        assert_error(response, 401, "UNAUTHORIZED", INVALID_LOGIN)

    locked = call(shared_stack, "POST", "/login",
                  {"email": account.email.upper(), "password": PASSWORD})
    body = assert_error(locked, 429, "TOO_MANY_REQUESTS")
    retry_after = header(locked[2], "Retry-After")
    assert retry_after is not None and retry_after.isdigit()
    assert 1 <= int(retry_after) <= 900
    assert isinstance(body["retryAfter"], int) and 1 <= body["retryAfter"] <= 900
    assert abs(body["retryAfter"] - int(retry_after)) <= 1

    # The lock is per account: another account on the same address still logs in.
    login(shared_stack, bystander)


# --- access tokens ---------------------------------------------------------------------------


def test_access_token_claims(shared_stack: Stack):
    account = register(shared_stack)
    claims = claims_of(account.access)

    assert jwt.get_unverified_header(account.access)["alg"] == "HS256"
    assert {"userId", "email", "role", "iat", "exp", "jti", "iss", "aud", "sub"} <= set(claims)
    assert claims["userId"] == claims["sub"] == account.id
    assert claims["email"] == account.email
    assert claims["role"] == "DEVELOPER"
    assert claims["exp"] == claims["iat"] + 900
    assert abs(claims["iat"] - time.time()) < 60
    assert (claims["iss"], claims["aud"]) == (ISSUER, AUDIENCE)
    assert claims["jti"] != claims_of(login(shared_stack, account).access)["jti"]
    # Signed with ACCESS_TOKEN_SECRET (the test default).
    jwt.decode(account.access, SECRET, algorithms=["HS256"], audience=AUDIENCE, issuer=ISSUER)


def test_an_expired_access_token_is_token_expired(shared_stack: Stack):
    account = register(shared_stack)
    now = int(time.time())
    token = sign(valid_claims(account, iat=now - 1000, exp=now - 100))
    response = call(shared_stack, "GET", "/profile", token=token)
    assert_error(response, 401, "TOKEN_EXPIRED", "Token expired")


def test_a_token_we_signed_like_the_service_is_accepted(shared_stack: Stack):
    """Control for the refusals below: the hand-made tokens differ in one thing only."""
    account = register(shared_stack)
    status, body, _ = call(shared_stack, "GET", "/profile", token=sign(valid_claims(account)))
    assert status == 200 and body["id"] == account.id


def _unsigned(claims: dict[str, Any]) -> str:
    def part(value: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(claims)}."


@pytest.mark.parametrize("forge", [
    pytest.param(lambda a: _unsigned(valid_claims(a)), id="alg-none"),
    pytest.param(lambda a: sign(valid_claims(a), "another-secret-of-at-least-32-characters!"),
                 id="other-key"),
    pytest.param(lambda a: sign(valid_claims(a, iss="someone-else")), id="wrong-issuer"),
    pytest.param(lambda a: sign(valid_claims(a, aud="another-api")), id="wrong-audience"),
    pytest.param(lambda a: sign(valid_claims(a, role="ROOT")), id="unknown-role"),
    pytest.param(lambda a: sign({k: v for k, v in valid_claims(a).items() if k != "jti"}),
                 id="missing-claim"),
    pytest.param(lambda a: "not.a.jwt", id="garbage"),
])
def test_a_forged_or_malformed_access_token_is_unauthorized(shared_stack: Stack, forge):
    account = register(shared_stack)
    response = call(shared_stack, "GET", "/profile", token=forge(account))
    assert_error(response, 401, "UNAUTHORIZED")


@pytest.mark.parametrize("value", [
    "bearer {token}", "Token {token}", "Bearer", "Bearer ", "{token}", "Basic dXNlcjpwYXNz", None,
])
def test_authorization_must_be_exactly_bearer(shared_stack: Stack, value: str | None):
    account = register(shared_stack)
    headers = {} if value is None else {"Authorization": value.format(token=account.access)}
    response = call(shared_stack, "GET", "/profile", headers=headers)
    assert_error(response, 401, "UNAUTHORIZED")


# --- refresh ---------------------------------------------------------------------------------


def test_refresh_rotates_the_pair(shared_stack: Stack):
    account = register(shared_stack)
    status, body, _ = refresh(shared_stack, account.refresh)

    assert status == 200, body
    assert set(body) == {"accessToken", "refreshToken"}
    assert REFRESH_TOKEN.match(body["refreshToken"])
    assert body["refreshToken"] != account.refresh
    assert body["accessToken"] != account.access
    assert claims_of(body["accessToken"])["userId"] == account.id
    status, profile, _ = call(shared_stack, "GET", "/profile", token=body["accessToken"])
    assert status == 200 and profile["id"] == account.id

    status, again, _ = refresh(shared_stack, body["refreshToken"])
    assert status == 200 and again["refreshToken"] != body["refreshToken"]


def test_reusing_a_rotated_refresh_token_revokes_its_whole_family(shared_stack: Stack):
    account = register(shared_stack)
    other_session = login(shared_stack, account)
    first = refresh(shared_stack, account.refresh)[1]["refreshToken"]
    newest = refresh(shared_stack, first)[1]["refreshToken"]

    assert_error(refresh(shared_stack, account.refresh), 401, "UNAUTHORIZED", INVALID_REFRESH)
    assert_error(refresh(shared_stack, newest), 401, "UNAUTHORIZED", INVALID_REFRESH)
    assert_error(refresh(shared_stack, first), 401, "UNAUTHORIZED", INVALID_REFRESH)
    # Only that login's family: the user's other session is untouched.
    assert refresh(shared_stack, other_session.refresh)[0] == 200


@pytest.mark.parametrize("token", ["0" * 80, "not-a-token", sha256("x")],
                         ids=["well-formed", "short", "64-hex"])
def test_an_unknown_refresh_token_is_refused(shared_stack: Stack, token: str):
    assert_error(refresh(shared_stack, token), 401, "UNAUTHORIZED", INVALID_REFRESH)


def test_refresh_validates_its_body(shared_stack: Stack):
    assert_validation(refresh(shared_stack, ""),
                      detail("refreshToken", "Refresh token is required", "too_small"))
    assert_validation(call(shared_stack, "POST", "/refresh", {}), detail(
        "refreshToken", "Missing data for required field.", "invalid_type"))


def test_an_expired_refresh_token_is_refused(shared_stack: Stack):
    account = register(shared_stack)
    assert sql(shared_stack, "auth",
               "UPDATE refresh_tokens SET expires_at = now() - interval '1 minute'"
               " WHERE token_hash = $1", sha256(account.refresh)) == "UPDATE 1"
    assert_error(refresh(shared_stack, account.refresh), 401, "UNAUTHORIZED",
                 "Refresh token expired")


def test_refresh_of_a_deactivated_account_is_forbidden(shared_stack: Stack):
    account = register(shared_stack)
    shared_stack.cli("set-active", account.email, "false")
    assert_error(refresh(shared_stack, account.refresh), 403, "FORBIDDEN",
                 "Account not found or deactivated")


def test_a_new_role_takes_effect_at_the_next_refresh(shared_stack: Stack):
    account = register(shared_stack)
    shared_stack.cli("set-role", account.email, "VIEWER")
    assert claims_of(account.access)["role"] == "DEVELOPER"  # issued tokens keep their role

    status, body, _ = refresh(shared_stack, account.refresh)
    assert status == 200, body
    assert claims_of(body["accessToken"])["role"] == "VIEWER"
    status, profile, _ = call(shared_stack, "GET", "/profile", token=body["accessToken"])
    assert status == 200 and profile["role"] == "VIEWER"


def test_concurrent_refreshes_of_one_token_have_exactly_one_winner(shared_stack: Stack):
    account = register(shared_stack)
    callers = 10
    barrier = threading.Barrier(callers)

    def attempt(_: int) -> Response:
        barrier.wait(timeout=10)
        return refresh(shared_stack, account.refresh)

    with ThreadPoolExecutor(callers) as pool:
        responses = list(pool.map(attempt, range(callers)))

    statuses = sorted(status for status, _, _ in responses)
    assert statuses == [200] + [401] * (callers - 1), statuses
    for response in responses:
        if response[0] == 401:
            assert_error(response, 401, "UNAUTHORIZED", INVALID_REFRESH)


# --- logout ----------------------------------------------------------------------------------


def test_logout_revokes_the_refresh_token(shared_stack: Stack):
    account = register(shared_stack)
    status, body, _ = call(shared_stack, "POST", "/logout", {"refreshToken": account.refresh},
                           token=account.access)
    assert (status, body) == (200, {"message": "Logged out successfully"})
    assert_error(refresh(shared_stack, account.refresh), 401, "UNAUTHORIZED", INVALID_REFRESH)


def test_logout_does_not_revoke_another_users_token(shared_stack: Stack):
    caller, victim = register(shared_stack), register(shared_stack)
    status, body, _ = call(shared_stack, "POST", "/logout", {"refreshToken": victim.refresh},
                           token=caller.access)
    assert (status, body) == (200, {"message": "Logged out successfully"})
    status, unknown, _ = call(shared_stack, "POST", "/logout", {"refreshToken": "f" * 80},
                              token=caller.access)
    assert (status, unknown) == (200, body)
    assert refresh(shared_stack, victim.refresh)[0] == 200


def test_a_viewer_may_log_out(shared_stack: Stack):
    account = register(shared_stack)
    shared_stack.cli("set-role", account.email, "VIEWER")
    viewer = login(shared_stack, account)
    assert claims_of(viewer.access)["role"] == "VIEWER"

    status, body, _ = call(shared_stack, "POST", "/logout", {"refreshToken": viewer.refresh},
                           token=viewer.access)
    assert (status, body) == (200, {"message": "Logged out successfully"})
    assert_error(refresh(shared_stack, viewer.refresh), 401, "UNAUTHORIZED", INVALID_REFRESH)


def test_logout_needs_a_bearer_token_and_a_refresh_token(shared_stack: Stack):
    account = register(shared_stack)
    no_bearer = call(shared_stack, "POST", "/logout", {"refreshToken": account.refresh})
    assert_error(no_bearer, 401, "UNAUTHORIZED")
    assert refresh(shared_stack, account.refresh)[0] == 200  # nothing was revoked

    assert_validation(call(shared_stack, "POST", "/logout", {}, token=account.access), detail(
        "refreshToken", "Missing data for required field.", "invalid_type"))


# --- profile ---------------------------------------------------------------------------------


def test_profile_returns_the_user_with_updated_at(shared_stack: Stack):
    account = register(shared_stack, name="Margaret")
    status, body, _ = call(shared_stack, "GET", "/profile", token=account.access)

    assert status == 200, body
    assert set(body) == USER_FIELDS | {"updatedAt"}
    assert (body["id"], body["email"], body["name"], body["role"], body["active"]) == (
        account.id, account.email, "Margaret", "DEVELOPER", True)
    assert ISO_MS.match(body["createdAt"]) and ISO_MS.match(body["updatedAt"])
    assert body["updatedAt"] >= body["createdAt"]


def test_profile_of_a_user_that_no_longer_exists_is_bad_request(shared_stack: Stack):
    account = register(shared_stack)
    assert sql(shared_stack, "auth", "DELETE FROM users WHERE id = $1",
               uuid.UUID(account.id)) == "DELETE 1"
    response = call(shared_stack, "GET", "/profile", token=account.access)
    assert_error(response, 400, "BAD_REQUEST", "User not found")


# --- email verification ----------------------------------------------------------------------


def test_send_verification_email_answers_alike_and_mails_only_the_unverified(
        shared_stack: Stack, mail_sink: MailSink):
    unverified, _ = registered_with_mail(shared_stack, mail_sink)
    verified, link = registered_with_mail(shared_stack, mail_sink)
    assert get_url(link)[0] == 200
    unknown = new_email("unknown")

    start = mail_sink.count()
    answers = []
    for email in (verified.email, unknown, f" {unverified.email.upper()} "):
        status, body, _ = call(shared_stack, "POST", "/send-verification-email", {"email": email})
        answers.append((status, body))
    assert answers == [(200, {"message": "If email exists, verification email sent"})] * 3

    # The unverified user's mail was asked for last; the mail queue is sent in order.
    mail_sink.wait_for(unverified.email, VERIFY_SUBJECT, timeout=10, after=start)
    recipients = [m["To"] for m in mail_sink.messages[start:]]
    assert verified.email not in recipients and unknown not in recipients


def test_following_the_verification_link_verifies_once(shared_stack: Stack,
                                                       mail_sink: MailSink):
    _, link = registered_with_mail(shared_stack, mail_sink)

    status, body, _ = get_url(link)
    assert (status, body) == (200, {"message": "Email verified successfully"})
    assert_error(get_url(link), 400, "BAD_REQUEST", "Invalid verification token")


def test_a_new_verification_mail_replaces_the_previous_link(shared_stack: Stack,
                                                            mail_sink: MailSink):
    account, first = registered_with_mail(shared_stack, mail_sink)
    start = mail_sink.count()
    call(shared_stack, "POST", "/send-verification-email", {"email": account.email})
    second = verification_link(shared_stack, mail_sink, account.email, start)

    assert second != first
    assert_error(get_url(first), 400, "BAD_REQUEST", "Invalid verification token")
    assert get_url(second)[0] == 200


def test_an_expired_verification_link_is_refused(shared_stack: Stack, mail_sink: MailSink):
    account, link = registered_with_mail(shared_stack, mail_sink)
    assert sql(shared_stack, "auth", "UPDATE users SET verification_token_expires_at ="
               " now() - interval '1 minute' WHERE email = $1", account.email) == "UPDATE 1"
    assert_error(get_url(link), 400, "BAD_REQUEST", "Verification token expired or invalid")


def test_a_verification_token_of_a_verified_user_is_refused(shared_stack: Stack,
                                                            mail_sink: MailSink):
    """Only reachable by a race (a mail requested while the first link is being followed);
    the database is set up as that race would leave it."""
    account, link = registered_with_mail(shared_stack, mail_sink)
    assert get_url(link)[0] == 200
    token = uuid.uuid4().hex
    assert sql(shared_stack, "auth", "UPDATE users SET verification_token_hash = $2,"
               " verification_token_expires_at = now() + interval '1 hour' WHERE email = $1",
               account.email, sha256(token)) == "UPDATE 1"
    response = get_url(f"{shared_stack.gateway_url}{AUTH}/verify-email?token={token}")
    assert_error(response, 400, "BAD_REQUEST", "Email already verified")


def test_verify_email_needs_a_token_query(shared_stack: Stack):
    assert_validation(call(shared_stack, "GET", "/verify-email"), detail(
        "token", "Missing data for required field.", "invalid_type", location="query"))
    assert_validation(call(shared_stack, "GET", "/verify-email?token="), detail(
        "token", "Token is required", "too_small", location="query"))
    assert_error(call(shared_stack, "GET", f"/verify-email?token={uuid.uuid4().hex}"),
                 400, "BAD_REQUEST", "Invalid verification token")


@pytest.mark.parametrize("path", ["/send-verification-email", "/forgot-password"])
def test_email_endpoints_validate_the_email(shared_stack: Stack, path: str):
    body = assert_error(call(shared_stack, "POST", path, {"email": "nope"}), 400,
                        "VALIDATION_ERROR")
    assert [(d["field"], d["location"], d["code"]) for d in body["details"]] == [
        ("email", "body", "invalid_string")]
    assert_validation(call(shared_stack, "POST", path, {}), detail(
        "email", "Missing data for required field.", "invalid_type"))


# --- password reset --------------------------------------------------------------------------


def test_forgot_password_answers_alike_and_mails_a_reset_link(shared_stack: Stack,
                                                             mail_sink: MailSink):
    account, _ = registered_with_mail(shared_stack, mail_sink)
    start = mail_sink.count()
    known = call(shared_stack, "POST", "/forgot-password", {"email": account.email.upper()})
    unknown = call(shared_stack, "POST", "/forgot-password", {"email": new_email("unknown")})

    expected = (200, {"message": "If email exists, reset link has been sent"})
    assert known[:2] == expected and unknown[:2] == expected
    message = mail_sink.wait_for(account.email, RESET_SUBJECT, timeout=10, after=start)
    link = link_in(message, f"{AUTH}/reset-password?token=")
    assert link.startswith(f"{APP_URL}{AUTH}/reset-password?token=")
    token_in(link)


def test_reset_password_sets_the_new_password_and_ends_every_session(shared_stack: Stack,
                                                                     mail_sink: MailSink):
    account, _ = registered_with_mail(shared_stack, mail_sink)
    second_session = login(shared_stack, account)
    start = mail_sink.count()
    call(shared_stack, "POST", "/forgot-password", {"email": account.email})
    token = reset_token(mail_sink, account.email, start)

    status, body, _ = call(shared_stack, "POST", "/reset-password",
                           {"token": token, "newPassword": NEW_PASSWORD})
    assert (status, body) == (200, {"message": "Password reset successfully"})

    old = call(shared_stack, "POST", "/login", {"email": account.email, "password": PASSWORD})
    assert_error(old, 401, "UNAUTHORIZED", INVALID_LOGIN)
    login(shared_stack, account, NEW_PASSWORD)
    for issued_before in (account.refresh, second_session.refresh):
        assert_error(refresh(shared_stack, issued_before), 401, "UNAUTHORIZED", INVALID_REFRESH)

    again = call(shared_stack, "POST", "/reset-password",
                 {"token": token, "newPassword": "Another3Password"})
    assert_error(again, 400, "BAD_REQUEST", "Invalid reset token")


def test_a_new_reset_mail_replaces_the_previous_token(shared_stack: Stack,
                                                     mail_sink: MailSink):
    account, _ = registered_with_mail(shared_stack, mail_sink)
    tokens = []
    for _ in range(2):
        start = mail_sink.count()
        call(shared_stack, "POST", "/forgot-password", {"email": account.email})
        tokens.append(reset_token(mail_sink, account.email, start))

    first = call(shared_stack, "POST", "/reset-password",
                 {"token": tokens[0], "newPassword": NEW_PASSWORD})
    assert_error(first, 400, "BAD_REQUEST", "Invalid reset token")
    second = call(shared_stack, "POST", "/reset-password",
                  {"token": tokens[1], "newPassword": NEW_PASSWORD})
    assert second[0] == 200, second[1]


def test_an_expired_reset_token_is_refused(shared_stack: Stack, mail_sink: MailSink):
    account, _ = registered_with_mail(shared_stack, mail_sink)
    start = mail_sink.count()
    call(shared_stack, "POST", "/forgot-password", {"email": account.email})
    token = reset_token(mail_sink, account.email, start)
    assert sql(shared_stack, "auth", "UPDATE users SET reset_token_expires_at ="
               " now() - interval '1 minute' WHERE email = $1", account.email) == "UPDATE 1"

    response = call(shared_stack, "POST", "/reset-password",
                    {"token": token, "newPassword": NEW_PASSWORD})
    assert_error(response, 400, "BAD_REQUEST", "Reset token expired or invalid")
    login(shared_stack, account)  # the password did not change


def test_reset_password_validates_the_new_password(shared_stack: Stack):
    token = uuid.uuid4().hex
    cases = [
        ("short1A", "Password must be at least 8 characters", "too_small"),
        ("nouppercase1", "Password must contain at least one uppercase letter", "invalid_string"),
        ("NoNumberHere", "Password must contain at least one number", "invalid_string"),
        ("A1" + "x" * 127, "Password must be at most 128 characters", "too_big"),
    ]
    for password, message, code in cases:
        response = call(shared_stack, "POST", "/reset-password",
                        {"token": token, "newPassword": password})
        assert_validation(response, detail("newPassword", message, code))
    assert_validation(call(shared_stack, "POST", "/reset-password", {"newPassword": PASSWORD}),
                      detail("token", "Missing data for required field.", "invalid_type"))
    unknown = call(shared_stack, "POST", "/reset-password",
                   {"token": token, "newPassword": NEW_PASSWORD})
    assert_error(unknown, 400, "BAD_REQUEST", "Invalid reset token")


# --- public endpoints and unknown paths ------------------------------------------------------


def test_public_endpoints_ignore_any_authorization_header(shared_stack: Stack):
    garbage = {"Authorization": "Bearer garbage.not.a.jwt"}
    email = new_email("public")

    status, body, _ = call(shared_stack, "POST", "/register",
                           {"email": email, "password": PASSWORD, "name": "Pub Lic"},
                           headers=garbage)
    assert status == 201, body
    expired = sign(valid_claims(Account(email, PASSWORD, body["user"]["id"], "", ""),
                                iat=1, exp=2))
    for value in ("Bearer garbage.not.a.jwt", f"Bearer {expired}", "Token x", "bearer x"):
        status, session, _ = call(shared_stack, "POST", "/login",
                                  {"email": email, "password": PASSWORD},
                                  headers={"Authorization": value})
        assert status == 200, (value, session)
    assert call(shared_stack, "POST", "/refresh", {"refreshToken": session["refreshToken"]},
                headers=garbage)[0] == 200
    for path in ("/send-verification-email", "/forgot-password"):
        assert call(shared_stack, "POST", path, {"email": email}, headers=garbage)[0] == 200
    assert_error(call(shared_stack, "GET", f"/verify-email?token={uuid.uuid4().hex}",
                      headers=garbage), 400, "BAD_REQUEST", "Invalid verification token")
    assert_error(call(shared_stack, "POST", "/reset-password",
                      {"token": uuid.uuid4().hex, "newPassword": NEW_PASSWORD},
                      headers=garbage), 400, "BAD_REQUEST", "Invalid reset token")


@pytest.mark.parametrize(("method", "path"), [
    ("GET", "/nope"), ("GET", "/login"), ("DELETE", "/profile"), ("POST", "/profile"),
])
def test_unknown_auth_paths_and_methods_are_not_found(shared_stack: Stack, method: str,
                                                      path: str):
    assert_error(call(shared_stack, method, path, {} if method == "POST" else None),
                 404, "NOT_FOUND", "Route not found")



def test_an_incoming_request_id_is_ignored(shared_stack: Stack):
    response = call(shared_stack, "GET", "/profile", headers={"X-Request-Id": "chosen-by-me"})
    body = assert_error(response, 401, "UNAUTHORIZED")
    assert body["requestId"] != "chosen-by-me"

