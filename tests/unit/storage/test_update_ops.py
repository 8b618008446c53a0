"""Every §1.9 update operation and error path of ``storage.update_ops``.

Pure functions: no trio, no store.
"""

from __future__ import annotations

from typing import Any

import pytest

from storage.update_ops import DOC_URL, InvalidOpsError, apply_ops, parse_ops

MISSING = object()


def run(current: Any, *ops: dict[str, Any]) -> tuple[Any, list[dict[str, Any]]]:
    """Apply ``ops`` to ``current`` (``MISSING`` = the key does not exist)."""
    exists = current is not MISSING
    return apply_ops(current if exists else None, exists=exists, ops=parse_ops(list(ops)))


def codes(errors: list[dict[str, Any]]) -> list[tuple[int, str]]:
    return [(e["op_index"], e["code"]) for e in errors]


# ----------------------------------------------------------------------------- parse


@pytest.mark.parametrize(
    "ops, fragment",
    [
        ({"type": "set"}, "expected an array"),
        ([1], "ops[0]: expected an object"),
        ([{"path": "a"}], "unknown variant"),
        ([{"type": "Set", "path": "a"}], "unknown variant"),
        ([{"type": "set", "value": 1}], "missing field `path`"),
        ([{"type": "set", "path": ["a"], "value": 1}], "ops[0].path: expected a string"),
        ([{"type": "remove", "path": None}], "ops[0].path: expected a string"),
        ([{"type": "increment", "path": "a"}], "missing field `by`"),
        ([{"type": "increment", "path": "a", "by": 1.5}], "expected an integer"),
        ([{"type": "decrement", "path": "a", "by": 1.0}], "expected an integer"),
        ([{"type": "increment", "path": "a", "by": True}], "expected an integer"),
        ([{"type": "increment", "path": "a", "by": "1"}], "expected an integer"),
        ([{"type": "increment", "path": "a", "by": 2**63}], "signed 64-bit"),
        ([{"type": "merge", "path": 3, "value": {}}], "string or an array"),
        ([{"type": "append", "path": ["a", 1], "value": 1}], "ops[0].path[1]"),
        ([{"type": "set", "path": "a", "value": 1}, {"type": "nope"}], "ops[1]"),
    ],
)
def test_parse_rejects_bad_shapes(ops: Any, fragment: str) -> None:
    with pytest.raises(InvalidOpsError) as info:
        parse_ops(ops)
    assert fragment in str(info.value)


def test_parse_accepts_optional_fields_and_extremes() -> None:
    parsed = parse_ops(
        [
            {"type": "set", "path": "a"},  # value absent → null
            {"type": "merge", "value": {}},
            {"type": "merge", "path": None, "value": {}},
            {"type": "append", "path": [], "value": 1},
            {"type": "increment", "path": "n", "by": -(2**63)},
            {"type": "decrement", "path": "n", "by": 2**63 - 1, "extra": "ignored"},
        ]
    )
    assert [op.path for op in parsed] == [("a",), (), (), (), ("n",), ("n",)]
    assert parsed[0].value is None


def test_empty_ops_on_missing_key_store_empty_object() -> None:
    assert run(MISSING) == ({}, [])


def test_error_entry_shape() -> None:
    _, errors = run(5, {"type": "set", "path": "a", "value": 1})
    assert errors == [
        {
            "op_index": 0,
            "code": "set.target_not_object",
            "message": errors[0]["message"],
            "doc_url": DOC_URL,
        }
    ]
    assert errors[0]["message"]


# ------------------------------------------------------------------------------- set


def test_set_root_replaces_value() -> None:
    assert run({"a": 1}, {"type": "set", "path": "", "value": [1, 2]}) == ([1, 2], [])
    assert run(MISSING, {"type": "set", "path": "", "value": "x"}) == ("x", [])


def test_set_key_inserts_and_overwrites() -> None:
    assert run({"a": 1}, {"type": "set", "path": "a", "value": 2}) == ({"a": 2}, [])
    assert run({"a": 1}, {"type": "set", "path": "b"}) == ({"a": 1, "b": None}, [])
    assert run(MISSING, {"type": "set", "path": "a", "value": {"x": 1}}) == ({"a": {"x": 1}}, [])


