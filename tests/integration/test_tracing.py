"""Tracing on the real servers: an RPC made while a span is current carries its
`traceparent` through RabbitMQ and the handler runs in that trace; spans recorded with an
OTLP endpoint reach a collector when the process stops, however long the batch delay; and
log entries stored before the trace id existed read it as null."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import UTC, datetime

import asyncpg
import orjson
import structlog

from contracts.identity import Caller, Role
from contracts.messages import RpcRequest
from contracts.migrations import migrate
from contracts.names import rpc_queue
from contracts.operations import Operation
from contracts.rpc import RpcClient, RpcServer
from contracts.settings import Settings
from contracts.spans import CURRENT, Unrecorded, recorder, span_export, working_in
from contracts.tracing import SAMPLED, TraceContext, new_span_id, new_trace_id
from logging_svc.pg_store import MIGRATIONS, PostgresLogStore, entry_uuid
from tests.otlp_receiver import OtlpReceiver
from tests.support import drop_database, recreate_database

OPERATION = Operation("traced.echo", None)
ADMIN = Caller("admin", "admin@example.com", Role.ADMIN)


async def test_an_rpc_made_in_a_span_carries_its_trace_to_the_handler(amqp, unique):
    seen: list[tuple[str | None, str | None, object]] = []

    async def echo(request: RpcRequest) -> None:
        current = CURRENT.get()
        seen.append((request.traceparent, current.context.trace_id if current else None,
                     structlog.contextvars.get_contextvars().get("trace_id")))

    server = RpcServer(await amqp("server"), rpc_queue(unique), {OPERATION.name: echo})
    await server.start()
    client = RpcClient(await amqp("client"), default_timeout_ms=3000)
    await client.start()
    try:
        span = Unrecorded(TraceContext(new_trace_id(), new_span_id(), SAMPLED))
        with working_in(span):
            await client.call(rpc_queue(unique), OPERATION)
        await client.call(rpc_queue(unique), OPERATION)  # no span current: untraced
    finally:
        await server.stop()
        await client.close()
    trace_id = span.context.trace_id
    # nothing recorded here: the call goes out in the caller's span as it is
    assert seen == [(span.context.traceparent, trace_id, trace_id), (None, None, None)]


async def test_recorded_spans_reach_the_collector_when_the_process_stops(
        settings: Settings, collector: OtlpReceiver, monkeypatch):
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "600000")  # only the final flush sends
    exporting = dataclasses.replace(settings, otel_exporter_otlp_endpoint=collector.endpoint,
                                    otel_service_name="traced-test")
    caller = TraceContext(new_trace_id(), new_span_id(), SAMPLED, "rojo=1")
    async with span_export(exporting, "ignored") as spans:
        assert spans is recorder() and spans.recording
        server = spans.server("GET /x", caller, {"http.route": "/x"})
        client = spans.client("auth.profile", server)
        client.end(error=True)
        server.end(attributes={"http.response.status_code": 200})
        assert collector.spans() == []  # still in the batch
    assert not recorder().recording  # the process's recorder is off again
    received = {span.kind: span for span in collector.spans(trace_id=caller.trace_id)}
    assert set(received) == {"server", "client"}
    assert {span.service for span in received.values()} == {"traced-test"}
    assert received["server"].span_id == server.context.span_id
    assert received["server"].parent_span_id == caller.span_id
    assert received["server"].attributes == {"http.route": "/x",
                                             "http.response.status_code": 200}
    assert received["server"].trace_state == "rojo=1" and not received["server"].error
    assert received["client"].parent_span_id == server.context.span_id
    assert received["client"].error
    # what the client span passes on names it, the caller's tracestate unchanged
    assert client.context == TraceContext(caller.trace_id, received["client"].span_id,
                                          SAMPLED, "rojo=1")


async def test_an_unsampled_callers_trace_is_not_recorded(settings: Settings,
                                                         collector: OtlpReceiver):
    exporting = dataclasses.replace(settings, otel_exporter_otlp_endpoint=collector.endpoint)
    caller = TraceContext(new_trace_id(), new_span_id(), 0)
    async with span_export(exporting, "gateway") as spans:
        span = spans.server("GET /x", caller)
        assert not span.recording and not span.context.sampled
        assert span.context.span_id != caller.span_id  # its own id all the same
        span.end()
        root = spans.server("GET /y", None)  # a new trace: the default sampler records it
        assert root.recording and root.context.sampled
        root.end()
    assert collector.spans(trace_id=caller.trace_id) == []
    assert [span.name for span in collector.spans(trace_id=root.context.trace_id)] == ["GET /y"]


async def test_entries_stored_before_the_trace_id_existed_read_it_as_null(
        settings: Settings, unique: str, logs_database_url: str):
    url = f"{settings.logs_database_url}_{unique}"
    await recreate_database(url)
    try:
        before = [m for m in MIGRATIONS if m[0] == "001_log_entries"]
        assert before and len(before) < len(MIGRATIONS)
        connection = await asyncpg.connect(url)
        try:
            await migrate(connection, before)
            now = datetime.now(UTC)
            await connection.execute(
                f"CREATE TABLE log_entries_p{now:%Y%m%d} PARTITION OF log_entries FOR VALUES "
                f"FROM ('{now:%Y-%m-%d}') TO ('{now:%Y-%m-%d}'::date + 1)")
            request_id = str(uuid.uuid4())
            key = entry_uuid("gateway", request_id)
            rest = orjson.dumps({  # the row as the first version of the store wrote it
                "requestId": request_id, "path": "/old", "route": None, "latency": 1.0,
                "ip": "10.0.0.1", "apiKeyId": None, "userAgent": "", "contentLength": 0,
                "error": None})
            await connection.execute("INSERT INTO log_ids (id, ts) VALUES ($1, $2)", key, now)
            await connection.execute(
                "INSERT INTO log_entries (ts, id, external, status_code, method, user_id, "
                "owner_id, project_id, rest) VALUES ($1, $2, false, 200, 'GET', 'u-1', NULL, "
                "NULL, $3)", now, key, rest)
        finally:
            await connection.close()
        store = await PostgresLogStore.open(url, retention_days=30, ahead_days=1)  # migrates
        try:
            entry = await store.by_request_id(ADMIN, request_id)
        finally:
            await store.close()
    finally:
        await drop_database(url)
    assert entry is not None and entry["path"] == "/old" and entry["traceId"] is None
