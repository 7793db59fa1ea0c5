"""Auth request and response schemas (docs/api.md section 3)."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from contracts.validation import (
    NormalisedEmail,
    RequestSchema,
    TrimmedString,
    length,
    message,
    pattern,
)

EMAIL = {"required": True, "validate": length("Email", max=255)}


def _password() -> fields.String:
    return fields.String(required=True, validate=[
        *length("Password", min=8, max=128),
        pattern(r"[A-Z]", "Password must contain at least one uppercase letter"),
        pattern(r"[0-9]", "Password must contain at least one number"),
    ])


def _non_empty(field: str) -> fields.String:
    return fields.String(required=True, validate=validate.Length(
        min=1, error=message("too_small", f"{field} is required")))


class RegisterBody(RequestSchema):
    email = NormalisedEmail(**EMAIL)
    password = _password()
    name = TrimmedString(required=True, validate=length("Name", min=2, max=100))


class LoginBody(RequestSchema):
    email = NormalisedEmail(**EMAIL)
    password = _non_empty("Password")


class RefreshBody(RequestSchema):
    refreshToken = _non_empty("Refresh token")


class EmailBody(RequestSchema):
    email = NormalisedEmail(**EMAIL)


class TokenQuery(RequestSchema):
    token = _non_empty("Token")


class ResetPasswordBody(RequestSchema):
    token = _non_empty("Token")
    newPassword = _password()


class User(Schema):
    id = fields.UUID()
    email = fields.String()
    name = fields.String()
    role = fields.String(validate=validate.OneOf(["ADMIN", "DEVELOPER", "VIEWER"]))
    active = fields.Boolean()
    createdAt = fields.String()


class Profile(User):
    updatedAt = fields.String()


class TokenPair(Schema):
    accessToken = fields.String()
    refreshToken = fields.String()


class Session(TokenPair):
    user = fields.Nested(User)


class Registered(Session):
    message = fields.String()


class Message(Schema):
    message = fields.String()
