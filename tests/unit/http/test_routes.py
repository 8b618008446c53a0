"""Route table: matching, replacement, conflicts, 404 vs 405 (WORKERS.md §3.2)."""

from __future__ import annotations

import pytest

from actors.http.routes import (
    Match,
    MethodNotAllowed,
    NotFound,
    Route,
    RouteConflict,
    RouteError,
    RouteTable,
    route_from_trigger,
)


def route(path: str, method: str = "GET", trigger: str | None = None, fn: str = "f") -> Route:
    config = {"api_path": path, "http_method": method}
    return route_from_trigger(trigger or f"t-{method}-{path}", fn, config)


def table(*routes: Route) -> RouteTable:
    t = RouteTable()
    for r in routes:
        t.add(r)
    return t


def test_config_reading() -> None:
    r = route_from_trigger(
        "t1",
        "orders::get",
        {
            "api_path": "orders/:id",
            "http_method": "post",
            "condition_function_id": "cond",
            "middleware_function_ids": ["a", 3, "b"],
        },
        namespace="ns",
        metadata={"m": 1},
    )
    assert r.method == "POST"
    assert r.api_path == "orders/:id"
    assert r.key == "POST:orders/:id"
    assert r.display == "POST /orders/:id"
    assert r.condition_function_id == "cond"
    assert r.middleware_function_ids == ("a", "b")
    assert (r.namespace, r.metadata) == ("ns", {"m": 1})
    assert route_from_trigger("t", "f", {"api_path": "/x"}).method == "GET"


@pytest.mark.parametrize("config", [None, {}, {"http_method": "GET"}, "orders"])
def test_api_path_is_required(config: object) -> None:
    with pytest.raises(RouteError, match="api_path is required for http triggers"):
        route_from_trigger("t", "f", config)


def test_leading_slash_is_optional() -> None:
    t = table(route("orders/:id"))
    found = t.match("GET", "/orders/42")
    assert isinstance(found, Match)
    assert found.path_params == {"id": "42"}
    assert route("/orders/:id").key == route("orders/:id").key == "GET:orders/:id"
    assert route("/").key == "GET:/"


def test_root_route() -> None:
    t = table(route("/"))
    assert isinstance(t.match("GET", "/"), Match)
    assert isinstance(t.match("GET", "/x"), NotFound)


def test_params_are_raw_segments_and_non_empty() -> None:
    t = table(route("/s/:a/:b"))
    found = t.match("GET", "/s/hello%20world/2")
    assert isinstance(found, Match)
    assert found.path_params == {"a": "hello%20world", "b": "2"}
    assert isinstance(t.match("GET", "/s//2"), NotFound)
    assert isinstance(t.match("GET", "/s/1"), NotFound)
    assert isinstance(t.match("GET", "/s/1/2/3"), NotFound)


def test_trailing_slash_is_significant() -> None:
    t = table(route("/a"))
    assert isinstance(t.match("GET", "/a/"), NotFound)
    t.add(route("/a/"))
    assert isinstance(t.match("GET", "/a/"), Match)
    assert len(t) == 2


def test_static_beats_param() -> None:
    me = route("/users/me", fn="me")
    by_id = route("/users/:id", fn="by-id")
    t = table(by_id, me)
    found = t.match("GET", "/users/me")
    assert isinstance(found, Match) and found.route.function_id == "me"
    found = t.match("GET", "/users/7")
    assert isinstance(found, Match) and found.route.function_id == "by-id"


def test_backtracks_to_a_less_specific_shape() -> None:
    t = table(route("/users/me/x", fn="static"), route("/users/:id/y", fn="param"))
    found = t.match("GET", "/users/me/y")
    assert isinstance(found, Match) and found.route.function_id == "param"
    assert found.path_params == {"id": "me"}


def test_same_key_replaces_last_one_wins() -> None:
    t = table(route("/x", trigger="t1", fn="old"))
    replaced = t.add(route("x", trigger="t2", fn="new"))
    assert replaced is not None and replaced.function_id == "old"
    found = t.match("GET", "/x")
    assert isinstance(found, Match) and found.route.function_id == "new"
    # the old owner's unregister is a no-op; the new owner's removes the route
    assert t.remove("t1", "GET:x") is False
    assert isinstance(t.match("GET", "/x"), Match)
    assert t.remove("t2", "GET:x") is True
    assert isinstance(t.match("GET", "/x"), NotFound)


def test_conflicting_param_names() -> None:
    t = table(route("/s/:listId/:userId", trigger="t1", fn="first"))
    with pytest.raises(RouteConflict) as err:
        t.add(route("/s/:userId/:listId", trigger="t2"))
    assert str(err.value) == (
        "Route 'GET /s/:userId/:listId' conflicts with already-registered route "
        "'GET /s/:listId/:userId': routes with identical structure but different "
        "path-parameter names are not supported"
    )
    found = t.match("GET", "/s/1/2")
    assert isinstance(found, Match) and found.route.function_id == "first"
    # another method with the same shape is fine
    t.add(route("/s/:userId/:listId", method="POST", trigger="t3"))


def test_404_vs_405() -> None:
    t = table(route("/orders/:id"), route("/orders/:id", method="DELETE"), route("/ping", "POST"))
    assert isinstance(t.match("GET", "/nothing"), NotFound)
    wrong = t.match("PUT", "/orders/1")
    assert isinstance(wrong, MethodNotAllowed)
    assert wrong.allowed == ("DELETE", "GET")
    assert t.match("GET", "/ping") == MethodNotAllowed(("POST",))


def test_method_found_on_another_shape_wins_over_405() -> None:
    t = table(route("/users/me", "GET", fn="me"), route("/users/:id", "POST", fn="post"))
    found = t.match("POST", "/users/me")
    assert isinstance(found, Match) and found.route.function_id == "post"


def test_head_is_served_by_get() -> None:
    t = table(route("/h"))
    found = t.match("HEAD", "/h")
    assert isinstance(found, Match) and found.route.method == "GET"


def test_unsupported_method_is_accepted_but_never_routed() -> None:
    r = route("/x", method="PROPFIND")
    assert not r.routable
    t = table(r)
    assert len(t) == 0
    assert isinstance(t.match("PROPFIND", "/x"), NotFound)
