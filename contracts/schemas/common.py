"""Schemas shared by several resources: path ids and page/limit queries."""

from __future__ import annotations

from marshmallow import fields

from contracts.validation import RequestSchema, WholeNumber, between


def uuid_field() -> fields.UUID:
    return fields.UUID(required=True)


class IdParams(RequestSchema):
    id = uuid_field()


class ProjectIdParams(RequestSchema):
    projectId = uuid_field()


def limit_field(default: int) -> fields.Integer:
    return WholeNumber(load_default=default, validate=between("limit", 1, 100))


def page_field() -> fields.Integer:
    return WholeNumber(load_default=1, validate=between("page", 1, 1_000_000))
