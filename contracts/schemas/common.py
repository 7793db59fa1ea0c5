"""Schemas shared by several resources: path ids and page/limit queries."""

from __future__ import annotations

from marshmallow import fields, validate

from contracts.validation import RequestSchema, message


def uuid_field() -> fields.UUID:
    return fields.UUID(required=True)


class IdParams(RequestSchema):
    id = uuid_field()


class ProjectIdParams(RequestSchema):
    projectId = uuid_field()


def limit_field(default: int) -> fields.Integer:
    return fields.Integer(load_default=default, validate=validate.Range(
        min=1, max=100, error=message("too_big", "limit must be between 1 and 100")))


def page_field() -> fields.Integer:
    return fields.Integer(load_default=1, validate=validate.Range(
        min=1, error=message("too_small", "page must be at least 1")))