def test_set_dotted_path_is_one_key() -> None:
    assert run({}, {"type": "set", "path": "a.b", "value": 1}) == ({"a.b": 1}, [])


@pytest.mark.parametrize("root", [None, 3, "s", [1], True])
def test_set_key_on_non_object(root: Any) -> None:
    value, errors = run(root, {"type": "set", "path": "a", "value": 1})
    assert value == root
    assert codes(errors) == [(0, "set.target_not_object")]


# ----------------------------------------------------------------------------- merge


def test_merge_root_is_shallow() -> None:
    value, errors = run(
        {"a": {"x": 1}, "b": 2},
        {"type": "merge", "value": {"a": {"y": 2}, "c": 3}},
    )
    assert (value, errors) == ({"a": {"y": 2}, "b": 2, "c": 3}, [])


@pytest.mark.parametrize("path", [None, "", []])
def test_merge_root_path_forms(path: Any) -> None:
    assert run({"a": 1}, {"type": "merge", "path": path, "value": {"b": 2}}) == (
        {"a": 1, "b": 2},
        [],
    )


def test_merge_root_on_non_object_is_skipped_without_error() -> None:
    assert run(5, {"type": "merge", "value": {"a": 1}}) == (5, [])
    assert run([1], {"type": "merge", "path": "", "value": {"a": 1}}) == ([1], [])


def test_merge_string_path_is_one_key() -> None:
    value, _ = run({"a.b": {"x": 1}}, {"type": "merge", "path": "a.b", "value": {"y": 2}})
    assert value == {"a.b": {"x": 1, "y": 2}}


def test_merge_nested_creates_and_replaces_intermediates() -> None:
    value, errors = run(
        {"a": 5, "keep": 1},
        {"type": "merge", "path": ["a", "b", "c"], "value": {"z": 1}},
    )
    assert (value, errors) == ({"a": {"b": {"c": {"z": 1}}}, "keep": 1}, [])


def test_merge_nested_into_existing_object() -> None:
    value, _ = run(
        {"a": {"b": {"x": 1, "y": 1}}},
        {"type": "merge", "path": ["a", "b"], "value": {"y": 2}},
    )
    assert value == {"a": {"b": {"x": 1, "y": 2}}}


def test_merge_nested_replaces_non_object_root() -> None:
    assert run("text", {"type": "merge", "path": ["a"], "value": {"b": 1}}) == (
        {"a": {"b": 1}},
        [],
    )
    assert run(None, {"type": "merge", "path": "a", "value": {"b": 1}}) == ({"a": {"b": 1}}, [])


@pytest.mark.parametrize("value", [None, 1, "x", [1], True])
def test_merge_value_not_an_object(value: Any) -> None:
    result, errors = run({"a": 1}, {"type": "merge", "value": value})
    assert result == {"a": 1}
    assert codes(errors) == [(0, "merge.value.not_an_object")]


def test_merge_value_key_limits() -> None:
    ok = {f"k{i}": i for i in range(1024)}
    assert run({}, {"type": "merge", "value": ok})[1] == []
    too_many = {f"k{i}": i for i in range(1025)}
    assert codes(run({}, {"type": "merge", "value": too_many})[1]) == [
        (0, "merge.value.too_many_keys")
    ]


@pytest.mark.parametrize("key", ["__proto__", "constructor", "prototype"])
def test_merge_value_proto_polluted(key: str) -> None:
    value, errors = run({}, {"type": "merge", "value": {"ok": 1, key: 1}})
    assert value == {}
    assert codes(errors) == [(0, "merge.value.proto_polluted")]


def test_merge_value_nested_proto_key_is_allowed() -> None:
    value, errors = run({}, {"type": "merge", "value": {"a": {"__proto__": 1}}})
    assert (value, errors) == ({"a": {"__proto__": 1}}, [])


def nest(depth: int) -> Any:
    """An object ``depth`` levels deep (``nest(1) == {"v": 0}``), arrays and objects mixed."""
    value: Any = 0
    for level in range(depth - 1):
        value = [value] if level % 2 == 0 else {"v": value}
    return {"v": value}


