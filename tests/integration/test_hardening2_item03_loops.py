"""Issue 19, item 3, at connect time: a route config that reaches the gateway at the port it
really listens on (here a test server's, not GATEWAY_PORT) is refused when it is used, even
if it got past the save-time check (a name that resolves elsewhere then, a settings change)."""

from __future__ import annotations

import dataclasses

from aiohttp import web

from contracts.messages import RouteConfigData
from gateway.app import build_app
from gateway.state import STATE


def upstream_config(config_id: str, path: str, url: str) -> RouteConfigData:
    return RouteConfigData(id=config_id, project_id="p-loop", path=path, method="GET",
                           service=None, upstream_url=url, rate_limit=None, cache_ttl=None,
                           auth_required=False, active=True, owner_id=None, created_at=None,
                           updated_at=None)


async def test_item_03_a_config_aimed_at_the_gateways_real_listener_is_refused(
        aiohttp_client, aiohttp_server, settings):
    async def hello(_request: web.Request) -> web.Response:
        return web.json_response({"upstream": True})

    upstream_app = web.Application()
    upstream_app.router.add_get("/base/{tail:.*}", hello)
    upstream = await aiohttp_server(upstream_app)
    allowed = dataclasses.replace(settings, upstream_allow_private=("127.0.0.0/8",))
    gateway = await aiohttp_client(build_app(allowed))
    assert gateway.port != settings.gateway_port  # a listener the settings do not name
    gateway.app[STATE].route_configs.replace_all([
        upstream_config("c-self", "/self/:x", f"http://127.0.0.1:{gateway.port}/base"),
        upstream_config("c-other", "/other/:x", f"http://127.0.0.1:{upstream.port}/base")])

    # another port of the same address is an ordinary upstream
    response = await gateway.get("/other/a")
    assert response.status == 200 and await response.json() == {"upstream": True}
    # the gateway's own: refused before a connection is made, not sent round again
    response = await gateway.get("/self/a")
    body = await response.json()
    assert response.status == 502 and body["error"] == "UPSTREAM_ERROR", body
    # by name too (resolved at connect time), and an IPv4-mapped spelling of it
    for url in (f"http://localhost:{gateway.port}/base",
                f"http://[::ffff:127.0.0.1]:{gateway.port}/base"):
        gateway.app[STATE].route_configs.replace_all([upstream_config("c-self", "/self/:x",
                                                                      url)])
        response = await gateway.get("/self/b")
        assert response.status == 502, (url, await response.text())
