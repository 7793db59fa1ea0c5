"""The one error envelope (docs/api.md section 2) and the exceptions that map to it.

Any process raises an `ApiError`; RPC carries it as `to_wire()`; the gateway renders
`envelope()`. A 500 never carries an internal message.
"""

from __future__ import annotations

from typing import Any

from contracts.timeutil import iso_now

INTERNAL_MESSAGE = "An unexpected error occurred"


class ApiError(Exception):
    status: int = 500
    code: str = "INTERNAL_ERROR"
    default_message: str = INTERNAL_MESSAGE

    def __init__(
        self,
        message: str | None = None,
        *,
        details: list[dict[str, Any]] | None = None,
        retry_after: int | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.message = message or self.default_message
        self.details = details
        self.retry_after = retry_after
        self.headers = headers or {}
        super().__init__(self.message)

    def to_wire(self) -> dict[str, Any]:
        wire: dict[str, Any] = {"status": self.status, "code": self.code, "message": self.message}
        if self.details is not None:
            wire["details"] = self.details
        if self.retry_after is not None:
            wire["retryAfter"] = self.retry_after
        return wire

    @classmethod
    def from_wire(cls, wire: dict[str, Any]) -> ApiError:
        """Rebuild an error sent by another process; anything unexpected becomes a 500."""
        try:
            status = int(wire["status"])
            code = str(wire["code"])
            message = str(wire["message"])
        except (KeyError, TypeError, ValueError):
            return InternalError()
        if status >= 500 and code == InternalError.code:
            return InternalError()
        known = _KNOWN.get((status, code))
        err = (known or ApiError)(
            message, details=wire.get("details"), retry_after=wire.get("retryAfter")
        )
        if known is None:
            err.status, err.code = status, code
        return err


class ValidationError(ApiError):
    status, code, default_message = 400, "VALIDATION_ERROR", "Request validation failed"


class BadRequest(ApiError):
    status, code, default_message = 400, "BAD_REQUEST", "Bad request"


class Unauthorized(ApiError):
    status, code, default_message = 401, "UNAUTHORIZED", "Unauthorized"


class TokenExpired(ApiError):
    status, code, default_message = 401, "TOKEN_EXPIRED", "Token expired"


class Forbidden(ApiError):
    status, code, default_message = 403, "FORBIDDEN", "Insufficient permissions"


class NotFound(ApiError):
    status, code, default_message = 404, "NOT_FOUND", "Resource not found"


class Conflict(ApiError):
    status, code, default_message = 409, "CONFLICT", "Conflict"


class PayloadTooLarge(ApiError):
    status, code, default_message = 413, "PAYLOAD_TOO_LARGE", "Request body too large"


class TooManyRequests(ApiError):
    status, code, default_message = 429, "TOO_MANY_REQUESTS", "Too many requests"


class InternalError(ApiError):
    pass


class LoopDetected(ApiError):
    """The request has already passed through this gateway deployment (its `Via` names us)."""

    status, code, default_message = 508, "LOOP_DETECTED", "Request loop detected"


class UpstreamError(ApiError):
    """A service or upstream failed (502)."""

    status, code, default_message = 502, "UPSTREAM_ERROR", "Upstream service failed"


class ServiceUnavailable(ApiError):
    """Nobody is there to answer (no consumer, no route, open circuit)."""

    status, code, default_message = 503, "SERVICE_UNAVAILABLE", "Service unavailable"


class UpstreamTimeout(ApiError):
    """Past its deadline (504). docs/api.md section 2 names this code UPSTREAM_ERROR."""

    status, code, default_message = 504, "UPSTREAM_ERROR", "Upstream service timed out"


_KNOWN: dict[tuple[int, str], type[ApiError]] = {
    (cls.status, cls.code): cls for cls in ApiError.__subclasses__() if cls is not InternalError
}


def envelope(error: ApiError, request_id: str | None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "error": error.code,
        "message": error.message if error.status < 500 or error.code != "INTERNAL_ERROR"
        else INTERNAL_MESSAGE,
        "statusCode": error.status,
        "timestamp": iso_now(),
        "requestId": request_id,
    }
    if error.details is not None and error.code == ValidationError.code:
        body["details"] = error.details
    if error.retry_after is not None and error.status == 429:
        body["retryAfter"] = error.retry_after
    return body
