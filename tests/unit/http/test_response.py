"""Handler/middleware results → responses, engine envelopes, mode-B control (§3.4–§3.7)."""

from __future__ import annotations

import json
import re

import pytest

from actors.http.response import (
    StreamHead,
    condition_not_met,
    from_handler_result,
    from_middleware_respond,
    function_error,
    gateway_timeout,
    handler_headers,
    method_not_allowed,
    middleware_timeout,
    not_found,
)


def header(reply_headers: list[tuple[str, str]], name: str) -> list[str]:
    return [v for k, v in reply_headers if k.lower() == name]


def test_envelope_result() -> None:
    r = from_handler_result({"status_code": 201, "headers": {"X-Id": "42"}, "body": {"ok": 1}})
    assert r.status == 201
    assert header(r.headers, "x-id") == ["42"]
    assert header(r.headers, "content-type") == ["application/json"]
    assert json.loads(r.body) == {"ok": 1}


@pytest.mark.parametrize("status", [None, "201", 99, 100, 101, 199, 1000, True, 2.5])
def test_invalid_status_is_200(status: object) -> None:
    assert from_handler_result({"status_code": status}).status == 200


def test_unusual_but_valid_statuses_pass() -> None:
    assert from_handler_result({"status_code": 999}).status == 999
    assert from_handler_result({"status_code": 204}).status == 204


def test_absent_body_is_empty_object_and_bare_values_are_not_envelopes() -> None:
    assert from_handler_result({"status_code": 200}).body == b"{}"
    assert from_handler_result({"id": 1}).body == b"{}"
    r = from_handler_result("hello")
    assert (r.status, r.body) == (200, b"{}")
    assert header(r.headers, "content-type") == ["application/json"]
    # an explicit null body without a content-type is JSON null
    assert from_handler_result({"body": None}).body == b"null"


def test_custom_content_type_serialisation() -> None:
    xml = from_handler_result({"headers": {"Content-Type": "text/xml"}, "body": "<a/>"})
    assert xml.body == b"<a/>"
    assert header(xml.headers, "content-type") == ["text/xml"]  # verbatim, no charset
    empty = from_handler_result({"headers": {"content-type": "text/plain"}, "body": None})
    assert empty.body == b""
    as_text = from_handler_result({"headers": {"content-type": "text/plain"}, "body": {"a": 1}})
    assert as_text.body == b'{"a":1}'
    js = from_handler_result(
        {"headers": {"content-type": "application/json; charset=utf-8"}, "body": [1]}
    )
    assert js.body == b"[1]"
    assert header(js.headers, "content-type") == ["application/json; charset=utf-8"]
    # a JSON string body without a content-type is JSON-encoded
    assert from_handler_result({"body": "hi"}).body == b'"hi"'


def test_headers_object_and_array_forms() -> None:
    assert handler_headers({"A": "1", "B": 2, "C": None}) == [("A", "1")]
    assert handler_headers(["X-One: 1", " X-Two :  two: parts ", "no-colon", ": empty", 5]) == [
        ("X-One", "1"),
        ("X-Two", "two: parts"),
    ]
    assert handler_headers("nope") == []


def test_framing_headers_are_the_servers_own() -> None:
    assert handler_headers({"Content-Length": "5", "transfer-encoding": "gzip", "X": "1"}) == [
        ("X", "1")
    ]
    head = StreamHead()
    head.apply('{"type":"set_headers","headers":{"Content-Length":"9","x":"y"}}')
    head.apply('{"type":"set_status","status_code":101}')
    assert head.header_list() == [("x", "y")]
    assert head.status == 200


def test_invalid_headers_are_skipped() -> None:
    assert handler_headers({"bad name": "x", "x-nl": "a\r\nb", "ok": "v"}) == [("ok", "v")]


def test_utf8_header_value_is_carried_as_bytes() -> None:
    [(name, value)] = handler_headers({"x-utf8": "café"})
    assert value.encode("latin-1") == "café".encode()


def test_engine_envelopes() -> None:
    nf = not_found()
    assert nf.status == 404
    assert json.loads(nf.body) == {"error": {"code": "NOT_FOUND", "message": "Not Found"}}
    assert header(nf.headers, "content-type") == ["application/json"]
    na = method_not_allowed(("GET", "POST"))
    assert (na.status, na.body, header(na.headers, "allow")) == (405, b"", ["GET, POST"])
    err = function_error("BOOM", "it broke")
    body = json.loads(err.body)
    assert err.status == 500
    assert body["error"]["code"] == "BOOM" and body["error"]["message"] == "it broke"
    assert re.fullmatch(r"[0-9a-f]+", body["error"]["error_id"])
    cn = condition_not_met()
    assert cn.status == 422
    assert json.loads(cn.body) == {
        "error": {"code": "CONDITION_NOT_MET", "message": "Request condition not met"},
        "skipped": True,
    }
    mt = middleware_timeout()
    assert mt.status == 504
    assert json.loads(mt.body) == {
        "error": {"code": "MIDDLEWARE_TIMEOUT", "message": "Middleware timeout"}
    }
    gt = gateway_timeout()
    assert (gt.status, gt.body) == (504, b"")


def test_middleware_respond() -> None:
    r = from_middleware_respond(
        {"status_code": 403, "body": {"error": "nope"}, "headers": {"X": "1"}}
    )
    assert r.status == 403
    assert json.loads(r.body) == {"error": "nope"}
    assert header(r.headers, "content-type") == ["application/json"]
    assert header(r.headers, "x") == ["1"]
    default = from_middleware_respond({})
    assert (default.status, default.body) == (200, b"null")
    # a string body is still sent as JSON; a handler-style header array is not supported
    assert from_middleware_respond({"body": "s", "headers": ["A: 1"]}).body == b'"s"'
    assert header(from_middleware_respond({"headers": ["A: 1"]}).headers, "a") == []
    custom = from_middleware_respond({"headers": {"Content-Type": "text/plain"}})
    assert header(custom.headers, "content-type") == ["text/plain"]


def test_stream_head_control_messages() -> None:
    head = StreamHead()
    head.apply('{"type":"set_status","status_code":201}')
    head.apply('{"type":"set_status","status_code":600}')  # out of range: ignored
    head.apply('{"type":"set_status","status_code":"404"}')  # not an integer: ignored
    head.apply('{"type":"set_headers","headers":{"Content-Type":"text/event-stream","n":1}}')
    head.apply('{"type":"set_headers","headers":{"content-type":"application/pdf","x":"y"}}')
    head.apply("not json")
    head.apply('{"type":"unknown"}')
    head.apply("[1,2]")
    assert head.status == 201
    assert head.header_list() == [("content-type", "application/pdf"), ("x", "y")]
