"""Projects, API keys and route configs (docs/api.md sections 4, 5, 6)."""

from __future__ import annotations

from marshmallow import ValidationError, fields, validate, validates_schema

from contracts.names import SERVICES
from contracts.schemas.common import limit_field, page_field
from contracts.validation import (
    RequestSchema,
    StrictBoolean,
    TrimmedString,
    WholeNumber,
    between,
    length,
    message,
    pattern,
)

SERVICE_NAMES = [info.public_name for info in SERVICES.values()]
METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"]


class ProjectBody(RequestSchema):
    name = TrimmedString(required=True, validate=length("Name", min=2, max=100))
    description = TrimmedString(allow_none=True, validate=length("Description", max=500))


class ProjectPatch(RequestSchema):
    name = TrimmedString(validate=length("Name", min=2, max=100))
    description = TrimmedString(allow_none=True, validate=length("Description", max=500))


class ProjectListQuery(RequestSchema):
    page = page_field()
    limit = limit_field(20)
    sort = fields.String(load_default="createdAt", validate=validate.OneOf(
        ["name", "createdAt", "updatedAt"],
        error=message("invalid_enum_value", "sort must be one of name, createdAt, updatedAt")))
    order = fields.String(load_default="desc", validate=validate.OneOf(
        ["asc", "desc"], error=message("invalid_enum_value", "order must be asc or desc")))


class KeyBody(RequestSchema):
    name = TrimmedString(required=True, validate=length("Name", min=1, max=100))
    expiresInDays = WholeNumber(allow_none=True, validate=between("expiresInDays", 1, 365))


class KeyVerifyQuery(RequestSchema):
    hash = fields.String(required=True, validate=pattern(
        r"^[0-9a-f]{64}$", "hash must be 64 lowercase hex characters"))


def _method(**kwargs: object) -> fields.String:
    return fields.String(validate=validate.OneOf(METHODS, error=message(
        "invalid_enum_value", "method must be one of GET, POST, PUT, PATCH, DELETE")), **kwargs)


PATH_RULES = [
    *length("Path", min=1, max=200),
    pattern(r"^/", "Path must start with /"),
    pattern(r"^[^?#*\s]*$", "Path must not contain ?, #, * or whitespace"),
    pattern(r"^(?!.*//)", "Path must not contain empty segments (//)"),
    pattern(r"^(/(:[A-Za-z_][A-Za-z0-9_]*|[^/:]*))*$",
            "A path parameter is :name (a letter or _ then letters, digits or _)"),
]


class RouteBody(RequestSchema):
    path = TrimmedString(required=True, validate=PATH_RULES)
    method = _method(required=True)
    service = fields.String(allow_none=True, validate=validate.OneOf(
        SERVICE_NAMES, error=message("invalid_enum_value",
                                     "service must be one of " + ", ".join(SERVICE_NAMES))))
    upstreamUrl = fields.String(allow_none=True, validate=[
        *length("upstreamUrl", min=1, max=2048),
        pattern(r"^\S+$", "upstreamUrl must not contain whitespace")])
    rateLimit = WholeNumber(allow_none=True, validate=between("rateLimit", 1, 10000))
    cacheTTL = WholeNumber(allow_none=True, validate=between("cacheTTL", 0, 86400))
    authRequired = StrictBoolean()

    @validates_schema
    def one_target(self, data: dict, **_: object) -> None:
        if bool(data.get("service")) == bool(data.get("upstreamUrl")):
            raise ValidationError(
                message("custom", "Exactly one of service and upstreamUrl is required"),
                "service")


class RoutePatch(RouteBody):
    """Every field optional; `null` clears rateLimit and cacheTTL; `active` only here."""

    path = TrimmedString(validate=PATH_RULES)
    method = _method()
    active = StrictBoolean()

    @validates_schema
    def one_target(self, data: dict, **_: object) -> None:
        if data.get("service") and data.get("upstreamUrl"):
            raise ValidationError(
                message("custom", "Exactly one of service and upstreamUrl is required"),
                "service")
