"""gateway.pipeline.plan_for: which steps a route's plan holds, in the pipeline's order."""

from __future__ import annotations

from contracts.routes import ROUTES, Access
from gateway.pipeline import plan_for
from gateway.route_configs import RouteConfig, _segments
from gateway.steps.api_key_validator import api_key_validator
from gateway.steps.authenticator import (
    authenticate,
    authenticate_optionally,
    refuse_bad_credentials,
    upstream_gate,
)
from gateway.steps.loop_guard import loop_guard
from gateway.steps.monitor_transport import monitor_transport
from gateway.steps.path_guard import path_guard
from gateway.steps.rate_limiter import rate_limiter


def config(path: str = "/shop/:id", *, upstream: bool = True, auth_required: bool = False,
           cache_ttl: int | None = None, method: str = "GET") -> RouteConfig:
    return RouteConfig(id="c1", project_id="p1", method=method, path=path,
                       segments=_segments(path), service=None if upstream else "auth",
                       upstream_url="http://upstream.example/base" if upstream else None,
                       rate_limit=None, cache_ttl=cache_ttl, auth_required=auth_required,
                       owner_id="u1", updated_at="2026-11-27T00:00:00.000Z")


def route(access: Access, method: str = "GET"):
    return next(r for r in ROUTES if r.access is access and r.method == method)


def test_an_anonymous_upstream_reads_a_token_if_sent_and_is_not_gated():
    plan = plan_for(None, config(), exempt=False)
    assert plan.steps == (path_guard, loop_guard, authenticate_optionally, api_key_validator,
                          rate_limiter, refuse_bad_credentials)
    assert (plan.template, plan.counted, plan.cached) == ("GET /shop/:id", True, False)


def test_an_auth_required_upstream_ends_with_its_gate_and_caches_only_gets_with_a_ttl():
    plan = plan_for(None, config(auth_required=True, cache_ttl=60), exempt=False)
    assert plan.steps[-1] is upstream_gate and plan.cached
    assert not plan_for(None, config(method="POST", cache_ttl=60), exempt=False).cached


def test_public_platform_routes_never_authenticate_and_others_always_do():
    public = plan_for(route(Access.PUBLIC, "POST"), None, exempt=False)
    assert authenticate not in public.steps and authenticate_optionally not in public.steps
    private = plan_for(route(Access.AUTHENTICATED), None, exempt=False)
    assert private.steps[:3] == (path_guard, loop_guard, authenticate)
    assert private.steps.index(rate_limiter) < private.steps.index(refuse_bad_credentials)


def test_unmatched_and_exempt_requests():
    unmatched = plan_for(None, None, exempt=False)
    assert unmatched.template == "unmatched" and rate_limiter in unmatched.steps
    # a valid token makes an unmatched request (a 404) the caller's, counted in their tier
    assert unmatched.steps[:3] == (path_guard, loop_guard, authenticate_optionally)
    exempt = plan_for(None, None, exempt=True)
    # exempt traffic: the path guard, and the monitor's transport check (no long-polling)
    assert exempt.steps == (path_guard, monitor_transport) and not exempt.counted
