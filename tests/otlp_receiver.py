"""A small OTLP/HTTP trace receiver of the tests' own: what a collector at
OTEL_EXPORTER_OTLP_ENDPOINT receives, decoded (`ExportTraceServiceRequest` protobuf, from
opentelemetry-proto) into plain spans the tests can look at."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from tests.e2e.helpers import LoopbackServer, eventually

KINDS = {Span.SPAN_KIND_SERVER: "server", Span.SPAN_KIND_CLIENT: "client",
         Span.SPAN_KIND_INTERNAL: "internal", Span.SPAN_KIND_PRODUCER: "producer",
         Span.SPAN_KIND_CONSUMER: "consumer"}


@dataclass(frozen=True)
class ReceivedSpan:
    service: str  # the resource's service.name
    name: str
    kind: str  # server, client, ...
    trace_id: str  # hex, as in traceparent
    span_id: str
    parent_span_id: str  # "" for a root span
    attributes: dict[str, Any]
    error: bool  # status ERROR
    trace_state: str


class OtlpReceiver(LoopbackServer):
    """POST /v1/traces: every span of every export request is kept, in arrival order."""

    def __init__(self) -> None:
        super().__init__()
        self._spans: list[ReceivedSpan] = []
        self._lock = threading.Lock()
        self.requests = 0

    @property
    def endpoint(self) -> str:
        """What OTEL_EXPORTER_OTLP_ENDPOINT names (the base URL; traces go to /v1/traces)."""
        return f"http://127.0.0.1:{self.port}"

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/traces", self._traces)

    async def _traces(self, request: web.Request) -> web.Response:
        # aiohttp has decoded a gzip body already (OTEL_EXPORTER_OTLP_COMPRESSION)
        export = ExportTraceServiceRequest.FromString(await request.read())
        received = [span for resource_spans in export.resource_spans
                    for span in _spans_of(resource_spans)]
        with self._lock:
            self.requests += 1
            self._spans.extend(received)
        return web.Response(body=ExportTraceServiceResponse().SerializeToString(),
                            content_type="application/x-protobuf")

    def spans(self, **fields: Any) -> list[ReceivedSpan]:
        """The spans received so far whose fields have the given values."""
        with self._lock:
            spans = list(self._spans)
        return [span for span in spans
                if all(getattr(span, name) == value for name, value in fields.items())]

    def wait_for(self, within_s: float = 10.0, count: int = 1, **fields: Any
                 ) -> list[ReceivedSpan]:
        """The spans with these fields once there are `count` of them, or whatever there is
        after `within_s`."""
        eventually(lambda: len(self.spans(**fields)) >= count, within_s)
        return self.spans(**fields)


def _spans_of(resource_spans: Any) -> list[ReceivedSpan]:
    resource = {kv.key: _value(kv.value) for kv in resource_spans.resource.attributes}
    return [ReceivedSpan(
        service=str(resource.get("service.name", "")), name=span.name,
        kind=KINDS.get(span.kind, str(span.kind)), trace_id=span.trace_id.hex(),
        span_id=span.span_id.hex(), parent_span_id=span.parent_span_id.hex(),
        attributes={kv.key: _value(kv.value) for kv in span.attributes},
        error=span.status.code == Status.STATUS_CODE_ERROR, trace_state=span.trace_state)
        for scope_spans in resource_spans.scope_spans for span in scope_spans.spans]


def _value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    return getattr(value, kind) if kind is not None else None

