"""Request → handler payload pieces (WORKERS.md §3.3) and middleware input (§3.4)."""

from __future__ import annotations

from actors.http.request import (
    base_payload,
    handler_payload,
    header_map,
    is_json_request,
    middleware_input,
    parse_json_body,
    query_params,
)
from actors.http.routes import route_from_trigger


def test_query_params_decoded_last_wins_bare_keys_empty() -> None:
    assert query_params(b"") == {}
    assert query_params(b"q=hello&limit=10") == {"q": "hello", "limit": "10"}
    assert query_params(b"q=1&q=2&q=3") == {"q": "3"}
    assert query_params(b"flag&x=") == {"flag": "", "x": ""}
    assert query_params(b"a%20b=c+d%26e") == {"a b": "c d&e"}
    assert query_params(b"u=%C3%A9t%C3%A9") == {"u": "été"}
    assert query_params(b"&&a=1&") == {"a": "1"}
    # invalid UTF-8 after decoding is replaced, never an error
    assert query_params(b"bad=%FF") == {"bad": "\ufffd"}


def test_headers_lowercased_last_wins_non_ascii_blank() -> None:
    raw = [
        (b"Content-Type", b"application/json"),
        (b"x-multi", b"one"),
        (b"X-Multi", b"two"),
        (b"x-utf8", "café".encode()),
        (b"x-ctrl", b"a\x01b"),
        (b"x-tab", b"a\tb"),
    ]
    assert header_map(raw) == {
        "content-type": "application/json",
        "x-multi": "two",
        "x-utf8": "",
        "x-ctrl": "",
        "x-tab": "a\tb",
    }


def test_json_detection_is_a_case_sensitive_substring_test() -> None:
    assert is_json_request([(b"content-type", b"application/json")])
    assert is_json_request([(b"content-type", b"application/json; charset=utf-8")])
    assert is_json_request([(b"content-type", b"application/vnd.api+json")]) is False
    assert is_json_request([(b"content-type", b"Application/JSON")]) is False
    assert is_json_request([(b"content-type", b"text/plain")]) is False
    assert is_json_request([]) is False


def test_json_body_parsing() -> None:
    assert parse_json_body(b'{"name": "x"}') == {"name": "x"}
    assert parse_json_body(b"[1, 2]") == [1, 2]
    assert parse_json_body(b"") is None
    assert parse_json_body(b"{not json") is None


def test_payload_shape() -> None:
    route = route_from_trigger("t", "f", {"api_path": "test/items/:id", "http_method": "POST"})
    base = base_payload(
        route, "POST", {"id": "abc"}, {"q": "1"}, {"host": "h"}, {"name": "test item"}
    )
    assert base == {
        "query_params": {"q": "1"},
        "path_params": {"id": "abc"},
        "headers": {"host": "h"},
        "path": "test/items/:id",
        "method": "POST",
        "body": {"name": "test item"},
        "trigger": {"type": "http", "path": "test/items/:id", "method": "POST"},
    }
    reader = {"channel_id": "c1", "access_key": "k1", "direction": "read"}
    writer = {"channel_id": "c2", "access_key": "k2", "direction": "write"}
    full = handler_payload(base, reader, writer)
    assert full["request_body"] == reader and full["response"] == writer
    assert "request_body" not in base and "response" not in base  # the condition's payload


def test_middleware_input() -> None:
    assert middleware_input("GET", {"id": "1"}, {"q": "x"}, {"a": "b"}) == {
        "phase": "preHandler",
        "request": {
            "path_params": {"id": "1"},
            "query_params": {"q": "x"},
            "headers": {"a": "b"},
            "method": "GET",
        },
        "context": {},
    }
