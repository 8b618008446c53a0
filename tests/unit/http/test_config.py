"""The iii-http config block (WORKERS.md §3.1): defaults and strict validation."""

from __future__ import annotations

from typing import Any

import pytest

from actors.http.config import parse_config
from manifests.blocks import BlockError
from manifests.blocks.http import HttpCors, HttpMiddleware


def test_defaults() -> None:
    raw: Any
    for raw in (None, {}):
        s = parse_config(raw)
        assert (s.port, s.host, s.default_timeout, s.concurrency_request_limit) == (
            3111,
            "0.0.0.0",
            30000,
            1024,
        )
        assert s.cors is None and s.middleware == () and s.pre_handlers == ()
        assert s.timeout_s == 30.0


def test_full_block() -> None:
    s = parse_config(
        {
            "port": 0,
            "host": "127.0.0.1",
            "default_timeout": 500,
            "concurrency_request_limit": 8,
            "cors": {"allowed_origins": ["http://localhost:3000"], "allowed_methods": ["GET"]},
            "middleware": [
                {"function_id": "b", "priority": 10},
                {"function_id": "skip", "phase": "onResponse"},
                {"function_id": "a", "phase": "preHandler", "priority": -1},
                {"function_id": "c", "priority": 10},
            ],
        }
    )
    assert s.port == 0 and s.timeout_s == 0.5 and s.concurrency_request_limit == 8
    assert s.cors == HttpCors(("http://localhost:3000",), ("GET",))
    assert s.pre_handlers == (
        HttpMiddleware("a", "preHandler", -1),
        HttpMiddleware("b", "preHandler", 10),
        HttpMiddleware("c", "preHandler", 10),
    )


def test_zero_concurrency_is_clamped() -> None:
    assert parse_config({"concurrency_request_limit": 0}).request_limit == 1


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"prot": 1}, "prot: unknown field `prot`"),
        ({"port": 70000}, "port: must be between 0 and 65535"),
        ({"port": "3111"}, "port: expected an integer, got string"),
        ({"port": True}, "port: expected an integer, got boolean"),
        ({"host": 1}, "host: expected a string"),
        ({"default_timeout": -1}, "default_timeout: must be >= 0"),
        ({"concurrency_request_limit": -5}, "concurrency_request_limit: must be >= 0"),
        ({"cors": []}, "cors: expected an object"),
        ({"cors": {"allowed_origin": []}}, "cors.allowed_origin: unknown field"),
        ({"cors": {"allowed_origins": ["a", 2]}}, r"cors.allowed_origins\[1\]: expected a string"),
        ({"cors": {"allowed_methods": "GET"}}, "cors.allowed_methods: expected an array"),
        ({"middleware": {}}, "middleware: expected an array"),
        ({"middleware": [{"priority": 1}]}, r"middleware\[0\].function_id: missing required"),
        ({"middleware": [{"function_id": "f", "x": 1}]}, r"middleware\[0\].x: unknown field"),
        ({"middleware": [{"function_id": "f", "priority": "1"}]}, "priority: expected an integer"),
        ("nope", "config: expected an object"),
    ],
)
def test_errors_name_the_field(raw: object, message: str) -> None:
    with pytest.raises(BlockError, match=message):
        parse_config(raw)
