"""Small blocking HTTP helpers for tests that drive real processes (stdlib only)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any


def request_json(method: str, url: str, body: Any = None, headers: dict[str, str] | None = None,
                 timeout: float = 10) -> tuple[int, Any, dict[str, str]]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        url, method=method, data=data,
        headers={"Content-Type": "application/json", **(headers or {})},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status, raw, response_headers = response.status, response.read(), response.headers
    except urllib.error.HTTPError as error:
        status, raw, response_headers = error.code, error.read(), error.headers
    return status, (json.loads(raw) if raw else None), dict(response_headers)


def get_json(url: str, timeout: float = 10) -> tuple[int, Any]:
    status, body, _ = request_json("GET", url, timeout=timeout)
    return status, body
