"""Issue 12: one test per hole a security read found, each reproducing the attack through the
real stack (named after its item)."""

from __future__ import annotations

from tests.e2e.conftest import Stack
from tests.e2e.helpers import Client, assert_error, raw


def test_item_11_deeply_nested_json_is_a_400_not_a_500(gw: Stack, alice: Client):
    # orjson itself accepts up to 1024 levels; walking them recursively exhausted the stack
    nested = ('{"name":' * 1000 + '"x"' + "}" * 1000).encode()
    for path, headers in (("/api/v1/auth/register", {}),
                          ("/api/v1/projects", {"Authorization": f"Bearer {alice.token}"})):
        body = assert_error(raw(gw, "POST", path, nested, headers), 400, "BAD_REQUEST")
        assert "nested" in body["message"], body
    # a body of ordinary depth is still validated as usual
    status, body, _ = raw(gw, "POST", "/api/v1/projects", b'{"name": {"a": {"b": 1}}}',
                          {"Authorization": f"Bearer {alice.token}"})
    assert (status, body["error"]) == (400, "VALIDATION_ERROR")
