from contracts.errors import (
    INTERNAL_MESSAGE,
    ApiError,
    InternalError,
    NotFound,
    TooManyRequests,
    UpstreamTimeout,
    ValidationError,
    envelope,
)


def test_envelope_has_the_contract_fields():
    body = envelope(NotFound("Project not found"), "rid-1")
    assert body["error"] == "NOT_FOUND"
    assert body["message"] == "Project not found"
    assert body["statusCode"] == 404
    assert body["requestId"] == "rid-1"
    assert body["timestamp"].endswith("Z") and len(body["timestamp"]) == 24
    assert "details" not in body and "retryAfter" not in body


def test_details_only_with_validation_errors():
    details = [{"field": "email", "location": "body", "message": "bad", "code": "invalid_string"}]
    assert envelope(ValidationError(details=details), None)["details"] == details
    assert "details" not in envelope(NotFound(details=details), None)


def test_retry_after_only_on_429():
    assert envelope(TooManyRequests("slow down", retry_after=7), None)["retryAfter"] == 7


def test_internal_errors_never_leak_their_message():
    leaky = InternalError("KeyError: password_hash at line 42")
    assert envelope(leaky, None)["message"] == INTERNAL_MESSAGE


def test_wire_round_trip_keeps_status_code_and_message():
    original = UpstreamTimeout("auth.login did not answer within 5000 ms")
    rebuilt = ApiError.from_wire(original.to_wire())
    assert (rebuilt.status, rebuilt.code, rebuilt.message) == (504, "UPSTREAM_ERROR",
                                                               original.message)


def test_garbage_from_the_wire_becomes_a_500():
    assert ApiError.from_wire({"status": "x"}).status == 500
    assert ApiError.from_wire({}).code == "INTERNAL_ERROR"
    assert ApiError.from_wire({"status": 500, "code": "INTERNAL_ERROR",
                               "message": "stack"}).message == INTERNAL_MESSAGE
def test_known_errors_come_back_as_their_own_class():
    from contracts.errors import NotFound, ServiceUnavailable
    assert isinstance(ApiError.from_wire(NotFound("x").to_wire()), NotFound)
    assert isinstance(ApiError.from_wire(ServiceUnavailable().to_wire()), ServiceUnavailable)
