"""Request validation with marshmallow, reported in the error envelope's `details` with the zod
vocabulary of docs/api.md section 2 (`invalid_type`, `too_small`, `too_big`, `invalid_string`,
`invalid_enum_value`, `custom`).

marshmallow reports messages, not codes, so every message our schemas can produce is declared
here with its code; an undeclared message is reported as `custom`.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from marshmallow import EXCLUDE, Schema, fields, validate
from marshmallow import ValidationError as MarshmallowError

from contracts.errors import ValidationError

_CODES: dict[str, str] = {
    "Missing data for required field.": "invalid_type",
    "Field may not be null.": "invalid_type",
    "Not a valid string.": "invalid_type",
    "Not a valid integer.": "invalid_type",
    "Not a valid number.": "invalid_type",
    "Not a valid boolean.": "invalid_type",
    "Invalid input type.": "invalid_type",
    "Not a valid email address.": "invalid_string",
    "Not a valid UUID.": "invalid_string",
}


def message(code: str, text: str) -> str:
    """Declare a message with its code; returns the text for use in a schema."""
    _CODES[text] = code
    return text


def code_of(text: str) -> str:
    return _CODES.get(text, "custom")


class RequestSchema(Schema):
    """Unknown fields are dropped, never stored (docs/api.md section 1.1)."""

    class Meta:
        unknown = EXCLUDE


class TrimmedString(fields.String):
    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        return super()._deserialize(value, attr, data, **kwargs).strip()


class NormalisedEmail(fields.Email):
    """Trimmed and lower-cased before it is checked (docs/api.md section 3.1)."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        if not isinstance(value, str):
            raise MarshmallowError("Not a valid string.")
        return super()._deserialize(value.strip().lower(), attr, data, **kwargs)


class StrictBoolean(fields.Boolean):
    """A JSON true or false, nothing else (no "yes", 1 or "true" in bodies)."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> bool:
        if not isinstance(value, bool):
            raise MarshmallowError("Not a valid boolean.")
        return value


class WholeNumber(fields.Integer):
    """An integer: a JSON integer or a string of digits ("coerced" in docs/api.md); never a
    fraction, a boolean or an exponent form."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> int:
        if isinstance(value, bool):
            raise MarshmallowError("Not a valid integer.")
        if isinstance(value, float) and not value.is_integer():
            raise MarshmallowError("Not a valid integer.")
        if isinstance(value, str) and not re.fullmatch(r"-?[0-9]{1,15}", value.strip()):
            raise MarshmallowError("Not a valid integer.")
        return super()._deserialize(value, attr, data, **kwargs)


# The integers MongoDB stores as such (BSON int64); pymongo refuses larger ones.
_INT64 = range(-2**63, 2**63)