def test_merge_value_depth_limit() -> None:
    assert run({}, {"type": "merge", "value": nest(16)})[1] == []
    assert codes(run({}, {"type": "merge", "value": nest(17)})[1]) == [(0, "merge.value.too_deep")]
    assert run({}, {"type": "merge", "value": {"a": [], "b": {}}})[1] == []


def test_merge_validation_order_path_first() -> None:
    errors = run({}, {"type": "merge", "path": ["__proto__"], "value": 1})[1]
    assert codes(errors) == [(0, "merge.path.proto_polluted")]


# ------------------------------------------------------------------ increment / decrement


@pytest.mark.parametrize("kind, sign", [("increment", 1), ("decrement", -1)])
def test_add_root(kind: str, sign: int) -> None:
    assert run(MISSING, {"type": kind, "path": "", "by": 5}) == (5 * sign, [])
    assert run(10, {"type": kind, "path": "", "by": 3}) == (10 + 3 * sign, [])
    assert run(1.5, {"type": kind, "path": "", "by": 1}) == (1.5 + sign, [])
    bad: Any
    for bad in ({}, None, "1", [1], True):
        value, errors = run(bad, {"type": kind, "path": "", "by": 1})
        assert value == bad
        assert codes(errors) == [(0, f"{kind}.not_number")]


@pytest.mark.parametrize("kind, sign", [("increment", 1), ("decrement", -1)])
def test_add_keyed(kind: str, sign: int) -> None:
    assert run(MISSING, {"type": kind, "path": "n", "by": 2}) == ({"n": 2 * sign}, [])
    assert run({"n": 1}, {"type": kind, "path": "n", "by": 2}) == ({"n": 1 + 2 * sign}, [])
    value, _ = run({"n": 2.5}, {"type": kind, "path": "n", "by": 1})
    assert value == {"n": 2.5 + sign}
    assert isinstance(value["n"], float)
    value, _ = run({"n": 2}, {"type": kind, "path": "n", "by": 1})
    assert isinstance(value["n"], int)
    bad: Any
    for bad in ("1", None, {}, [1], False):
        value, errors = run({"n": bad}, {"type": kind, "path": "n", "by": 1})
        assert value == {"n": bad}
        assert codes(errors) == [(0, f"{kind}.not_number")]
    for root in (3, None, "x", [1]):
        value, errors = run(root, {"type": kind, "path": "n", "by": 1})
        assert value == root
        assert codes(errors) == [(0, f"{kind}.target_not_object")]


def test_add_integer_range() -> None:
    # Fits unsigned 64-bit: allowed. Beyond it, or below signed 64-bit: not_number.
    assert run({"n": 2**63 - 1}, {"type": "increment", "path": "n", "by": 1})[1] == []
    assert run({"n": 2**64 - 2}, {"type": "increment", "path": "n", "by": 1})[0] == {"n": 2**64 - 1}
    value, errors = run({"n": 2**64 - 1}, {"type": "increment", "path": "n", "by": 1})
    assert (value, codes(errors)) == ({"n": 2**64 - 1}, [(0, "increment.not_number")])
    value, errors = run({"n": -(2**63)}, {"type": "decrement", "path": "n", "by": 1})
    assert codes(errors) == [(0, "decrement.not_number")]
    assert codes(run(-(2**63), {"type": "decrement", "path": "", "by": 1})[1]) == [
        (0, "decrement.not_number")
    ]


def test_missing_flag_ends_after_first_successful_op() -> None:
    value, errors = run(
        MISSING,
        {"type": "merge", "value": {"a": 1}},
        {"type": "increment", "path": "", "by": 1},
    )
    assert (value, codes(errors)) == ({"a": 1}, [(1, "increment.not_number")])
    # A failed op does not end it.
    value, errors = run(
        MISSING,
        {"type": "set", "path": "__proto__", "value": 1},
        {"type": "increment", "path": "", "by": 4},
    )
    assert (value, codes(errors)) == (4, [(0, "set.path.proto_polluted")])


# ----------------------------------------------------------------------------- append


