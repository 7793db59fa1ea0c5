"""Typed keys of the values that steps leave on the request for later steps."""

from __future__ import annotations

from typing import Any

from aiohttp import web

REQUEST_ID = web.RequestKey("request_id", str)
# time.perf_counter() when the request entered the gateway
STARTED = web.RequestKey("started", float)
# absolute Unix ms after which nobody waits for the answer
DEADLINE_MS = web.RequestKey("deadline_ms", int)
# the authenticated identity, when there is one
CALLER = web.RequestKey("caller", dict[str, Any])
# the validated (or, without a schema, parsed) JSON body and query
BODY = web.RequestKey("body", object)
QUERY = web.RequestKey("query", dict[str, Any])
PARAMS = web.RequestKey("params", dict[str, Any])
