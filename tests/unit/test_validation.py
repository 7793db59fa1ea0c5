import pytest

from contracts.errors import ValidationError
from contracts.schemas.auth import LoginBody, RegisterBody, ResetPasswordBody
from contracts.validation import load


def details(schema, data, location="body"):
    with pytest.raises(ValidationError) as failed:
        load(schema, data, location)
    return {(d["field"], d["code"], d["message"]) for d in failed.value.details}


def test_register_normalises_and_drops_unknown_fields():
    clean = load(RegisterBody, {"email": "  Ada@Example.COM ", "password": "Passw0rdX",
                                  "name": "  Ada  ", "role": "ADMIN", "id": "x"}, "body")
    assert clean.wire() == {"email": "ada@example.com", "password": "Passw0rdX", "name": "Ada"}


def test_password_rules_have_their_messages_and_codes():
    found = details(RegisterBody, {"email": "a@b.co", "password": "abc", "name": "Ada"})
    assert found == {
        ("password", "too_small", "Password must be at least 8 characters"),
        ("password", "invalid_string", "Password must contain at least one uppercase letter"),
        ("password", "invalid_string", "Password must contain at least one number"),
    }
    too_long = details(ResetPasswordBody, {"token": "t", "newPassword": "A1" + "x" * 127})
    assert too_long == {("newPassword", "too_big", "Password must be at most 128 characters")}


def test_types_and_missing_fields_are_invalid_type():
    found = details(LoginBody, {"email": 5, "password": 7})
    assert ("email", "invalid_type", "Not a valid string.") in found
    assert ("password", "invalid_type", "Not a valid string.") in found
    assert details(LoginBody, {}) == {
        ("email", "invalid_type", "Missing data for required field."),
        ("password", "invalid_type", "Missing data for required field."),
    }


def test_bad_email_and_short_name():
    found = details(RegisterBody, {"email": "nope", "password": "Passw0rdX", "name": " A "})
    assert found == {("email", "invalid_string", "Not a valid email address."),
                     ("name", "too_small", "Name must be at least 2 characters")}


def test_a_body_that_is_not_an_object():
    with pytest.raises(ValidationError) as failed:
        load(LoginBody, ["a"], "body")
    assert failed.value.details == [{"field": "", "location": "body",
                                     "message": "Expected an object", "code": "invalid_type"}]


def test_control_characters_are_refused_everywhere():
    with pytest.raises(ValidationError) as failed:
        load(RegisterBody, {"email": "a@b.co", "password": "Passw0rdX", "name": "ab\x00"},
             "body")
    assert failed.value.details == [{"field": "name", "location": "body",
                                     "code": "invalid_string",
                                     "message": "Control characters are not allowed"}]
    assert load(RegisterBody, {"email": "a@b.co", "password": "Passw0rdX",
                                 "name": "Ada\tLovelace"}, "body").name == "Ada\tLovelace"


def test_what_travels_on_keeps_numbers_as_sent_and_leaves_out_what_was_left_out():
    from contracts.schemas.alerts import AlertRuleBody
    from contracts.schemas.projects import RoutePatch

    rule = load(AlertRuleBody, {"name": "a", "service": "s", "metric": "error_rate",
                                "windowSeconds": 60, "threshold": 42, "operator": "gt"},
                "body").wire()
    assert rule["threshold"] == 42 and isinstance(rule["threshold"], int)
    assert rule["coolDownSeconds"] == 300 and rule["severity"] is None  # defaults travel
    assert load(RoutePatch, {"rateLimit": None}, "body").wire() == {"rateLimit": None}
    assert load(RoutePatch, {}, "body").wire() == {}


def test_dates_travel_as_iso_8601_in_utc():
    from contracts.schemas.analytics import AnalyticsQuery

    query = load(AnalyticsQuery, {"from": "2026-12-03T15:05:52.669Z"}, "query").wire()
    assert query["from"] == "2026-12-03T15:05:52.669000Z"
    assert load(AnalyticsQuery, query, "query").wire() == query  # a service reads it again
    with pytest.raises(ValidationError) as failed:
        load(AnalyticsQuery, {"from": "2026-12-03T00:00:01Z", "to": "2026-12-03T00:00:00Z"},
             "query")
    assert failed.value.details == [{"field": "to", "location": "query", "code": "custom",
                                     "message": "to must not be before from"}]
