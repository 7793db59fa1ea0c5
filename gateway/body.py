"""Reading a JSON request body within the size limit (docs/api.md section 1.1)."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from contracts.errors import BadRequest, PayloadTooLarge
from gateway.state import state_of


async def read_json(request: web.Request) -> Any:
    """The parsed body, or None when there is none. 413 over the limit, 400 when malformed."""
    # the application's client_max_size (gateway.app), which request.read() enforces too
    limit = state_of(request).settings.max_body_bytes
    if request.content_length is not None and request.content_length > limit:
        raise PayloadTooLarge()
    if not request.body_exists:
        return None
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise PayloadTooLarge() from None
    if not raw.strip():
        return None
    try:
        document = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise BadRequest("Malformed JSON in request body") from None
    if _deeper_than(document, MAX_DEPTH):
        raise BadRequest(f"JSON in request body is nested deeper than {MAX_DEPTH} levels")
    return document


# No request of the API nests more than a few levels; anything deeper is refused before any
# code walks it.
MAX_DEPTH = 32


def _deeper_than(document: Any, limit: int) -> bool:
    pending: list[tuple[Any, int]] = [(document, 1)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, dict | list):
            if depth > limit:
                return True
            children = item.values() if isinstance(item, dict) else item
            pending.extend((child, depth + 1) for child in children)
    return False
