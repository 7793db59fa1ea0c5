"""W3C Trace Context (contracts.tracing) against the specification's valid and invalid
examples, formatting and new ids; the span recorder that records nothing
(contracts.spans), what the RPC server binds for a traced call, and that no object of the
OpenTelemetry SDK exists unless spans are exported."""

from __future__ import annotations

import asyncio
import random
import subprocess
import sys

import pytest
import structlog

from contracts.messages import RpcRequest
from contracts.rpc import dispatch, result_of
from contracts.spans import CURRENT, UNRECORDED, Unrecorded, recorder, span_export, working_in
from contracts.tracing import (
    SAMPLED,
    TraceContext,
    new_span_id,
    new_trace_id,
    parse_traceparent,
    received,
    valid_tracestate,
)
from tests.support import service_settings

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN_ID = "00f067aa0ba902b7"
VALID = f"00-{TRACE_ID}-{SPAN_ID}-01"  # the specification's own example
HEX32 = set("0123456789abcdef")


# --- parsing traceparent -----------------------------------------------------------------


def test_the_specifications_example_parses():
    assert parse_traceparent(VALID) == TraceContext(TRACE_ID, SPAN_ID, SAMPLED)
    context = parse_traceparent(f"00-{TRACE_ID}-{SPAN_ID}-00")
    assert context is not None and not context.sampled


@pytest.mark.parametrize(("flags", "kept"), [("01", 1), ("00", 0), ("09", 1), ("fe", 0),
                                             ("ff", 1), ("02", 0)])
def test_only_the_sampled_flag_is_kept(flags, kept):
    """Version 00 defines `sampled` alone; other bits are zero when passed on."""
    context = parse_traceparent(f"00-{TRACE_ID}-{SPAN_ID}-{flags}")
    assert context is not None and context.flags == kept


@pytest.mark.parametrize("value", [f" {VALID}", f"{VALID}\t", f" \t{VALID} "])
def test_optional_white_space_around_the_value_is_allowed(value):
    assert parse_traceparent(value) == TraceContext(TRACE_ID, SPAN_ID, SAMPLED)


@pytest.mark.parametrize("value", [
    f"cc-{TRACE_ID}-{SPAN_ID}-01",
    f"cc-{TRACE_ID}-{SPAN_ID}-01-what-the-future-will-be-like",
    f"01-{TRACE_ID}-{SPAN_ID}-01-",
    f"fe-{TRACE_ID}-{SPAN_ID}-01-x",
])
def test_a_higher_version_is_read_by_its_first_four_fields(value):
    assert parse_traceparent(value) == TraceContext(TRACE_ID, SPAN_ID, SAMPLED)


@pytest.mark.parametrize("value", [
    "",
    "00",
    VALID.upper(),  # uppercase hex anywhere
    f"00-{TRACE_ID.upper()}-{SPAN_ID}-01",
    f"00-{TRACE_ID}-{SPAN_ID.upper()}-01",
    f"00-{TRACE_ID}-{SPAN_ID}-0A",
    f"0A-{TRACE_ID}-{SPAN_ID}-01",
    f"ff-{TRACE_ID}-{SPAN_ID}-01",  # version ff is invalid
    f"ff-{TRACE_ID}-{SPAN_ID}-01-what-the-future-will-be-like",
    f"00-{'0' * 32}-{SPAN_ID}-01",  # all-zero trace id
    f"00-{TRACE_ID}-{'0' * 16}-01",  # all-zero parent id
    f"00-{TRACE_ID}-{SPAN_ID}-01-what-the-future-will-be-like",  # version 00 is 55 chars
    f"00-{TRACE_ID}-{SPAN_ID}-01-",
    f"00-{TRACE_ID[:-1]}-{SPAN_ID}-01",  # fields of the wrong length
    f"00-{TRACE_ID}0-{SPAN_ID}-01",
    f"00-{TRACE_ID}-{SPAN_ID[:-1]}-01",
    f"00-{TRACE_ID}-{SPAN_ID}-1",
    f"00-{TRACE_ID}-{SPAN_ID}-011",
    f"000-{TRACE_ID}-{SPAN_ID}-01",
    f"00-{TRACE_ID[:-1]}g-{SPAN_ID}-01",  # not hex
    f"00-{TRACE_ID}-{SPAN_ID[:-1]}z-01",
    f"00-{TRACE_ID}-{SPAN_ID}-0g",
    f"00_{TRACE_ID}_{SPAN_ID}_01",  # other separators
    f"00-{TRACE_ID}-{SPAN_ID}",  # a field missing
    f"cc-{TRACE_ID}-{SPAN_ID}-01.what-the-future",  # a higher version's flags run on
    f"cc-{TRACE_ID}-{SPAN_ID}-0",
    f"cc-{TRACE_ID[:-1]}-{SPAN_ID}-01-x",
    f"00-{TRACE_ID}-{SPAN_ID}-01\x00",
])
def test_invalid_values_give_no_context(value):
    assert parse_traceparent(value) is None


