"""The spans a process records, and the span the running task works in.

Every process has one `SpanRecorder` (like its logging set-up, process-wide):
- off (the default, `OTEL_EXPORTER_OTLP_ENDPOINT` empty): `UNRECORDED`. No OpenTelemetry
  object exists (contracts.otlp is never imported); a server span is a new span id in the
  caller's trace (or a new trace), a client span is its parent passed on as it is, and
  `end` does nothing;
- on: `contracts.otlp.OtlpRecorder` (the OpenTelemetry SDK), installed by `span_export`
  for the process's lifetime, flushed and shut down when the process stops.

Who starts what: the gateway a SERVER span per request (parented on the client's
`traceparent`) and a CLIENT span per upstream call and per RPC; a service a SERVER span per
RPC whose message carries a `traceparent` (untraced calls, such as health probes and the
gateway's configuration loads, record none), and a CLIENT span per RPC it makes while
handling one.

`CURRENT` is the span the running task works for: the gateway sets it for a request, the
RPC server for a call it handles. `contracts.rpc.RpcClient` reads it to put a `traceparent`
on the requests it sends, so a service's calls to another carry the trace too.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from contextvars import ContextVar
from typing import Protocol

import structlog

from contracts.settings import Settings
from contracts.tracing import TraceContext

# what a span attribute may hold (OpenTelemetry's primitive attribute values)
AttributeValue = str | bool | int | float
Attributes = Mapping[str, AttributeValue]


class Span(Protocol):
    @property
    def context(self) -> TraceContext:
        """This span's ids: what the process sends on in `traceparent`."""
        ...

    @property
    def recording(self) -> bool:
        """Whether anything is recorded (attributes are worth computing)."""
        ...

    def end(self, *, error: bool = False, attributes: Attributes | None = None) -> None:
        """Done: with these attributes, and an error status when `error`."""
        ...


class SpanRecorder(Protocol):
    @property
    def recording(self) -> bool:
        """Whether spans are recorded at all (attributes are worth computing)."""
        ...

    def server(self, name: str, parent: TraceContext | None,
               attributes: Attributes | None = None) -> Span:
        """A span for work done for a caller whose context is `parent` (from the wire), or
        the root of a new trace."""
        ...

    def client(self, name: str, parent: Span, attributes: Attributes | None = None) -> Span:
        """A span for a call this process makes while working in `parent`."""
        ...

    def close(self) -> None:
        """Send what is recorded and stop (blocking: run it off the event loop)."""
        ...


class Unrecorded:
    """A span that is not recorded: its ids only."""

    __slots__ = ("context",)
    recording = False

    def __init__(self, context: TraceContext) -> None:
        self.context = context

    def end(self, *, error: bool = False, attributes: Attributes | None = None) -> None:
        pass


class NoRecorder:
    """Records nothing; the ids still flow, so logs and upstreams see one trace."""

    recording = False

    def server(self, name: str, parent: TraceContext | None,
               attributes: Attributes | None = None) -> Span:
        return Unrecorded(parent.child() if parent is not None else TraceContext.start())

    def client(self, name: str, parent: Span, attributes: Attributes | None = None) -> Span:
        return parent  # no span of its own: the callee's parent is the span we work in

    def close(self) -> None:
        pass


UNRECORDED = NoRecorder()
_recorder: SpanRecorder = UNRECORDED

CURRENT: ContextVar[Span | None] = ContextVar("current_span", default=None)


def recorder() -> SpanRecorder:
    return _recorder


@asynccontextmanager
async def span_export(settings: Settings, process: str) -> AsyncIterator[SpanRecorder]:
    """The process's recorder while the block runs: spans sent over OTLP/HTTP when
    OTEL_EXPORTER_OTLP_ENDPOINT is set (service.name: OTEL_SERVICE_NAME, else `process`),
    otherwise none. On exit what is buffered is sent (within the exporter's timeout) and
    the SDK stops; its blocking shutdown runs in a thread, never on the event loop."""
    global _recorder
    if not settings.otel_exporter_otlp_endpoint:
        yield UNRECORDED
        return
    from contracts.otlp import OtlpRecorder  # the SDK is imported only when exporting

    exporting = OtlpRecorder(settings.otel_exporter_otlp_endpoint,
                             settings.otel_service_name or process)
    _recorder = exporting
    try:
        yield exporting
    finally:
        _recorder = UNRECORDED
        await asyncio.to_thread(exporting.close)


@contextmanager
def working_in(span: Span) -> Iterator[None]:
    """`span` is the running task's (`CURRENT`), and its trace id is on every log line the
    block writes; both as they were afterwards."""
    token = CURRENT.set(span)
    try:
        with structlog.contextvars.bound_contextvars(trace_id=span.context.trace_id):
            yield
    finally:
        CURRENT.reset(token)
