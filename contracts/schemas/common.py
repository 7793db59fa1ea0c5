"""Request parts shared by several resources: path ids and page/limit queries."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel

from contracts.validation import RequestModel, WholeNumber, between, checks

Page = Annotated[WholeNumber, checks(between("page", 1, 1_000_000))]
Limit = Annotated[WholeNumber, checks(between("limit", 1, 100))]


class IdParams(RequestModel):
    id: UUID


class ProjectIdParams(RequestModel):
    project_id: UUID


class Answer(BaseModel):
    """A public answer (the OpenAPI response schema). Extra fields are refused, so a test
    that validates real answers against their declared type fails on any field the type does
    not list: an internal field cannot reach a client unnoticed."""

    model_config = ConfigDict(extra="forbid", alias_generator=to_camel, validate_by_name=True,
                              validate_by_alias=True, serialize_by_alias=True)


class Message(Answer):
    message: str
