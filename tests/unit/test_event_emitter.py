from aiohttp.test_utils import make_mocked_request

from gateway.steps.event_emitter import redacted_path


def test_secret_query_values_are_redacted_and_the_rest_kept():
    def path(url: str) -> str:
        return redacted_path(make_mocked_request("GET", url))

    assert path("/api/v1/auth/verify-email?token=abc123") == \
        "/api/v1/auth/verify-email?token=REDACTED"
    assert path("/x?a=1&TOKEN=s&key=k&b=%20&flag") == \
        "/x?a=1&TOKEN=REDACTED&key=REDACTED&b=%20&flag"
    assert path("/x?t%6Fken=s") == "/x?token=REDACTED"
    assert path("/plain/path") == "/plain/path"
    assert path("/x?tokens=kept") == "/x?tokens=kept"