class JsonNumber(fields.Float):
    """A JSON number (integer or fraction, finite); never a string or a boolean. An integer
    outside int64 becomes a double, as JavaScript reads every JSON number: orjson already
    does so past 2**64, but between 2**63 and 2**64 it returns an int MongoDB cannot store."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise MarshmallowError("Not a valid number.")
        number = super()._deserialize(value, attr, data, **kwargs)
        return value if isinstance(value, int) and value in _INT64 else number  # 42 stays 42


def between(field: str, low: int, high: int) -> list[validate.Validator]:
    """Range with the zod codes: too_small below, too_big above."""
    return [
        validate.Range(min=low, error=message("too_small", f"{field} must be at least {low}")),
        validate.Range(max=high, error=message("too_big", f"{field} must be at most {high}")),
    ]


def length(field: str, *, min: int | None = None, max: int | None = None,
           unit: str = "characters") -> list[validate.Validator]:
    checks: list[validate.Validator] = []
    if min is not None:
        checks.append(validate.Length(min=min, error=message(
            "too_small", f"{field} must be at least {min} {unit}")))
    if max is not None:
        checks.append(validate.Length(max=max, error=message(
            "too_big", f"{field} must be at most {max} {unit}")))
    return checks


class _Contains(validate.Validator):
    """Passes when the regex matches anywhere in the value (validate.Regexp anchors at 0)."""

    def __init__(self, regex: str, error: str) -> None:
        self.needle = re.compile(regex)
        self.error = error

    def __call__(self, value: str) -> str:
        if self.needle.search(value) is None:
            raise MarshmallowError(self.error)
        return value


def pattern(regex: str, text: str) -> validate.Validator:
    return _Contains(regex, message("invalid_string", text))


class UtcDateTime(fields.Field):
    """ISO-8601 date-time in UTC ending in `Z`, fractional seconds allowed, offsets refused
    (docs/api.md section 1.1, as zod's `datetime()`); loads as an aware datetime."""

    # [0-9], not \d: \d also matches other scripts' digits, which int() would read
    _FORMAT = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?Z")
    INVALID = message("invalid_string",
                      "Invalid datetime (ISO-8601 in UTC ending in Z expected)")

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> datetime:
        if not isinstance(value, str):
            raise MarshmallowError("Not a valid string.")
        if not self._FORMAT.fullmatch(value):
            raise MarshmallowError(self.INVALID)
        whole, _, fraction = value[:-1].partition(".")
        try:
            moment = datetime.fromisoformat(whole).replace(tzinfo=UTC)
        except ValueError:
            raise MarshmallowError(self.INVALID) from None
        return moment.replace(microsecond=int((fraction + "000000")[:6]))

    def _serialize(self, value: Any, attr: str | None, obj: Any, **kwargs: Any) -> Any:
        return value


def load(schema: Schema, data: Any, location: str) -> dict[str, Any]:
    """Validate one part of a request; raise the VALIDATION_ERROR envelope with details."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ValidationError(details=[{
            "field": "", "location": location, "message": "Expected an object",
            "code": "invalid_type",
        }])
    bad = list(_control_characters(data, ""))
    if bad:
        raise ValidationError(details=[{
            "field": field, "location": location, "code": "invalid_string",
            "message": "Control characters are not allowed"} for field in bad])
    try:
        return schema.load(data)
    except MarshmallowError as exc:
        raise ValidationError(details=list(_details(exc.messages, location, ""))) from None


def load_list(schema: Schema, data: Any, location: str, max_items: int) -> list[dict[str, Any]]:
    """Validate a JSON array of objects against `schema` (at most `max_items`); details name
    the item index first, e.g. `3.statusCode`."""
    if not isinstance(data, list):
        raise ValidationError(details=[{
            "field": "", "location": location, "message": "Expected an array",
            "code": "invalid_type"}])
    if len(data) > max_items:
        raise ValidationError(details=[{
            "field": "", "location": location, "code": "too_big",
            "message": f"At most {max_items} items are accepted"}])
    details: list[dict[str, Any]] = []
    loaded: list[dict[str, Any]] = []
    for index, item in enumerate(data):
        try:
            loaded.append(load(schema, item, location))
        except ValidationError as exc:
            details += [{**d, "field": f"{index}.{d['field']}" if d["field"] else str(index)}
                        for d in exc.details or []]
    if details:
        raise ValidationError(details=details[:100])  # enough to fix a batch, not a flood
    return loaded


_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def _control_characters(value: Any, path: str):
    """Paths of strings holding control characters (NUL cannot even be stored by PostgreSQL);
    tab, newline and carriage return stay allowed. Iterative: a deeply nested document
    cannot exhaust the interpreter's stack."""
    pending: list[tuple[Any, str]] = [(value, path)]
    while pending:
        item, where = pending.pop()
        if isinstance(item, str):
            if _CONTROL.search(item):
                yield where
        elif isinstance(item, dict):
            pending.extend((child, f"{where}.{key}" if where else str(key))
                           for key, child in reversed(item.items()))
        elif isinstance(item, list):
            pending.extend((child, f"{where}.{index}" if where else str(index))
                           for index, child in reversed(list(enumerate(item))))


def _details(messages: Any, location: str, prefix: str):
    if isinstance(messages, dict):
        for key, value in messages.items():
            name = "" if key == "_schema" else str(key)
            path = f"{prefix}.{name}" if prefix and name else (prefix or name)
            yield from _details(value, location, path)
    elif isinstance(messages, list):
        for item in messages:
            if isinstance(item, (dict, list)):
                yield from _details(item, location, prefix)
            else:
                yield {"field": prefix, "location": location, "message": str(item),
                       "code": code_of(str(item))}
    else:
        yield {"field": prefix, "location": location, "message": str(messages),
               "code": code_of(str(messages))}
