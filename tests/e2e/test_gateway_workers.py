"""Two gateway worker processes on one port (GATEWAY_WORKERS=2, SO_REUSEPORT) stay exact:
the rate limit holds across them and both follow key revocation."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.e2e.conftest import Stack, healthy_stack
from tests.e2e.helpers import Upstream, call, developer, eventually, project_with_route


@pytest.fixture(scope="module")
def workers(backends, tmp_path_factory, upstream: Upstream) -> Iterator[Stack]:
    with healthy_stack(tmp_path_factory.mktemp("workers"), GATEWAY_WORKERS="2",
                       UPSTREAM_ALLOW_PRIVATE="127.0.0.0/8") as running:
        yield running


def test_forty_concurrent_requests_over_two_workers_let_exactly_ten_through(workers, upstream):
    token = developer(workers)
    path = f"/w-{uuid.uuid4().hex[:6]}"
    project_with_route(workers, token, upstream, path, rateLimit=10)
    # both workers must know the config; probe with another identity's bucket (a fresh key)
    assert eventually(lambda: all(
        call(workers, "GET", path, token=developer(workers))[0] == 200 for _ in range(4)))

    with ThreadPoolExecutor(20) as pool:
        statuses = list(pool.map(lambda _: call(workers, "GET", path, token=token)[0],
                                 range(40)))

    assert statuses.count(200) == 10 and statuses.count(429) == 30


def test_both_workers_refuse_a_revoked_key(workers, upstream):
    token = developer(workers)
    project_id, config = project_with_route(workers, token, upstream,
                                            f"/k-{uuid.uuid4().hex[:6]}", authRequired=True)
    _, key, _ = call(workers, "POST", f"/api/v1/projects/{project_id}/keys", {"name": "k"},
                     token)
    headers = {"X-API-Key": key["key"]}
    assert eventually(lambda: all(call(workers, "GET", config["path"], headers=headers)[0]
                                  == 200 for _ in range(6)))
    call(workers, "DELETE", f"/api/v1/keys/{key['id']}", token=token)
    assert eventually(lambda: all(call(workers, "GET", config["path"], headers=headers)[0]
                                  == 403 for _ in range(6)), within_s=2)
