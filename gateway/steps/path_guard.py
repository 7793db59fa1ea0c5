"""Refuse request paths that could leave an upstream's base path (docs/api.md section 6.4): a `.`
or `..` segment, raw or percent-encoded, or an encoded `/` or `\\`. Checked on the raw path,
before any other step, so no later decoding can turn it into one."""

from __future__ import annotations

from urllib.parse import unquote

from aiohttp import web

from contracts.errors import BadRequest
from gateway.context import RequestContext

_ENCODED_SEPARATORS = ("%2f", "%5c")


def unsafe_path(raw_path: str) -> bool:
    path = raw_path.split("?", 1)[0]
    if "." not in path and "%" not in path:  # most requests: nothing to look at
        return False
    lowered = path.lower()
    if any(separator in lowered for separator in _ENCODED_SEPARATORS):
        return True
    return any(unquote(segment) in (".", "..") for segment in path.split("/"))


def path_guard(_context: RequestContext, request: web.Request) -> None:
    if unsafe_path(request.raw_path):
        raise BadRequest("Request path must not contain '.' or '..' segments or encoded '/'")
