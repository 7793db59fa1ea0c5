from contracts.messages import RouteChanged, RouteConfigData
from gateway.route_configs import RouteConfigTable

AT = "2026-05-10T00:00:00.000Z"


def config(id_: str, path: str, method: str = "GET", **extra) -> RouteConfigData:
    wire = {"id": id_, "projectId": "p", "method": method, "path": path, "service": None,
            "upstreamUrl": "https://93.184.216.34", "rateLimit": None, "cacheTTL": None,
            "authRequired": True, "active": True, **extra}
    return RouteConfigData.from_wire(wire)


def test_most_specific_template_wins():
    table = RouteConfigTable()
    table.replace_all([config("a", "/users/:id"), config("b", "/users/me"),
                       config("c", "/:any/me")])
    assert table.match("GET", "/users/me").id == "b"
    assert table.match("GET", "/users/7").id == "a"
    assert table.match("GET", "/teams/me").id == "c"
    assert table.match("POST", "/users/me") is None
    assert table.match("GET", "/users/7/extra") is None


def test_inactive_configs_are_left_out_of_a_snapshot():
    table = RouteConfigTable()
    table.replace_all([config("a", "/a"), config("b", "/b", active=False)])
    assert len(table) == 1
    assert table.match("GET", "/b") is None


def test_events_patch_the_table():
    table = RouteConfigTable()
    table.replace_all([config("a", "/a")])
    table.apply(RouteChanged("created", config("b", "/b"), AT))
    assert table.match("GET", "/b").id == "b"
    table.apply(RouteChanged("updated", config("b", "/b", active=False), AT))
    assert table.match("GET", "/b") is None
    table.apply(RouteChanged("updated", config("a", "/a2"), AT))
    assert table.match("GET", "/a") is None and table.match("GET", "/a2").id == "a"
    table.apply(RouteChanged("created", config("c", "/c"), AT))
    table.apply(RouteChanged("deleted", config("c", "/c"), AT))
    assert table.match("GET", "/c") is None
    table.remove(["a"])
    assert len(table) == 0


def test_configs_keep_their_limits_and_owner():
    table = RouteConfigTable()
    table.replace_all([config("a", "/a", rateLimit=5, cacheTTL=60, ownerId="u",
                              authRequired=False)])
    found = table.match("GET", "/a")
    assert (found.rate_limit, found.cache_ttl, found.owner_id, found.auth_required) == \
        (5, 60, "u", False)


def test_trailing_slashes_and_root():
    table = RouteConfigTable()
    table.replace_all([config("a", "/shop/"), config("r", "/")])
    assert table.match("GET", "/shop").id == "a"
    assert table.match("GET", "/").id == "r"