# --- tracestate and the request's fields ---------------------------------------------------


def test_one_traceparent_with_its_tracestate():
    context = received([VALID], ["rojo=00f067aa0ba902b7", "congo=t61rcWkgMzE"])
    assert context == TraceContext(TRACE_ID, SPAN_ID, SAMPLED,
                                   "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE")


def test_no_traceparent_or_more_than_one_is_no_context():
    assert received([], ["rojo=1"]) is None
    assert received([VALID, VALID], []) is None  # repeated: restart the trace
    assert received(["bogus"], ["rojo=1"]) is None  # tracestate is not read without one


@pytest.mark.parametrize("lines", [
    ["rojo=00f067aa0ba902b7"],
    ["rojo=1,congo=2"],
    ["tenant@vendor=value"],
    ["a-b_c*d/e=x y"],  # a value may hold inner spaces
    [",".join(f"k{n}=v" for n in range(32))],  # 32 members at most
    ["k=" + "v" * 256],
])
def test_a_well_formed_tracestate_goes_on_unchanged(lines):
    assert valid_tracestate(lines) == ",".join(lines)


@pytest.mark.parametrize(("lines", "passed_on"), [
    (["rojo=1 , congo=2"], "rojo=1,congo=2"),  # optional white space around members
    (["rojo=1,,congo=2"], "rojo=1,congo=2"),  # empty members are allowed, and dropped
    (["rojo=1", "congo=2"], "rojo=1,congo=2"),  # several field lines are one list
    (["rojo=1" + "," * 20_000, ",congo=2"], "rojo=1,congo=2"),
])
def test_a_tracestate_goes_on_as_its_members_alone(lines, passed_on):
    assert valid_tracestate(lines) == passed_on


def test_a_huge_tracestate_is_dropped_without_being_split():
    # one member and a megabyte of empty ones over 128 field lines: nothing goes upstream
    assert valid_tracestate(["rojo=1"] + ["," * 8000] * 128) == ""


@pytest.mark.parametrize("lines", [
    [],
    [""],
    [" , "],
    ["Rojo=1"],  # keys are lowercase
    ["rojo"],  # no value
    ["rojo=1,rojo=2"],  # a key twice
    ["rojo=1", "rojo=2"],
    ["rojo=a=b"],  # `=` in a value
    ["9abc=1"],  # a simple key starts with a letter
    ["tenant@Vendor=1"],
    ["tenant@vendorwaytoolong=1"],  # a system id of at most 14 characters
    ["k=" + "v" * 257],  # a value of at most 256 characters
    ["k" * 257 + "=v"],
    ["rojo=caf\u00e9"],
    [",".join(f"k{n}=v" for n in range(33))],  # more than 32 members
])
def test_a_tracestate_that_is_not_well_formed_is_dropped(lines):
    assert valid_tracestate(lines) == ""
    assert received([VALID], lines) == TraceContext(TRACE_ID, SPAN_ID, SAMPLED)


# --- formatting and new ids ----------------------------------------------------------------


def test_formatting_round_trips():
    for flags in (0, SAMPLED):
        context = TraceContext(TRACE_ID, SPAN_ID, flags, "rojo=1")
        assert context.traceparent == f"00-{TRACE_ID}-{SPAN_ID}-0{flags}"
        assert parse_traceparent(context.traceparent) == TraceContext(TRACE_ID, SPAN_ID, flags)


def test_a_child_is_a_new_span_of_the_same_trace():
    parent = TraceContext(TRACE_ID, SPAN_ID, 0, "rojo=1")
    child = parent.child()
    assert (child.trace_id, child.flags, child.tracestate) == (TRACE_ID, 0, "rojo=1")
    assert child.span_id != SPAN_ID and len(child.span_id) == 16
    assert set(child.span_id) <= HEX32
    assert len({parent.child().span_id for _ in range(1000)}) == 1000


def test_a_new_trace_is_sampled_with_fresh_ids():
    started = TraceContext.start()
    assert started.sampled and started.tracestate == ""
    assert parse_traceparent(started.traceparent) == started
    assert len({TraceContext.start().trace_id for _ in range(1000)}) == 1000


def test_new_ids_are_never_all_zeros(monkeypatch):
    monkeypatch.setattr(random, "getrandbits", lambda bits: 0)
    assert new_trace_id() == "0" * 31 + "1" and new_span_id() == "0" * 15 + "1"


# --- the recorder that records nothing -----------------------------------------------------


