"""Auth requests and answers (docs/api.md section 3)."""

from __future__ import annotations

from typing import Annotated, Literal

from contracts.schemas.common import Answer, Id, Moment
from contracts.validation import Email, RequestModel, Trimmed, checks, length, pattern

EmailAddress = Annotated[Email, checks(length("Email", max=255))]
Password = Annotated[str, checks(
    length("Password", min=8, max=128),
    pattern(r"[A-Z]", "Password must contain at least one uppercase letter"),
    pattern(r"[0-9]", "Password must contain at least one number"),
)]


def _required(field: str) -> object:
    return checks(length(field, min=1, too_short=f"{field} is required"))


class RegisterBody(RequestModel):
    email: EmailAddress
    password: Password
    name: Annotated[str, Trimmed, checks(length("Name", min=2, max=100))]


class LoginBody(RequestModel):
    email: EmailAddress
    password: Annotated[str, _required("Password")]


class RefreshBody(RequestModel):
    refresh_token: Annotated[str, _required("Refresh token")]


class EmailBody(RequestModel):
    email: EmailAddress


class TokenQuery(RequestModel):
    token: Annotated[str, _required("Token")]


class ResetPasswordBody(RequestModel):
    token: Annotated[str, _required("Token")]
    new_password: Password


Role = Literal["ADMIN", "DEVELOPER", "VIEWER"]


class User(Answer):
    """`User` of docs/api.md section 3.3: never the password hash nor the one-time tokens."""

    id: Id
    email: str
    name: str
    role: Role
    active: bool
    created_at: Moment


class Profile(User):
    updated_at: Moment


class TokenPair(Answer):
    access_token: str
    refresh_token: str


class Session(TokenPair):
    user: User


class Registered(Session):
    message: str
