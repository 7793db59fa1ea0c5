"""Issue 12: one test per hole a security read found, each reproducing the attack through the
real stack (named after its item)."""

from __future__ import annotations

import re
import secrets
import urllib.error
import urllib.request

import pytest

from tests.e2e.conftest import Stack
from tests.e2e.helpers import Client, assert_error, call, clear_limits, raw

IP_LIMIT = 20
CACHE_MAX_BODY, CACHE_BUDGET = 16 * 1024, 64 * 1024


@pytest.fixture(scope="module")
def gw_settings(redis_test_db: str) -> dict[str, str]:
    """The contract's address tier (the other modules raise it), starting from empty buckets:
    they hold the requests of earlier modules, made under a much higher limit."""
    clear_limits(redis_test_db)
    return {"RATE_LIMIT_IP": str(IP_LIMIT), "MAX_PROJECTS_PER_USER": "50",
            "MAX_KEYS_PER_PROJECT": "20", "CACHE_MAX_BODY_BYTES": str(CACHE_MAX_BODY),
            "CACHE_PROJECT_BUDGET_BYTES": str(CACHE_BUDGET)}


@pytest.fixture
def fresh_limits(redis_test_db: str):
    """For a test that floods the address tier: the next test starts from empty buckets."""
    yield
    clear_limits(redis_test_db)


def metrics_of(gw: Stack, service: str) -> str:
    """The service's own Prometheus metrics."""
    url = f"http://127.0.0.1:{gw.port(service)}/metrics"
    return urllib.request.urlopen(url, timeout=5).read().decode()


def rpc_calls(gw: Stack, service: str, operation: str) -> int:
    """How often `operation` was served."""
    text = metrics_of(gw, service)
    return sum(int(float(n)) for n in re.findall(
        rf'^rpc_server_seconds_count{{[^}}]*operation="{re.escape(operation)}"[^}}]*}} (\S+)$',
        text, re.M))


def test_item_06_unknown_api_keys_cannot_flood_the_project_service(gw: Stack, fresh_limits):
    before = rpc_calls(gw, "project_svc", "key.verify")
    statuses = []
    for _ in range(2 * IP_LIMIT):  # OPTIONS that is no CORS preflight, a new random key each
        status, _, _ = call(gw, "OPTIONS", "/flood-probe",
                            headers={"X-API-Key": f"gw_{secrets.token_hex(32)}"})
        statuses.append(status)
    assert statuses.count(429) >= IP_LIMIT - 2, statuses  # counted under the address
    lookups = rpc_calls(gw, "project_svc", "key.verify") - before
    assert lookups <= IP_LIMIT, lookups  # refused before the lookup once the tier is full
    # a real preflight stays free and uncounted
    status, _, headers = call(gw, "OPTIONS", "/flood-probe", headers={
        "Origin": "https://app.example", "Access-Control-Request-Method": "GET"})
    assert status == 204 and "X-RateLimit-Limit" not in headers


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


def metric_total(gw: Stack, service: str, name: str) -> float:
    found = re.search(rf"^{re.escape(name)} (\S+)$", metrics_of(gw, service), re.M)
    return float(found.group(1)) if found else 0.0


def test_item_10_logging_out_with_a_rotated_token_ends_the_thiefs_session(gw: Stack):
    from tests.e2e.helpers import PASSWORD, register

    victim = register(gw, "victim")
    status, session, _ = call(gw, "POST", "/api/v1/auth/login",
                              {"email": victim.email, "password": PASSWORD})
    assert status == 200
    stolen = session["refreshToken"]
    # the thief refreshes first and keeps the successor
    status, thief, _ = call(gw, "POST", "/api/v1/auth/refresh", {"refreshToken": stolen})
    assert status == 200
    # the victim logs out with the token they have, already rotated: that is reuse
    status, body, _ = call(gw, "POST", "/api/v1/auth/logout", {"refreshToken": stolen},
                           token=session["accessToken"])
    assert (status, body) == (200, {"message": "Logged out successfully"})
    status, _, _ = call(gw, "POST", "/api/v1/auth/refresh",
                        {"refreshToken": thief["refreshToken"]})
    assert status == 401  # the whole family is revoked