def test_without_export_a_server_span_is_a_new_span_id_and_a_client_span_its_parent():
    caller = TraceContext(TRACE_ID, SPAN_ID, SAMPLED, "rojo=1")
    span = UNRECORDED.server("GET /x", caller)
    assert not span.recording
    assert (span.context.trace_id, span.context.tracestate) == (TRACE_ID, "rojo=1")
    assert span.context.span_id != SPAN_ID
    assert UNRECORDED.client("auth.profile", span) is span  # its context goes on as it is
    root = UNRECORDED.server("GET /x", None)
    assert root.context.sampled and root.context.trace_id != TRACE_ID
    span.end(error=True, attributes={"x": 1})  # nothing to do


def test_working_in_a_span_binds_its_trace_for_log_lines_and_rpc_then_unbinds():
    span = Unrecorded(TraceContext(TRACE_ID, SPAN_ID, SAMPLED))
    structlog.contextvars.bind_contextvars(request_id="r-1")
    with working_in(span):
        assert CURRENT.get() is span
        assert structlog.contextvars.get_contextvars() == {"request_id": "r-1",
                                                           "trace_id": TRACE_ID}
    assert CURRENT.get() is None
    assert structlog.contextvars.get_contextvars() == {"request_id": "r-1"}
    structlog.contextvars.clear_contextvars()


async def test_without_an_endpoint_the_recorder_records_nothing():
    async with span_export(service_settings(), "gateway") as spans:
        assert spans is UNRECORDED and recorder() is UNRECORDED


# --- a traced RPC, as the server handles it ------------------------------------------------


async def test_the_rpc_server_handles_a_traced_call_in_a_span_of_its_own():
    seen: list[tuple[object, dict[str, object]]] = []

    async def handler(_request: RpcRequest) -> str:
        seen.append((CURRENT.get(), structlog.contextvars.get_contextvars()))
        return "ok"

    reply = await dispatch({"op": handler}, "op", RpcRequest(traceparent=VALID))
    assert result_of(reply).body == "ok"
    span, bound = seen[0]
    assert isinstance(span, Unrecorded)
    assert span.context.trace_id == TRACE_ID and span.context.span_id != SPAN_ID
    assert bound == {"trace_id": TRACE_ID}
    assert CURRENT.get() is None and structlog.contextvars.get_contextvars() == {}


@pytest.mark.parametrize("traceparent", [None, "bogus", f"00-{'0' * 32}-{SPAN_ID}-01"])
async def test_an_untraced_call_or_a_bad_traceparent_is_handled_without_a_span(traceparent):
    seen: list[tuple[object, dict[str, object]]] = []

    async def handler(_request: RpcRequest) -> None:
        seen.append((CURRENT.get(), structlog.contextvars.get_contextvars()))

    reply = await dispatch({"op": handler}, "op", RpcRequest(traceparent=traceparent))
    assert result_of(reply).status == 200  # never refused for its trace
    assert seen == [(None, {})]


async def test_concurrent_traced_calls_each_see_their_own_trace():
    seen: dict[str, str] = {}

    async def handler(request: RpcRequest) -> None:
        await asyncio.sleep(0.01)
        seen[str(request.request_id)] = structlog.contextvars.get_contextvars()["trace_id"]

    traces = {f"r-{n}": new_trace_id() for n in range(20)}
    await asyncio.gather(*(
        asyncio.create_task(dispatch({"op": handler}, "op", RpcRequest(
            request_id=request_id, traceparent=f"00-{trace}-{SPAN_ID}-01")))
        for request_id, trace in traces.items()))
    assert seen == traces


# --- no OpenTelemetry object unless spans are exported -------------------------------------


def test_no_opentelemetry_sdk_object_exists_without_an_endpoint():
    """In a fresh interpreter, after importing every process's modules and opening and
    using a recorder without an endpoint: our OpenTelemetry module was never imported, no
    object of the SDK's tracing or of an exporter exists, and no thread was started (the
    batch processor's would be). redis-py imports the SDK's metrics modules on its own to see
    whether they are installed; it creates nothing unless asked."""
    program = """
import asyncio, gc, sys, threading
import gateway.app, gateway.__main__, contracts.service, contracts.rpc
import auth_svc.app, project_svc.app, analytics_svc.app, logging_svc.app
from contracts.settings import load_settings
from contracts.spans import recorder, span_export

async def main():
    async with span_export(load_settings(), "gateway"):
        span = recorder().server("GET /x", None)
        recorder().client("x", span).end()
        span.end()

asyncio.run(main())
assert "contracts.otlp" not in sys.modules
assert not [name for name in sys.modules if name.startswith(
    ("opentelemetry.sdk.trace", "opentelemetry.exporter"))]
modules = (str(getattr(type(o), "__module__", "")) for o in gc.get_objects())
sdk = [m for m in modules if m.startswith(
    ("opentelemetry.sdk.trace", "opentelemetry.exporter"))]
assert not sdk, sdk
assert threading.enumerate() == [threading.main_thread()], threading.enumerate()
print("none")
"""
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True,
                          timeout=60, env={"APP_ENV": "test", "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip() == "none"
