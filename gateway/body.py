"""Reading a JSON request body within the size limit (API.md section 1.1)."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from contracts.errors import BadRequest, PayloadTooLarge


async def read_json(request: web.Request) -> Any:
    """The parsed body, or None when there is none. 413 over the limit, 400 when malformed."""
    limit = request._client_max_size
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
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise BadRequest("Malformed JSON in request body") from None