def test_item_14_a_wrong_reset_token_costs_no_password_hash(gw: Stack):
    before = metric_total(gw, "auth_svc", "password_hashes_total")
    for _ in range(3):
        status, body, _ = call(gw, "POST", "/api/v1/auth/reset-password",
                               {"token": secrets.token_hex(32), "newPassword": "N3wPassword"})
        assert (status, body["message"]) == (400, "Invalid reset token")
    assert metric_total(gw, "auth_svc", "password_hashes_total") == before


def test_item_14_one_time_tokens_never_reach_events(gw: Stack, admin: Client):
    secret = secrets.token_hex(20)
    status, _, _ = call(gw, "GET", f"/api/v1/auth/verify-email?token={secret}")
    assert status == 400

    def logged() -> list[str]:
        entries = admin.ok("GET", "/api/v1/logs",
                           query={"limit": 100, "method": "GET"})["entries"]
        return [e["path"] for e in entries if e["path"].startswith("/api/v1/auth/verify-email")]

    from tests.e2e.helpers import eventually

    paths = eventually(logged, within_s=5)
    assert paths and all(secret not in path for path in paths)
    assert "/api/v1/auth/verify-email?token=REDACTED" in paths


def test_item_08_concurrent_logins_cannot_race_past_the_throttle(gw: Stack, fresh_limits):
    from concurrent.futures import ThreadPoolExecutor

    from tests.e2e.helpers import register

    target = register(gw, "target")

    def attempt(_: int) -> int:
        status, _, _ = call(gw, "POST", "/api/v1/auth/login",
                            {"email": target.email, "password": "WrongPassw0rd"})
        return status

    with ThreadPoolExecutor(max_workers=20) as pool:
        statuses = list(pool.map(attempt, range(20)))  # within the gateway's address tier
    # LOGIN_MAX_FAILURES_PER_ACCOUNT is 10: only ten wrong passwords are ever checked
    assert statuses.count(401) <= 10, statuses
    assert set(statuses) <= {401, 429}


def test_item_13_clients_cannot_claim_an_address_or_mislabel_a_body_upstream(
        gw: Stack, alice: Client, upstream):
    import gzip

    from tests.e2e.helpers import eventually, project_with_route

    project_with_route(gw, alice.token, upstream, "/header-probe", method="POST")
    spoofs = {"Forwarded": "for=6.6.6.6", "X-Real-IP": "6.6.6.6",
              "True-Client-IP": "6.6.6.6", "X_Forwarded_For": "6.6.6.6",
              "X-Forwarded-For": "6.6.6.6"}
    body = b'{"pay": 100}'

    def send():
        request = urllib.request.Request(
            f"{gw.gateway_url}/header-probe", method="POST", data=gzip.compress(body),
            headers={**spoofs, "Content-Type": "application/json",
                     "Content-Encoding": "gzip"})
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as error:
            return error.code, error.read()

    status, answer = eventually(lambda: (lambda r: r if r[0] != 404 else None)(send()))
    assert status == 200, answer
    seen = upstream.seen[-1]
    names = {name.lower().replace("_", "-") for name in seen["headers"]}
    assert not names & {"forwarded", "x-real-ip", "true-client-ip", "content-encoding"}, names
    assert seen["headers"]["X-Forwarded-For"] == "127.0.0.1"  # the socket peer, nothing else
    assert seen["body"] == body.decode()


