"""Request validation with pydantic, reported in the error envelope's `details` with the zod
vocabulary of docs/api.md section 2 (`invalid_type`, `too_small`, `too_big`, `invalid_string`,
`invalid_enum_value`, `custom`).

A request part is a `RequestModel`: field names are snake_case in Python and camelCase on the
wire (only the wire names are accepted, unknown fields are dropped). Every constraint with a
message of its own is a `Rule`; a field's rules all run, so a short password without a digit
gets both messages. pydantic's own errors (a missing field, a string where a number belongs)
are translated to the messages clients have always read (`_BUILT_IN`).

`MISSING` (pydantic's sentinel) is the default of a field that may be left out and has no
default: it is never written by `wire()`, so a PATCH's absent field stays absent and its
`null` stays null.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, TypeGuard, TypeVar

from pydantic import (
    MISSING,
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    GetCoreSchemaHandler,
    GetJsonSchemaHandler,
    PlainSerializer,
    PlainValidator,
    Strict,
    WithJsonSchema,
)
from pydantic import ValidationError as PydanticError
from pydantic.alias_generators import to_camel
from pydantic_core import PydanticCustomError, core_schema

from contracts.errors import ValidationError

# --- rules: one constraint, one code, one message --------------------------------------------

Failure = tuple[str, str]  # (code, message)


@dataclass(frozen=True, eq=False)
class Rule:
    """One constraint of a field: `check` returns a failure or None; `schema` is what the
    constraint says in the OpenAPI document (minLength, maximum, enum, ...)."""

    check: Callable[[Any], Failure | None]
    schema: dict[str, Any]


def between(field: str, low: int, high: int) -> tuple[Rule, ...]:
    """A range with the zod codes: too_small below, too_big above."""
    return (
        Rule(lambda v: ("too_small", f"{field} must be at least {low}") if v < low else None,
             {"minimum": low}),
        Rule(lambda v: ("too_big", f"{field} must be at most {high}") if v > high else None,
             {"maximum": high}),
    )


def at_least(field: str, low: int) -> tuple[Rule, ...]:
    return (Rule(lambda v: ("too_small", f"{field} must be at least {low}") if v < low else None,
                 {"minimum": low}),)


def length(field: str, *, min: int | None = None, max: int | None = None,
           unit: str = "characters", too_short: str | None = None) -> tuple[Rule, ...]:
    """Length bounds; `too_short` replaces the message below `min` ("Token is required")."""
    rules: list[Rule] = []
    if min is not None:
        short = too_short or f"{field} must be at least {min} {unit}"
        rules.append(Rule(lambda v: ("too_small", short) if len(v) < min else None,
                          {"minLength": min}))
    if max is not None:
        long = f"{field} must be at most {max} {unit}"
        rules.append(Rule(lambda v: ("too_big", long) if len(v) > max else None,
                          {"maxLength": max}))
    return tuple(rules)


def pattern(regex: str, text: str) -> tuple[Rule, ...]:
    """Passes when `regex` matches anywhere in the value (anchor it to match the whole)."""
    needle = re.compile(regex)
    return (Rule(lambda v: None if needle.search(v) else ("invalid_string", text),
                 {"pattern": regex}),)


def one_of(field: str, choices: tuple[str, ...], text: str | None = None) -> tuple[Rule, ...]:
    message = text or f"{field} must be one of {', '.join(choices)}"
    return (Rule(lambda v: None if v in choices else ("invalid_enum_value", message),
                 {"enum": list(choices)}),)


@dataclass(frozen=True, eq=False)
class Checked:
    """Annotation running every rule of a field after its type is checked; all failures are
    reported (pydantic stops at a field's first failing validator, marshmallow-era clients
    read every message)."""

    rules: tuple[Rule, ...]

    def __get_pydantic_core_schema__(self, source: Any,
                                     handler: GetCoreSchemaHandler) -> core_schema.CoreSchema:
        return core_schema.no_info_after_validator_function(self._check, handler(source))

    def __get_pydantic_json_schema__(self, schema: core_schema.CoreSchema,
                                     handler: GetJsonSchemaHandler) -> dict[str, Any]:
        json_schema = handler(schema)
        for rule in self.rules:
            for keyword, value in rule.schema.items():
                if keyword == "pattern" and "pattern" in json_schema:
                    # a second pattern must hold as well: JSON Schema says so with allOf
                    json_schema.setdefault("allOf", []).append({"pattern": value})
                else:
                    json_schema[keyword] = value
        return json_schema

    def _check(self, value: Any) -> Any:
        failures = [failure for rule in self.rules if (failure := rule.check(value))]
        if failures:
            raise PydanticCustomError("rules", "{first}",
                                      {"first": failures[0][1], "failures": failures})
        return value


def checks(*groups: tuple[Rule, ...]) -> Checked:
    return Checked(tuple(rule for group in groups for rule in group))


def failure(code: str, message: str, field: str | None = None) -> PydanticCustomError:
    """An error for a model validator to raise; `field` names where it is reported (a model
    validator's own location is the whole object)."""
    return PydanticCustomError(code, message, {"field": field} if field is not None else None)


# --- field types -----------------------------------------------------------------------------


def _invalid(message: str, code: str = "invalid_type") -> PydanticCustomError:
    return PydanticCustomError(code, message)


def _whole_number(value: Any) -> Any:
    """A JSON integer or a string of digits ("coerced" in docs/api.md); never a fraction, a
    boolean or an exponent form."""
    if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
        raise _invalid("Not a valid integer.")
    if isinstance(value, str) and not re.fullmatch(r"-?[0-9]{1,15}", value.strip()):
        raise _invalid("Not a valid integer.")
    return value


# The integers MongoDB stores as such (BSON int64); pymongo refuses larger ones.
_INT64 = range(-2**63, 2**63)


def _json_number(value: Any) -> int | float:
    """A JSON number (integer or fraction, finite); never a string or a boolean. An integer
    outside int64 becomes a double, as JavaScript reads every JSON number: orjson already
    does so past 2**64, but between 2**63 and 2**64 it returns an int MongoDB cannot store."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _invalid("Not a valid number.")
    if isinstance(value, float) and not math.isfinite(value):
        raise _invalid("Special numeric values (nan or infinity) are not permitted.", "custom")
    if isinstance(value, int) and value not in _INT64:
        return float(value)
    return value  # 42 stays 42


# [0-9], not \d: \d also matches other scripts' digits, which int() would read
_DATE_TIME = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?Z")
INVALID_DATE_TIME = "Invalid datetime (ISO-8601 in UTC ending in Z expected)"


def parse_utc_date_time(value: Any) -> datetime:
    """ISO-8601 date-time in UTC ending in `Z`, fractional seconds allowed, offsets refused
    (docs/api.md section 1.1, as zod's `datetime()`); an aware datetime."""
    if not isinstance(value, str):
        raise _invalid("Not a valid string.")
    if not _DATE_TIME.fullmatch(value):
        raise _invalid(INVALID_DATE_TIME, "invalid_string")
    whole, _, fraction = value[:-1].partition(".")
    try:
        moment = datetime.fromisoformat(whole).replace(tzinfo=UTC)
    except ValueError:
        raise _invalid(INVALID_DATE_TIME, "invalid_string") from None
    return moment.replace(microsecond=int((fraction + "000000")[:6]))


def _utc_iso(moment: datetime) -> str:
    """The wire form: what `parse_utc_date_time` reads back (a service decodes it again)."""
    return moment.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _query_boolean(value: Any) -> Any:
    """`true` or `false` in a query string, nothing else (a boolean already: the wire form a
    service decodes again)."""
    if isinstance(value, bool):
        return value
    if value == "true":
        return True
    if value == "false":
        return False
    raise _invalid("Not a valid boolean.")


# A local part, an @, and a domain of dot-separated labels ending in letters
_EMAIL = re.compile(r"[^@\s\"(),:;<>\[\\\]]+@(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?\.)+"
                    r"[A-Za-z]{2,63}")


def normal_email(value: object) -> str | None:
    """`value` as registration would store it (trimmed, lower-cased, at most 255 characters),
    None when it is not an address (e.g. what an identity provider asserts)."""
    if not isinstance(value, str):
        return None
    value = value.strip().lower()
    return value if len(value) <= 255 and _EMAIL.fullmatch(value) else None


def _email(value: str) -> str:
    """Trimmed and lower-cased before it is checked (docs/api.md section 3.1)."""
    value = value.strip().lower()
    if not _EMAIL.fullmatch(value):
        raise _invalid("Not a valid email address.", "invalid_string")
    return value


Trimmed = AfterValidator(str.strip)
WholeNumber = Annotated[int, BeforeValidator(_whole_number)]
StrictWholeNumber = Annotated[int, Strict()]  # a JSON integer only, never a string of digits
# the number as read, an integer kept an integer (a float type would write 42 as 42.0)
JsonNumber = Annotated[float, PlainValidator(_json_number), PlainSerializer(lambda number: number),
                       WithJsonSchema({"type": "number"})]
UtcDateTime = Annotated[datetime, PlainValidator(parse_utc_date_time),
                        PlainSerializer(_utc_iso, return_type=str, when_used="json"),
                        WithJsonSchema({"type": "string", "format": "date-time"})]
StrictBoolean = Annotated[bool, Strict()]  # a JSON true or false (no "yes", 1 or "true")
QueryBoolean = Annotated[bool, BeforeValidator(_query_boolean)]
Email = Annotated[str, AfterValidator(_email), WithJsonSchema({"type": "string",
                                                               "format": "email"})]


class RequestModel(BaseModel):
    """A request's body, query or path parameters. Unknown fields are dropped, never stored
    (docs/api.md section 1.1); only the wire (camelCase) names are read."""

    model_config = ConfigDict(
        extra="ignore", frozen=True, alias_generator=to_camel, validate_by_alias=True,
        validate_by_name=False, serialize_by_alias=True)

    def wire(self) -> dict[str, Any]:
        """What travels on: wire names, JSON types, fields left out stay out."""
        return self.model_dump(mode="json")

    @classmethod
    def given(cls, value: T | MISSING) -> TypeGuard[T]:
        """True when a field was sent with a truthy value (`MISSING` is truthy)."""
        return value is not MISSING and bool(value)


def or_none(value: T | MISSING) -> T | None:
    """A request field's value, None when it was left out (a filter not given, a column
    stored as null)."""
    return None if value is MISSING else value


# --- loading -----------------------------------------------------------------------------------


M = TypeVar("M", bound=RequestModel)
T = TypeVar("T")


def load(model: type[M], data: Any, location: str) -> M:
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
        return model.model_validate(data)
    except PydanticError as exc:
        raise ValidationError(details=list(_details(exc, location))) from None


def load_list(model: type[M], data: Any, location: str, max_items: int) -> list[M]:
    """Validate a JSON array of objects against `model` (at most `max_items`); details name
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
    loaded: list[M] = []
    for index, item in enumerate(data):
        try:
            loaded.append(load(model, item, location))
        except ValidationError as exc:
            details += [{**d, "field": f"{index}.{d['field']}" if d["field"] else str(index)}
                        for d in exc.details or []]
    if details:
        raise ValidationError(details=details[:100])  # enough to fix a batch, not a flood
    return loaded


_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def _control_characters(value: Any, path: str) -> Iterator[str]:
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


# pydantic's error types -> (code, message) as clients have always read them
_BUILT_IN: dict[str, Failure] = {
    "missing": ("invalid_type", "Missing data for required field."),
    "string_type": ("invalid_type", "Not a valid string."),
    "int_type": ("invalid_type", "Not a valid integer."),
    "int_parsing": ("invalid_type", "Not a valid integer."),
    "int_from_float": ("invalid_type", "Not a valid integer."),
    "float_type": ("invalid_type", "Not a valid number."),
    "float_parsing": ("invalid_type", "Not a valid number."),
    "bool_type": ("invalid_type", "Not a valid boolean."),
    "bool_parsing": ("invalid_type", "Not a valid boolean."),
    "uuid_type": ("invalid_string", "Not a valid UUID."),
    "uuid_parsing": ("invalid_string", "Not a valid UUID."),
    "model_type": ("invalid_type", "Invalid input type."),
    "model_attributes_type": ("invalid_type", "Invalid input type."),
    "dict_type": ("invalid_type", "Invalid input type."),
    "list_type": ("invalid_type", "Not a valid list."),
}
_NULL = ("invalid_type", "Field may not be null.")
_CODES = frozenset({"invalid_type", "too_small", "too_big", "invalid_string",
                    "invalid_enum_value", "custom"})


def _details(exc: PydanticError, location: str) -> Iterator[dict[str, Any]]:
    for error in exc.errors(include_url=False):
        field = ".".join(str(part) for part in error["loc"])
        context = error.get("ctx") or {}
        kind = error["type"]
        if kind == "rules":
            failures = context["failures"]
        elif kind in _CODES:
            failures = [(kind, error["msg"])]
            field = context.get("field") or field
        elif kind != "missing" and error.get("input", ...) is None:
            failures = [_NULL]
        else:
            failures = [_BUILT_IN.get(kind, ("custom", error["msg"]))]
        for code, message in failures:
            yield {"field": field, "location": location, "message": message, "code": code}
