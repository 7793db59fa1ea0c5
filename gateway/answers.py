"""The check that a service's answer is what its route declares (`Route.response`).

Every answer type refuses fields it does not list (`contracts.schemas.common.Answer`), so a
field a service adds without declaring it (an internal column, a hash) fails here instead of
reaching a client. On where `CHECK_ANSWERS` is (development and tests by default): the whole
end-to-end suite then checks every answer it provokes against the OpenAPI document's types.
"""

from __future__ import annotations

from typing import Any

from pydantic import TypeAdapter
from pydantic import ValidationError as PydanticError

from contracts.errors import InternalError
from contracts.logging import get_logger
from contracts.routes import Route

log = get_logger(__name__)


class AnswerCheck:
    """The declared answer type of one route, compiled once."""

    def __init__(self, route: Route) -> None:
        self._route = route
        self._adapter = TypeAdapter(route.response) if route.response is not None else None

    def __call__(self, status: int, body: Any) -> None:
        """Raise InternalError (500) when a success answer does not fit its type."""
        if self._adapter is None or status != self._route.success_status:
            return
        try:
            self._adapter.validate_python(body)
        except PydanticError as exc:
            log.error("answer does not match its declared type", route=self._route.template,
                      errors=exc.errors(include_url=False, include_input=False))
            raise InternalError("The answer does not match its declared type") from None
