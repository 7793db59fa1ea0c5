"""W3C Trace Context (https://www.w3.org/TR/trace-context/, Level 1, version `00`): the value
a process receives in `traceparent`/`tracestate` and passes on, its parsing and formatting,
and new ids.

A `TraceContext` names a trace and the span its holder works in: received in a request, it
is the caller's span (the parent of ours); made by us, it is our own span, and what we send
on. Parsing follows the specification to the letter, and never refuses a request: whatever
does not parse reads as no context at all, and the receiver starts a new trace.

- `traceparent` = version "-" trace-id "-" parent-id "-" trace-flags, lowercase hex only:
  version 2, trace-id 32 (not all zeros), parent-id 16 (not all zeros), trace-flags 2.
  Version `00` is exactly those 55 characters; `ff` is invalid; a higher version is read by
  its first four fields, which must be followed by the end or a `-` (later fields are that
  version's own, and ignored). More than one `traceparent` field is invalid too.
- trace-flags: only `sampled` (01) is defined; the other bits are set to zero when passed on,
  as version 00 requires.
- `tracestate` (vendors' entries) is read only beside a valid `traceparent` and passed on
  unchanged: the field lines joined by `,`, kept only while the list is well formed (at most
  32 members, each `key=value` in the specification's grammar, no key twice); otherwise it is
  dropped whole, as the specification allows.

Ids come from `random` (the process's PRNG, reseeded after a fork): trace ids must be
unique, not secret, and `os.urandom` would cost a system call per request.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from dataclasses import dataclass

TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"
# the W3C Trace Context Level 2 draft's answer header: the trace and the server's own span
TRACERESPONSE = "traceresponse"

SAMPLED = 0x01
_ZERO_TRACE_ID = "0" * 32
_ZERO_SPAN_ID = "0" * 16
MAX_TRACESTATE_MEMBERS = 32
# what is passed on at most: 32 members of the longest the grammar allows (256 + 1 + 256)
# and their commas; a longer list (many empty members, many field lines) is dropped whole
MAX_TRACESTATE_CHARS = MAX_TRACESTATE_MEMBERS * 514

_TRACEPARENT = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?")
# list-member = key "=" value (section 3.3.1.3): a simple key, or tenant@system; a value of
# printable ASCII but "," and "=", up to 256 characters, not ending in a space
_KEY_CHARS = r"[a-z0-9_\-*/]"
_TRACESTATE_MEMBER = re.compile(
    rf"([a-z]{_KEY_CHARS}{{0,255}}|[a-z0-9]{_KEY_CHARS}{{0,240}}@[a-z]{_KEY_CHARS}{{0,13}})"
    r"=[\x20-\x2b\x2d-\x3c\x3e-\x7e]{0,255}[\x21-\x2b\x2d-\x3c\x3e-\x7e]")
_OWS = " \t"


@dataclass(frozen=True, slots=True)
class TraceContext:
    trace_id: str  # 32 lowercase hex digits, not all zeros
    span_id: str  # 16 lowercase hex digits, not all zeros
    flags: int  # trace-flags: SAMPLED or 0
    tracestate: str = ""  # as received, passed on unchanged; "" for none

    @property
    def sampled(self) -> bool:
        return bool(self.flags & SAMPLED)

    @property
    def traceparent(self) -> str:
        """The `traceparent` value naming this context's span (also `traceresponse`'s)."""
        return f"00-{self.trace_id}-{self.span_id}-{self.flags:02x}"

    def child(self) -> TraceContext:
        """A new span of the same trace, for what this process does on the caller's behalf."""
        return TraceContext(self.trace_id, new_span_id(), self.flags, self.tracestate)

    @classmethod
    def start(cls) -> TraceContext:
        """A new trace (no valid context was received): sampled, since the gateway keeps
        every request's log entry; a tracing backend's sampler may still decide otherwise."""
        return cls(new_trace_id(), new_span_id(), SAMPLED)


# %-formatted: about a third faster than an f-string's format spec, and both run per request
def new_trace_id() -> str:
    return "%032x" % (random.getrandbits(128) or 1)  # never all zeros (invalid)


def new_span_id() -> str:
    return "%016x" % (random.getrandbits(64) or 1)


def parse_traceparent(value: str) -> TraceContext | None:
    """The context one `traceparent` value names, or None when it is not valid."""
    match = _TRACEPARENT.fullmatch(value.strip(_OWS))
    if match is None:
        return None
    version, trace_id, span_id, flags, rest = match.groups()
    if version == "ff" or (version == "00" and rest is not None):
        return None
    if trace_id == _ZERO_TRACE_ID or span_id == _ZERO_SPAN_ID:
        return None
    return TraceContext(trace_id, span_id, int(flags, 16) & SAMPLED)


def valid_tracestate(lines: Sequence[str]) -> str:
    """The `tracestate` field lines as one list to pass on, or "" when it is not well formed
    (or absent). Empty members (`a=1,,b=2`) are allowed and dropped, and the members are
    passed on as `a=1,b=2`: what goes on is never longer than MAX_TRACESTATE_CHARS, however
    many empty members or field lines came."""
    if sum(len(line) for line in lines) > MAX_TRACESTATE_CHARS * 2:
        return ""  # not worth splitting: it cannot hold a list we would pass on
    members: list[str] = []
    keys: set[str] = set()
    for member in ",".join(lines).split(","):
        member = member.strip(_OWS)
        if not member:
            continue
        match = _TRACESTATE_MEMBER.fullmatch(member)
        if match is None or match.group(1) in keys or len(keys) == MAX_TRACESTATE_MEMBERS:
            return ""
        keys.add(match.group(1))
        members.append(member)
    return ",".join(members)


def received(traceparents: Sequence[str], tracestates: Sequence[str]) -> TraceContext | None:
    """The caller's context from a request's field lines (every `traceparent`, every
    `tracestate`), or None: absent, repeated or invalid."""
    if len(traceparents) != 1:
        return None
    context = parse_traceparent(traceparents[0])
    if context is None or not tracestates:
        return context
    tracestate = valid_tracestate(tracestates)
    if not tracestate:
        return context
    return TraceContext(context.trace_id, context.span_id, context.flags, tracestate)
