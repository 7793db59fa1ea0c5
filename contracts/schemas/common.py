"""What several resources share: path ids and page/limit queries; the base of every answer
and the field types answers are read from stored rows with."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Annotated, Any, Self
from uuid import UUID

from pydantic import MISSING, BaseModel, BeforeValidator, ConfigDict
from pydantic.alias_generators import to_camel

from contracts.timeutil import to_iso
from contracts.validation import RequestModel, WholeNumber, between, checks

Page = Annotated[WholeNumber, checks(between("page", 1, 1_000_000))]
Limit = Annotated[WholeNumber, checks(between("limit", 1, 100))]


class IdParams(RequestModel):
    id: UUID


class ProjectIdParams(RequestModel):
    project_id: UUID


class Answer(BaseModel):
    """A public answer (the OpenAPI response schema); field names snake_case like the stored
    columns they are read from, camelCase on the wire.

    `view(record)` reads exactly the declared fields of a stored row, a dict or an object
    (by attribute): a record's other fields (a key's hash, a user's password hash) are never
    read, so a view cannot leak them. Validating a finished answer refuses extra fields, so
    an answer built by hand with a field the type does not list fails (the gateway's
    `CHECK_ANSWERS` holds every answer to this)."""

    model_config = ConfigDict(extra="forbid", alias_generator=to_camel, validate_by_name=True,
                              validate_by_alias=True, serialize_by_alias=True)

    @classmethod
    def view(cls, record: Any, **values: Any) -> Self:
        """This answer's fields of `record` (by their snake_case names), `values` first."""
        # a dict or a database row (asyncpg's Record is no Mapping, but has keys and get)
        read = (record.get if isinstance(record, Mapping) or hasattr(record, "keys")
                else lambda name, default: getattr(record, name, default))
        fields = {name: values[name] if name in values else read(name, MISSING)
                  for name in cls.model_fields}
        return cls.model_validate({k: v for k, v in fields.items() if v is not MISSING})


def _text_of(value: Any) -> Any:
    """Ids as stored (a UUID) are strings in an answer."""
    return str(value) if isinstance(value, UUID) else value


def _moment_of(value: Any) -> Any:
    """Moments as stored (a datetime) are ISO-8601 UTC strings with milliseconds."""
    return to_iso(value) if isinstance(value, datetime) else value


Id = Annotated[str, BeforeValidator(_text_of)]
Moment = Annotated[str, BeforeValidator(_moment_of)]


class Message(Answer):
    message: str
