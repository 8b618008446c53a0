"""Pure parts of the configuration actor: ``${VAR}`` expansion (WORKERS.md §1.3 flavour B), the
JSON Schema checker, and the config.yaml-wins merge at boot."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import structlog

from actors.configuration.actor import apply_seeds
from actors.configuration.config import directory_of, parse_config
from actors.configuration.expand import coerce_scalar, expand
from actors.configuration.schema import SchemaError, check_schema, json_equal, violations
from actors.configuration.seeding import Discard, engine_run, merge_seed
from actors.configuration.store import Entry, FsStore
from actors.runtime import resolve_path
from manifests.blocks import BlockError

ENV = {"PORT": "8080", "EMPTY": "", "WORD": "on", "ZERO": "007", "HOST": "db"}


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("${PORT}", 8080),
        ("  ${PORT}  ", 8080),
        ("${MISSING:3111}", 3111),
        ("${MISSING:true}", True),
        ("${MISSING:1.5}", 1.5),
        ("${MISSING:redis://localhost:6379/0}", "redis://localhost:6379/0"),
        ("${MISSING:-y}", "-y"),  # not shell syntax: the default is "-y"
        ("${EMPTY}", ""),
        ("${MISSING:}", ""),
        ("${WORD}", "on"),
        ("${ZERO}", "007"),
        ("http://${HOST}:${PORT}", "http://db:8080"),
        ("port ${PORT}", "port 8080"),
        ("$PORT", "$PORT"),
        ("${PORT", "${PORT"),
    ],
)
def test_expand_string_leaves(raw: str, expected: Any) -> None:
    result = expand({"v": raw}, ENV)
    assert result.missing == ()
    assert json_equal(result.value["v"], expected)


def test_expand_walks_values_not_keys_and_reports_missing() -> None:
    value = {"${PORT}": ["${A}", {"b": "x ${B} ${A}"}], "n": 1, "t": True, "z": None}
    result = expand(value, ENV)
    assert result.value == {"${PORT}": ["${A}", {"b": "x ${B} ${A}"}], "n": 1, "t": True, "z": None}
    assert result.missing == ("A", "B")


def test_coerce_scalar_is_yaml_core_with_the_documented_exceptions() -> None:
    assert coerce_scalar("42") == 42 and coerce_scalar("-3") == -3
    assert coerce_scalar("0x1f") == 31 and coerce_scalar("0o17") == 15
    assert coerce_scalar("1e3") == 1000.0 and coerce_scalar(".5") == 0.5
    assert coerce_scalar("FALSE") is False and coerce_scalar("null") is None
    for stays in ("yes", "no", "off", "007", "1e999", "abc", "1.2.3"):
        assert coerce_scalar(stays) == stays


SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "required": ["port"],
    "definitions": {"port": {"type": "integer", "minimum": 1, "maximum": 65535}},
    "properties": {
        "port": {"$ref": "#/definitions/port"},
        "host": {"type": "string", "minLength": 1, "pattern": "^[a-z0-9.]+$"},
        "mode": {"enum": ["a", "b"]},
        "tags": {"type": "array", "items": {"type": "string"}, "uniqueItems": True},
        "adapter": {
            "oneOf": [
                {"type": "object", "properties": {"name": {"const": "kv"}}, "required": ["name"]},
                {
                    "type": "object",
                    "properties": {"name": {"const": "redis"}},
                    "required": ["name"],
                },
            ]
        },
    },
}


def test_schema_accepts_valid_values() -> None:
    check_schema(SCHEMA)
    ok = {"port": 80, "host": "a.b", "mode": "a", "tags": ["x", "y"], "adapter": {"name": "kv"}}
    assert violations(SCHEMA, ok) == []
    assert violations(SCHEMA, {"port": 80.0}) == []  # an integral number is an integer


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ({}, 'missing required property "port"'),
        ({"port": 0}, "/port: 0 is less than the minimum of 1"),
        ({"port": "80"}, '/port: "80" is not of type integer'),
        ({"port": True}, "is not of type integer"),
        ({"port": 1, "x": 1}, 'additional property "x" is not allowed'),
        ({"port": 1, "host": "A"}, "does not match"),
        ({"port": 1, "mode": "c"}, "is not one of"),
        ({"port": 1, "tags": ["a", "a"]}, "not unique"),
        ({"port": 1, "adapter": {"name": "nope"}}, "matches 0 of the `oneOf` schemas"),
    ],
)
def test_schema_reports_violations(value: Any, fragment: str) -> None:
    found = violations(SCHEMA, value)
    assert any(fragment in v for v in found), found


@pytest.mark.parametrize(
    "schema",
    [
        {"type": "integr"},
        {"minimum": "1"},
        {"required": "port"},
        {"properties": {"a": 1}},
        {"pattern": "("},
        {"$ref": "#/definitions/missing"},
        {"anyOf": []},
        "not a schema",
    ],
)
def test_uncompilable_schemas_are_refused(schema: Any) -> None:
    with pytest.raises(SchemaError):
        check_schema(schema)


def test_json_equal_distinguishes_booleans_from_numbers() -> None:
    assert json_equal(1, 1.0) and not json_equal(True, 1) and not json_equal([0], [False])


def test_merge_seed_config_yaml_keys_win() -> None:
    merged, discards = merge_seed({"a": 1, "b": 2, "c": 3}, {"a": 1, "b": 20, "d": 4})
    assert merged == {"a": 1, "b": 20, "c": 3, "d": 4}
    assert discards == [Discard("b", 2, 20)]
    assert merge_seed(5, {"a": 1}) == ({"a": 1}, [Discard(None, 5, {"a": 1})])
    assert merge_seed(None, {"a": 1}) == ({"a": 1}, [])


def test_apply_seeds_persists_and_logs_discards(tmp_path: Path) -> None:
    store = FsStore(tmp_path / "config")
    entries = store.load()
    store.write(Entry("iii-http", "HTTP", "d", {"port": 1, "host": "h"}))
    entries = store.load()
    with structlog.testing.capture_logs() as logs:
        apply_seeds(store, entries, {"iii-http": {"port": 2}, "iii-state": {"x": 1}, "Bad": {}})
    reloaded = store.load()
    assert reloaded["iii-http"].value == {"port": 2, "host": "h"}
    assert reloaded["iii-http"].description == "d"
    assert (reloaded["iii-state"].name, reloaded["iii-state"].value) == ("State", {"x": 1})
    assert "Bad" not in reloaded
    warnings = [entry for entry in logs if entry["log_level"] == "warning"]
    assert [w["event"] for w in warnings] == [
        "persisted configuration values discarded; config.yaml wins",
        "config.yaml entry ignored: invalid configuration id",
    ]
    assert warnings[0]["discarded"] == [{"field": "port", "persisted": 1, "config_yaml": 2}]


def test_fs_store_skips_unreadable_files(tmp_path: Path) -> None:
    store = FsStore(tmp_path)
    store.write(Entry("good", "G", "", [1, 2]))
    (tmp_path / "broken.yaml").write_text("id: [unclosed")
    (tmp_path / "mismatch.yaml").write_text("id: other\nname: x\ndescription: ''\nvalue: 1\n")
    (tmp_path / "left.yaml.tmp").write_text("partial")
    assert list(store.load()) == ["good"]
    assert not (tmp_path / "left.yaml.tmp").exists()


def test_settings_are_strict(tmp_path: Path) -> None:
    assert resolve_path(directory_of(parse_config(None)), tmp_path) == tmp_path / "config"
    settings = parse_config(
        {"adapter": {"name": "fs", "config": {"directory": "/x"}}, "ttl_seconds": 5, "entries": {}}
    )
    assert (directory_of(settings), settings.ttl_seconds) == ("/x", 5)
    bad: Any
    for bad in (
        {"unknown": 1},
        {"adapter": {"name": "s3"}},
        {"adapter": {"name": "bridge"}},
        {"ttl_seconds": -1},
        {"entries": []},
    ):
        with pytest.raises(BlockError):
            parse_config(bad)


def test_engine_run_identity() -> None:
    assert engine_run({}) is None
    import os

    me = engine_run({"III_ENGINE_PID": str(os.getpid())})
    assert me is not None and me.startswith(f"{os.getpid()}:") and not me.endswith(":?")
