"""Names of the values that steps leave on the request for later steps."""

from __future__ import annotations

REQUEST_ID = "gw.request_id"
STARTED = "gw.started"  # time.perf_counter() when the request entered the gateway
DEADLINE_MS = "gw.deadline_ms"  # absolute Unix ms after which nobody waits for the answer
CALLER = "gw.caller"  # the authenticated identity, when there is one