@pytest.mark.parametrize("path", [None, "", []])
def test_append_root_missing(path: Any) -> None:
    op = {"type": "append", "path": path}
    assert run(MISSING, {**op, "value": "ab"}) == ("ab", [])
    assert run(MISSING, {**op, "value": 1}) == ([1], [])
    assert run(MISSING, {**op, "value": [1]}) == ([[1]], [])


def test_append_root_existing() -> None:
    assert run(None, {"type": "append", "value": "x"}) == ("x", [])
    assert run(None, {"type": "append", "value": {"a": 1}}) == ([{"a": 1}], [])
    assert run([1], {"type": "append", "value": 2}) == ([1, 2], [])
    assert run("ab", {"type": "append", "value": "cd"}) == ("abcd", [])
    for target, value in [("ab", 1), ("ab", ["c"]), ({}, 1), (3, 1), (True, "x"), ({"a": 1}, "x")]:
        result, errors = run(target, {"type": "append", "value": value})
        assert result == target
        assert codes(errors) == [(0, "append.type_mismatch")]


def test_append_existing_empty_object_root_is_a_mismatch() -> None:
    # Only a *missing* key gets the fresh-value rule at the root; a stored {} does not.
    assert codes(run({}, {"type": "append", "value": 1})[1]) == [(0, "append.type_mismatch")]


@pytest.mark.parametrize("path", ["items", ["items"]])
def test_append_single_segment(path: Any) -> None:
    op = {"type": "append", "path": path}
    assert run(MISSING, {**op, "value": "s"}) == ({"items": "s"}, [])
    assert run({}, {**op, "value": 1}) == ({"items": [1]}, [])
    assert run({"items": None}, {**op, "value": "s"}) == ({"items": "s"}, [])
    assert run({"items": None}, {**op, "value": 2}) == ({"items": [2]}, [])
    assert run({"items": [1]}, {**op, "value": 2}) == ({"items": [1, 2]}, [])
    assert run({"items": "a"}, {**op, "value": "b"}) == ({"items": "ab"}, [])
    for stored, value in [("a", 1), ({"x": 1}, 1), (5, 1)]:
        result, errors = run({"items": stored}, {**op, "value": value})
        assert result == {"items": stored}
        assert codes(errors) == [(0, "append.type_mismatch")]
    for root in (None, 3, "s", [1]):
        result, errors = run(root, {**op, "value": 1})
        assert result == root
        assert codes(errors) == [(0, "append.target_not_object")]


def test_append_multi_segment() -> None:
    op = {"type": "append", "path": ["audit", "events"]}
    assert run(MISSING, {**op, "value": "s"}) == ({"audit": {"events": ["s"]}}, [])
    assert run({"audit": 3}, {**op, "value": 1}) == ({"audit": {"events": [1]}}, [])
    assert run({"audit": {"events": None}}, {**op, "value": "s"}) == (
        {"audit": {"events": ["s"]}},
        [],
    )
    assert run({"audit": {"events": [1]}}, {**op, "value": 2}) == (
        {"audit": {"events": [1, 2]}},
        [],
    )
    assert run({"audit": {"events": "a"}}, {**op, "value": "b"}) == (
        {"audit": {"events": "ab"}},
        [],
    )
    result, errors = run({"audit": {"events": {}}}, {**op, "value": 1})
    assert codes(errors) == [(0, "append.type_mismatch")]
    assert result == {"audit": {"events": {}}}
    for root in (None, 3, [1]):
        assert codes(run(root, {**op, "value": 1})[1]) == [(0, "append.target_not_object")]


def test_appended_values_do_not_alias_op_values() -> None:
    shared = {"n": 1}
    ops = parse_ops(
        [
            {"type": "append", "path": "a", "value": shared},
            {"type": "set", "path": "b", "value": shared},
        ]
    )
    value, _ = apply_ops({}, exists=True, ops=ops)
    value["a"][0]["n"] = 2
    value["b"]["n"] = 3
    assert shared == {"n": 1}


# ----------------------------------------------------------------------------- remove


def test_remove() -> None:
    assert run({"a": 1, "b": 2}, {"type": "remove", "path": "a"}) == ({"b": 2}, [])
    assert run({"b": 2}, {"type": "remove", "path": "a"}) == ({"b": 2}, [])
    assert run(MISSING, {"type": "remove", "path": "a"}) == ({}, [])
    assert run({"a": 1}, {"type": "remove", "path": ""}) == (None, [])
    for root in (None, 1, "s", [1]):
        value, errors = run(root, {"type": "remove", "path": "a"})
        assert value == root
        assert codes(errors) == [(0, "remove.target_not_object")]