def test_item_03_metrics_are_off_the_public_port_and_name_no_upstream(
        gw: Stack, alice: Client, upstream):
    from tests.e2e.helpers import eventually, project_with_route

    secret = secrets.token_hex(8)
    _, config = project_with_route(gw, alice.token, upstream, "/metered",
                                   upstreamUrl=f"http://127.0.0.1:{upstream.port}/base"
                                               f"?token={secret}")
    def status_of(path: str) -> int:
        try:
            with urllib.request.urlopen(gw.gateway_url + path, timeout=10) as response:
                return response.status
        except urllib.error.HTTPError as error:
            return error.code

    assert eventually(lambda: status_of("/metered") != 404)  # served by the upstream
    assert status_of("/metrics") == 404
    text = metrics_of(gw, "gateway_status")
    assert "gateway_request_seconds_bucket" in text
    assert secret not in text and f":{upstream.port}" not in text
    assert f'route_config="{config["id"]}"' in text


def test_item_02_a_path_cannot_leave_the_upstream_base_path(gw: Stack, alice: Client,
                                                             upstream):
    from tests.e2e.helpers import eventually, project_with_route

    project_with_route(gw, alice.token, upstream, "/v1/:a/:b/:c",
                       upstreamUrl=f"http://127.0.0.1:{upstream.port}/base/public")

    def get(path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(gw.gateway_url + path, timeout=10) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode()

    status, body = eventually(lambda: (lambda r: r if r[0] != 404 else None)(get("/v1/a/b/c")))
    assert status == 200 and '"/base/public/v1/a/b/c"' in body
    before = len(upstream.seen)
    for path in ("/v1/%2e%2e/%2e%2e/admin", "/v1/%2E%2E/%2e%2E/admin", "/v1/a/..%2Fadmin/x",
                 "/v1/a/%2e/b", "/v1/a%2fb/c/d"):
        status, body = get(path)
        assert status == 400 and '"BAD_REQUEST"' in body, (path, status, body)
    assert len(upstream.seen) == before  # nothing reached the upstream


def test_item_05_the_cache_cannot_be_poisoned(gw: Stack, alice: Client, upstream):
    from tests.e2e.helpers import eventually, project_with_route

    project_with_route(gw, alice.token, upstream, "/cached/:name", cacheTTL=300)

    def get(path: str, headers: dict[str, str] | None = None) -> tuple[int, str, str]:
        request = urllib.request.Request(gw.gateway_url + path, headers=headers or {})
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, response.headers.get("X-Cache", ""), \
                    response.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.headers.get("X-Cache", ""), error.read().decode()

    assert eventually(lambda: get("/cached/warmup")[0] == 200)
    # a Range request is neither stored nor answered from the cache
    assert get("/cached/ranged", {"Range": "bytes=0-3"})[1] == ""
    assert get("/cached/ranged")[1] == "MISS"
    assert get("/cached/ranged")[1] == "HIT"
    assert get("/cached/ranged", {"Range": "bytes=0-3"})[1] == ""
    # a response that varies on another request header is not shared
    assert get("/cached/varied?vary=X-Tenant", {"X-Tenant": "a"})[1] == "MISS"
    assert get("/cached/varied?vary=X-Tenant", {"X-Tenant": "b"})[1] == "MISS"
    # the client's Host does not reach the upstream as the gateway's host
    status, _, body = get("/cached/host", {"Host": "evil.example"})
    assert status == 200 and "evil.example" not in body


def test_item_01_another_project_cannot_capture_a_tenants_paths(gw: Stack, alice: Client,
                                                               bob: Client, upstream):
    from concurrent.futures import ThreadPoolExecutor

    from tests.e2e.helpers import project_with_route

    prefix = f"/pay-{secrets.token_hex(4)}"
    project_with_route(gw, alice.token, upstream, f"{prefix}/:op", method="POST")
    bobs = bob.ok("POST", "/api/v1/projects", {"name": "Capture"}, status=201)["id"]
    target = {"method": "POST", "upstreamUrl": f"http://127.0.0.1:{upstream.port}/base",
              "authRequired": False}
    for path in (f"{prefix}/charge", f"{prefix}/:y"):
        assert_error(bob.call("POST", f"/api/v1/projects/{bobs}/routes",
                              {**target, "path": path}), 409, "CONFLICT")
    # a PATCH that would move an existing config onto alice's paths is refused too
    elsewhere = bob.ok("POST", f"/api/v1/projects/{bobs}/routes",
                       {**target, "path": f"{prefix}-other/charge"}, status=201)
    assert_error(bob.call("PATCH", f"/api/v1/routes/{elsewhere['id']}",
                          {"path": f"{prefix}/refund"}), 409, "CONFLICT")

    # racing creates of overlapping templates from different projects: one wins
    racers = [bob.ok("POST", "/api/v1/projects", {"name": f"Racer {n}"}, status=201)["id"]
              for n in range(6)]
    contested = f"/race-{secrets.token_hex(4)}"

    def create(index: int) -> int:
        path = f"{contested}/:id" if index % 2 else f"{contested}/charge"  # all overlap
        return bob.call("POST", f"/api/v1/projects/{racers[index]}/routes",
                        {**target, "path": path})[0]

    with ThreadPoolExecutor(max_workers=6) as pool:
        statuses = list(pool.map(create, range(6)))
    assert sorted(statuses) == [201] + [409] * 5, statuses


def test_item_07_projects_and_keys_are_capped(gw: Stack):
    from concurrent.futures import ThreadPoolExecutor

    from tests.e2e.helpers import register

    minter = register(gw, "minter")

    def new_project(index: int) -> int:
        return minter.call("POST", "/api/v1/projects", {"name": f"Mint {index}"})[0]

    for index in range(40):
        assert new_project(index) == 201
    with ThreadPoolExecutor(max_workers=8) as pool:  # racing for the last places
        statuses = list(pool.map(new_project, range(40, 60)))
    assert statuses.count(201) == 10 and statuses.count(409) == 10, statuses
    assert_error(minter.call("POST", "/api/v1/projects", {"name": "One more"}), 409,
                 "CONFLICT", "Project limit reached (50)")

    project = minter.ok("GET", "/api/v1/projects", query={"limit": 1})["projects"][0]["id"]
    keys = [minter.ok("POST", f"/api/v1/projects/{project}/keys", {"name": f"k{n}"},
                      status=201) for n in range(20)]
    assert_error(minter.call("POST", f"/api/v1/projects/{project}/keys", {"name": "k20"}),
                 409, "CONFLICT", "API key limit reached (20)")
    minter.ok("DELETE", f"/api/v1/keys/{keys[0]['id']}")  # a revoked key frees its place
    minter.ok("POST", f"/api/v1/projects/{project}/keys", {"name": "k20"}, status=201)


def test_item_07_a_key_gives_its_tier_only_on_its_own_projects_routes(
        gw: Stack, alice: Client, bob: Client, upstream, fresh_limits):
    from tests.e2e.helpers import eventually, project_with_route

    own_prefix, other_prefix = f"/own-{secrets.token_hex(4)}", f"/other-{secrets.token_hex(4)}"
    project, _ = project_with_route(gw, alice.token, upstream, f"{own_prefix}/:x")
    project_with_route(gw, bob.token, upstream, f"{other_prefix}/:x")  # anonymous, bob's
    key = alice.ok("POST", f"/api/v1/projects/{project}/keys", {"name": "tier"},
                   status=201)["key"]
    sent = {"X-API-Key": key}

    def limit_of(path: str, method: str = "GET", body=None) -> str:
        status, _, headers = call(gw, method, path, body, headers=sent)
        assert status != 429, path
        return headers["X-RateLimit-Limit"]

    assert eventually(lambda: call(gw, "GET", f"{other_prefix}/up")[0] == 200)
    assert eventually(lambda: call(gw, "GET", f"{own_prefix}/up", headers=sent)[0] == 200)
    key_tier = limit_of(f"{own_prefix}/a")
    assert int(key_tier) > IP_LIMIT
    # another tenant's anonymous route and the public auth endpoints: the address's tier
    assert limit_of(f"{other_prefix}/a") == str(IP_LIMIT)
    forgot = "/api/v1/auth/forgot-password"
    assert limit_of(forgot, "POST", {"email": "nobody@example.com"}) == str(IP_LIMIT)
    # a ceiling whatever credentials are sent: a key and a Bearer token together
    statuses = [call(gw, "POST", forgot, {"email": "nobody@example.com"}, alice.token,
                     headers=sent)[0] for _ in range(IP_LIMIT)]
    assert 429 in statuses, statuses


def test_item_04_a_tenant_cannot_fill_the_cache_or_starve_the_limiter(
        gw: Stack, alice: Client, bob: Client, upstream):
    import os
    from concurrent.futures import ThreadPoolExecutor

    import redis

    from tests.e2e.helpers import eventually, project_with_route

    prefix = f"/fill-{secrets.token_hex(4)}"
    project_with_route(gw, alice.token, upstream, f"{prefix}/:x", cacheTTL=86400,
                       rateLimit=10000)  # the module's address tier is small
    other = f"/fill-{secrets.token_hex(4)}"
    project_with_route(gw, bob.token, upstream, f"{other}/:x", cacheTTL=86400,
                       rateLimit=10000)
    assert eventually(lambda: call(gw, "GET", f"{prefix}/up")[0] == 200)
    assert eventually(lambda: call(gw, "GET", f"{other}/up")[0] == 200)

    def x_cache(path: str) -> str:
        status, _, headers = call(gw, "GET", path)
        assert status == 200, (path, status)
        return headers["X-Cache"]

    # entries live in the cache's own instance, bounded and LRU, never beside the limiter
    assert [x_cache(f"{prefix}/a"), x_cache(f"{prefix}/a")] == ["MISS", "HIT"]
    limiter = redis.Redis.from_url(os.environ["REDIS_URL"])
    cache = redis.Redis.from_url(os.environ["CACHE_REDIS_URL"])
    assert not list(limiter.scan_iter("gw:cache:*", count=1000))
    assert list(cache.scan_iter("gw:cache:*", count=1000))
    settings = cache.config_get("maxmemory*")
    assert int(settings["maxmemory"]) > 0 and settings["maxmemory-policy"].endswith("lru")

    # a body over CACHE_MAX_BODY_BYTES is never stored
    big = f"{prefix}/big?pad={CACHE_MAX_BODY + 1000}"
    assert [x_cache(big), x_cache(big)] == ["MISS", "MISS"]
    # ever-new query strings stop being stored once the project's budget is spent...
    paths = [f"{prefix}/q?n={n}&pad=6000" for n in range(24)]
    assert {x_cache(path) for path in paths} == {"MISS"}
    hits = [x_cache(path) for path in paths].count("HIT")
    assert 0 < hits <= CACHE_BUDGET // 6000, hits
    # ...and only that project's: another one still caches
    assert [x_cache(f"{other}/q?pad=6000"), x_cache(f"{other}/q?pad=6000")] == ["MISS", "HIT"]

    # concurrent misses for one key wait without polling Redis every few milliseconds
    name = f"wait{secrets.token_hex(4)}"
    project_with_route(gw, alice.token, upstream, f"/counted/{name}", cacheTTL=60,
                       rateLimit=10000)
    assert eventually(lambda: call(gw, "GET", f"/counted/{name}?warm=1")[0] == 200)

    def commands() -> int:
        """Cache reads and lock checks, in both instances (the old code used the limiter's)."""
        return sum(client.info("commandstats").get(f"cmdstat_{name}", {}).get("calls", 0)
                   for client in (limiter, cache) for name in ("hgetall", "exists"))

    calls_before, commands_before = upstream.counts[name], commands()
    with ThreadPoolExecutor(40) as pool:
        statuses = list(pool.map(lambda _: call(gw, "GET", f"/counted/{name}")[0], range(40)))
    assert statuses == [200] * 40
    assert upstream.counts[name] - calls_before == 1
    spent = commands() - commands_before
    assert spent < 200, spent  # one per request; polling every 20 ms: ~1,200
    limiter.close()
    cache.close()
