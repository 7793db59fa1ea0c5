"""Step 2' (right after the request context, before anything logs): the request's trace,
W3C Trace Context (contracts.tracing), for every request but the exempt traffic.

- The caller's `traceparent` and `tracestate` are read; absent, repeated or invalid ones
  start a new trace (never a 4xx: a trace header only correlates, it grants nothing).
- The gateway's own span of the request (contracts.spans: a SERVER span when spans are
  exported, else just a new span id in the caller's trace) is the request's: its trace id
  is bound into structlog's contextvars, so every JSON line logged for the request carries
  `trace_id`, and goes into `request.completed` as `traceId`; it is `CURRENT` while the
  request runs, so every RPC it makes carries it (contracts.rpc); the upstream proxy sends
  it on (`traceparent`, with the caller's `tracestate` unchanged).
- Every answer to the request carries `traceresponse` (the W3C Trace Context Level 2
  draft's header): `00-<trace id>-<the gateway's span id>-<flags>`, so a client that sent
  no `traceparent` learns the trace its request got.
"""

from __future__ import annotations

from contextvars import Token

import structlog
from aiohttp import web

from contracts.spans import CURRENT, Attributes, AttributeValue, Span, recorder
from contracts.tracing import TRACEPARENT, TRACERESPONSE, TRACESTATE, received
from gateway.context import RequestContext


def open_trace(context: RequestContext, request: web.Request) -> Token[Span | None]:
    """The request's span, current until `close_trace` (given the token returned here)."""
    headers = request.headers
    parents = headers.getall(TRACEPARENT, ())
    caller = received(parents, headers.getall(TRACESTATE, ())) if parents else None
    spans = recorder()
    matched = context.matched_path
    # named as OpenTelemetry's HTTP conventions say: method and route template, or the
    # method alone for a request that matched no route
    name = context.template if matched is not None else request.method
    span = spans.server(name, caller, _attributes(context, request) if spans.recording
                        else None)
    context.span = span
    trace = span.context
    structlog.contextvars.bind_contextvars(trace_id=trace.trace_id)
    context.response_headers[TRACERESPONSE] = trace.traceparent
    return CURRENT.set(span)


def close_trace(context: RequestContext, current: Token[Span | None], status: int) -> None:
    """The request is answered with `status`: its span ends (an error from 500 on)."""
    CURRENT.reset(current)
    span = context.span
    if span is not None:
        span.end(error=status >= 500,
                 attributes={"http.response.status_code": status} if span.recording else None)


def _attributes(context: RequestContext, request: web.Request) -> Attributes:
    attributes: dict[str, AttributeValue] = {
        "http.request.method": request.method, "gateway.request_id": context.request_id}
    if context.matched_path is not None:
        attributes["http.route"] = context.matched_path
    return attributes
