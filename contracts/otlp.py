"""Spans exported over OTLP/HTTP with the OpenTelemetry SDK: the `SpanRecorder` of a process
started with OTEL_EXPORTER_OTLP_ENDPOINT (contracts.spans imports this module only then).

- One `TracerProvider` per process (never installed as OpenTelemetry's global one: nothing
  here reads the SDK's own context), its resource's `service.name` the process's.
- A `BatchSpanProcessor`: ending a span only queues it; the processor's thread sends
  batches (protobuf over HTTP, `<endpoint>/v1/traces`), so the event loop never waits for
  the collector. Its queue is bounded (OTEL_BSP_MAX_QUEUE_SIZE, 2048): spans beyond it are
  dropped, never held.
- The sampler is the SDK's default, parent-based: a caller's `sampled` flag is followed
  (OTEL_TRACES_SAMPLER may choose another); an unsampled span still gets its own id, so the
  trace goes on through the platform unrecorded.
- The SDK reads its other variables itself: OTEL_BSP_* (batching), OTEL_EXPORTER_OTLP_HEADERS,
  _TIMEOUT, _COMPRESSION and _CERTIFICATE (the collector), OTEL_RESOURCE_ATTRIBUTES.
"""

from __future__ import annotations

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import SpanKind, Status, StatusCode

from contracts.spans import Attributes, Span
from contracts.tracing import SAMPLED, TraceContext

INSTRUMENTATION = "gateway-platform"
_NO_PARENT = Context()  # an empty context: a root span, whatever OpenTelemetry's own says


def traces_url(endpoint: str) -> str:
    """OTEL_EXPORTER_OTLP_ENDPOINT is the collector's base URL; traces go to `v1/traces`
    under it (the OTLP exporter specification)."""
    return f"{endpoint.removesuffix('/')}/v1/traces"


# what a stopping process waits for its queued spans to be sent
FLUSH_TIMEOUT_MS = 3000


class OtlpSpan:
    """A started SDK span and the context it gives to what it calls."""

    __slots__ = ("_span", "context", "recording")

    def __init__(self, span: trace.Span, tracestate: str) -> None:
        self._span = span
        ids = span.get_span_context()
        self.context = TraceContext(format(ids.trace_id, "032x"), format(ids.span_id, "016x"),
                                    int(ids.trace_flags) & SAMPLED, tracestate)
        self.recording = span.is_recording()

    @property
    def parent_context(self) -> Context:
        """The SDK context in which this span is the (local) parent."""
        return trace.set_span_in_context(self._span, _NO_PARENT)

    def end(self, *, error: bool = False, attributes: Attributes | None = None) -> None:
        if attributes:
            self._span.set_attributes(attributes)
        if error:
            self._span.set_status(Status(StatusCode.ERROR))
        self._span.end()


class OtlpRecorder:
    recording = True

    def __init__(self, endpoint: str, service_name: str) -> None:
        self._provider = TracerProvider(resource=Resource.create({SERVICE_NAME: service_name}))
        self._provider.add_span_processor(
            BatchSpanProcessor(OTLPSpanExporter(endpoint=traces_url(endpoint))))
        self._tracer = self._provider.get_tracer(INSTRUMENTATION)

    def server(self, name: str, parent: TraceContext | None,
               attributes: Attributes | None = None) -> Span:
        context = _NO_PARENT if parent is None else _remote(parent)
        span = self._tracer.start_span(name, context, SpanKind.SERVER, attributes)
        return OtlpSpan(span, parent.tracestate if parent is not None else "")

    def client(self, name: str, parent: Span, attributes: Attributes | None = None) -> Span:
        context = parent.parent_context if isinstance(parent, OtlpSpan) else \
            _remote(parent.context)
        span = self._tracer.start_span(name, context, SpanKind.CLIENT, attributes)
        return OtlpSpan(span, parent.context.tracestate)

    def close(self) -> None:
        # at most FLUSH_TIMEOUT_MS for what is queued (a collector that is down must not hold
        # the process past its grace period), then the processor's thread stops
        self._provider.force_flush(timeout_millis=FLUSH_TIMEOUT_MS)
        self._provider.shutdown()


def _remote(parent: TraceContext) -> Context:
    """An SDK context whose span is the caller's, as it came over the wire."""
    state = trace.TraceState.from_header([parent.tracestate]) if parent.tracestate else None
    ids = trace.SpanContext(int(parent.trace_id, 16), int(parent.span_id, 16), is_remote=True,
                            trace_flags=trace.TraceFlags(parent.flags), trace_state=state)
    return trace.set_span_in_context(trace.NonRecordingSpan(ids), _NO_PARENT)
