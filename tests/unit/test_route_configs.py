from gateway.route_configs import RouteConfigTable


def config(id_: str, path: str, method: str = "GET", **extra):
    return {"id": id_, "projectId": "p", "method": method, "path": path, "service": None,
            "upstreamUrl": "https://93.184.216.34", "rateLimit": None, "cacheTTL": None,
            "authRequired": True, "active": True, **extra}


def test_most_specific_template_wins():
    table = RouteConfigTable()
    table.replace_all([config("a", "/users/:id"), config("b", "/users/me"),
                       config("c", "/:any/me")])
    assert table.match("GET", "/users/me").id == "b"
    assert table.match("GET", "/users/7").id == "a"
    assert table.match("GET", "/teams/me").id == "c"
    assert table.match("POST", "/users/me") is None
    assert table.match("GET", "/users/7/extra") is None


def test_events_patch_the_table():
    table = RouteConfigTable()
    table.replace_all([config("a", "/a")])
    table.apply("created", config("b", "/b"))
    assert table.match("GET", "/b").id == "b"
    table.apply("updated", config("b", "/b", active=False))
    assert table.match("GET", "/b") is None
    table.apply("updated", config("a", "/a2"))
    assert table.match("GET", "/a") is None and table.match("GET", "/a2").id == "a"
    table.remove(["a"])
    assert len(table) == 0


def test_trailing_slashes_and_root():
    table = RouteConfigTable()
    table.replace_all([config("a", "/shop/"), config("r", "/")])
    assert table.match("GET", "/shop").id == "a"
    assert table.match("GET", "/").id == "r"