# ------------------------------------------------------------------ path validation

ALL_KINDS = ["set", "merge", "increment", "decrement", "append", "remove"]
ARRAY_KINDS = ["merge", "append"]


def op_for(kind: str, path: Any) -> dict[str, Any]:
    op: dict[str, Any] = {"type": kind, "path": path}
    if kind in ("increment", "decrement"):
        op["by"] = 1
    elif kind == "merge":
        op["value"] = {"x": 1}
    elif kind in ("set", "append"):
        op["value"] = 1
    return op


@pytest.mark.parametrize("kind", ALL_KINDS)
@pytest.mark.parametrize("segment", ["__proto__", "constructor", "prototype"])
def test_path_proto_polluted(kind: str, segment: str) -> None:
    value, errors = run({"a": 1}, op_for(kind, segment))
    assert value == {"a": 1}
    assert codes(errors) == [(0, f"{kind}.path.proto_polluted")]


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_path_segment_too_long(kind: str) -> None:
    assert run({}, op_for(kind, "x" * 256))[1] == []
    errors = run({}, op_for(kind, "x" * 257))[1]
    assert codes(errors) == [(0, f"{kind}.path.segment_too_long")]
    # Bytes, not characters: 129 two-byte characters are 258 bytes.
    assert codes(run({}, op_for(kind, "é" * 129))[1]) == [(0, f"{kind}.path.segment_too_long")]


@pytest.mark.parametrize("kind", ARRAY_KINDS)
def test_array_path_depth(kind: str) -> None:
    assert run({}, op_for(kind, ["s"] * 32))[1] == []
    value, errors = run({"a": 1}, op_for(kind, ["s"] * 33))
    assert value == {"a": 1}
    assert codes(errors) == [(0, f"{kind}.path.too_deep")]


@pytest.mark.parametrize("kind", ARRAY_KINDS)
@pytest.mark.parametrize("path", [[""], ["a", ""], ["", "a"]])
def test_array_path_empty_segment(kind: str, path: list[str]) -> None:
    assert codes(run({}, op_for(kind, path))[1]) == [(0, f"{kind}.path.empty_segment")]


@pytest.mark.parametrize("kind", ARRAY_KINDS)
def test_array_path_checks_in_order(kind: str) -> None:
    # too_deep wins over everything; then empty, then too long, then proto.
    assert codes(run({}, op_for(kind, ["__proto__"] * 33))[1]) == [(0, f"{kind}.path.too_deep")]
    assert codes(run({}, op_for(kind, ["x" * 300, ""]))[1]) == [(0, f"{kind}.path.empty_segment")]
    assert codes(run({}, op_for(kind, ["__proto__", "x" * 300]))[1]) == [
        (0, f"{kind}.path.segment_too_long")
    ]
    assert codes(run({}, op_for(kind, ["a", "prototype"]))[1]) == [
        (0, f"{kind}.path.proto_polluted")
    ]


# ---------------------------------------------------------------------- whole updates


def test_spec_example() -> None:
    value, errors = run(
        MISSING,
        {"type": "increment", "path": "count", "by": 1},
        {"type": "append", "path": ["audit", "events"], "value": {"at": 1}},
        {"type": "merge", "value": {"__proto__": 1}},
    )
    assert value == {"count": 1, "audit": {"events": [{"at": 1}]}}
    assert codes(errors) == [(2, "merge.value.proto_polluted")]


def test_failed_ops_are_skipped_and_later_ops_run() -> None:
    value, errors = run(
        {"n": "x", "list": []},
        {"type": "increment", "path": "n", "by": 1},
        {"type": "append", "path": "list", "value": 1},
        {"type": "set", "path": "", "value": 7},
        {"type": "set", "path": "a", "value": 1},
        {"type": "increment", "path": "", "by": 3},
    )
    assert value == 10
    assert codes(errors) == [(0, "increment.not_number"), (3, "set.target_not_object")]
