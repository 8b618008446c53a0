"""iii-filter v1 (OBSERVE.md §10): every operator, paths, types, absent and null values, the
limits of §10.6, the normal form of §10.7 and the edge cases of §10.8, as tables."""

from __future__ import annotations

import json
from typing import Any

import pytest

from supervisor.engine.observe.filter import CompiledFilter, FilterError, compile_filter

MISSING: dict[str, Any] = {}  # a document without the root


def verdict(flt: Any, doc: Any) -> bool:
    return compile_filter(flt).matches(doc)


# -- §10.8, the spec's own vectors ------------------------------------------------------------

EDGE_CASES: list[tuple[Any, Any, bool]] = [
    ({}, {"input": 1, "output": {"x": [1]}}, True),
    ({}, {}, True),
    ({"output": {"$exists": True}}, {"output": None}, True),
    ({"output": {"$exists": True}}, {}, False),
    ({"input.a": {"$ne": None}}, {"input": {}}, True),
    ({"input": {"$eq": 1}}, {"input": True}, False),
    ({"input": {"$eq": 1}}, {"input": 1.0}, True),
    ({"input.01": {"$exists": True}}, {"input": ["a", "b"]}, False),
    ({"input.01": {"$exists": True}}, {"input": {"01": 1}}, True),
    ({"input.1": {"$eq": "b"}}, {"input": ["a", "b"]}, True),
    ({"input.0": {"$exists": True}}, {"input": "abc"}, False),
    ({"input.a\\.b": {"$eq": 1}}, {"input": {"a.b": 1}}, True),
    ({"input": {"$gt": "\uff61"}}, {"input": "\U0001f600"}, True),
    ({"input.tags": {"$any": {}}}, {"input": {"tags": []}}, False),
    ({"input.tags": {"$any": {}}}, {"input": {"tags": [0]}}, True),
    ({"input.tags": {"$any": {"$eq": "x"}}}, {"input": {"tags": ["y", "x"]}}, True),
    (
        {"input.items": {"$any": {"@.qty": {"$gt": 2}}}},
        {"input": {"items": [{"qty": 1}, {"qty": 3}]}},
        True,
    ),
    (
        {"$or": [{"caller.worker_name": {"$eq": "a"}}, {"metadata.t": {"$in": ["x"]}}]},
        {"metadata": {"t": "x"}},
        True,
    ),
    ({"input": {"$eq": 9007199254740992}}, {"input": 9007199254740993}, True),
]


@pytest.mark.parametrize(("flt", "doc", "expected"), EDGE_CASES)
def test_spec_edge_cases(flt: Any, doc: Any, expected: bool) -> None:
    assert verdict(flt, doc) is expected


EDGE_INVALID: list[tuple[Any, str]] = [
    ({"input": {"$gt": True}}, "`$gt` takes a number or a string, not a boolean"),
    ({"input.x\\y": {"$eq": 1}}, "the escape `\\y`"),
    ({"input.op": "insert"}, "literal values are not allowed"),
    ({"$eq": 1}, "`$eq` needs a path"),
    ({"input.items": {"$any": {"input.x": {"$eq": 1}}}}, "inside `$any` paths start at `@`"),
    ({"input": {"$eq": 9007199254740993}}, "beyond ±2^53"),
    ({"input": {"$eq": "\U0001f600" * 2047}}, "limit 8192"),
]


@pytest.mark.parametrize(("flt", "message"), EDGE_INVALID)
def test_spec_invalid_filters(flt: Any, message: str) -> None:
    with pytest.raises(FilterError) as caught:
        compile_filter(flt)
    assert message in caught.value.message
    assert caught.value.code == "INVALID_FILTER"


# -- every operator: present, absent, null, type mismatches -----------------------------------

OPERATORS: list[tuple[Any, Any, bool]] = [
    # $eq / $ne
    ({"input.a": {"$eq": "x"}}, {"input": {"a": "x"}}, True),
    ({"input.a": {"$eq": "x"}}, {"input": {"a": "y"}}, False),
    ({"input.a": {"$eq": "x"}}, {"input": {}}, False),
    ({"input.a": {"$eq": None}}, {"input": {"a": None}}, True),
    ({"input.a": {"$eq": None}}, {"input": {}}, False),  # absent is not null
    ({"input.a": {"$eq": None}}, {"input": {"a": 0}}, False),
    ({"input.a": {"$eq": "1"}}, {"input": {"a": 1}}, False),  # no coercion
    ({"input.a": {"$eq": True}}, {"input": {"a": 1}}, False),
    ({"input.a": {"$eq": False}}, {"input": {"a": 0}}, False),
    ({"input.a": {"$eq": 0}}, {"input": {"a": -0.0}}, True),
    ({"input.a": {"$eq": [1, 2]}}, {"input": {"a": [1, 2]}}, True),
    ({"input.a": {"$eq": [1, 2]}}, {"input": {"a": [2, 1]}}, False),
    ({"input.a": {"$eq": [1, 2]}}, {"input": {"a": [1, 2, 3]}}, False),
    ({"input.a": {"$eq": {"x": 1, "y": [True]}}}, {"input": {"a": {"y": [True], "x": 1.0}}}, True),
    ({"input.a": {"$eq": {"x": 1}}}, {"input": {"a": {"x": 1, "y": 2}}}, False),
    ({"input.a": {"$eq": {"x": 1, "y": 2}}}, {"input": {"a": {"x": 1}}}, False),
    ({"input.a": {"$eq": {}}}, {"input": {"a": {}}}, True),
    ({"input.a": {"$eq": {}}}, {"input": {"a": []}}, False),
    ({"input.a": {"$ne": "x"}}, {"input": {"a": "y"}}, True),
    ({"input.a": {"$ne": "x"}}, {"input": {"a": "x"}}, False),
    ({"input.a": {"$ne": "x"}}, {"input": {}}, True),
    ({"input.a": {"$ne": "x"}}, MISSING, True),
    ({"input.a": {"$ne": None}}, {"input": {"a": None}}, False),
    # $in / $nin
    ({"input": {"$in": [1, "a", None]}}, {"input": "a"}, True),
    ({"input": {"$in": [1, "a", None]}}, {"input": None}, True),
    ({"input": {"$in": [1, "a", None]}}, {"input": 1.0}, True),
    ({"input": {"$in": [1, "a", None]}}, {"input": "b"}, False),
    ({"input": {"$in": [1, "a", None]}}, MISSING, False),
    ({"input": {"$in": []}}, {"input": 1}, False),
    ({"input": {"$in": [[1], {"k": 2}]}}, {"input": {"k": 2}}, True),
    ({"input": {"$nin": [1, 2]}}, {"input": 3}, True),
    ({"input": {"$nin": [1, 2]}}, {"input": 2}, False),
    ({"input": {"$nin": [1, 2]}}, MISSING, True),
    ({"input": {"$nin": []}}, {"input": 2}, True),
    # ordering, numbers
    ({"input": {"$gt": 5}}, {"input": 6}, True),
    ({"input": {"$gt": 5}}, {"input": 5}, False),
    ({"input": {"$gte": 5}}, {"input": 5.0}, True),
    ({"input": {"$lt": 5}}, {"input": 4.5}, True),
    ({"input": {"$lt": 5}}, {"input": 5}, False),
    ({"input": {"$lte": 5}}, {"input": 5}, True),
    ({"input": {"$lte": -1.5}}, {"input": -2}, True),
    ({"input": {"$gt": 5}}, {"input": "6"}, False),  # a string is not a number
    ({"input": {"$gt": 0}}, {"input": True}, False),  # a boolean is not a number
    ({"input": {"$gt": 0}}, {"input": None}, False),
    ({"input": {"$gt": 0}}, MISSING, False),
    ({"input": {"$lt": 0}}, MISSING, False),
    ({"input": {"$gte": 9007199254740992}}, {"input": 9007199254740993}, True),  # rounded
    ({"input": {"$gt": 9007199254740992}}, {"input": 9007199254740993}, False),
    ({"input": {"$lt": 0}}, {"input": -(10**400)}, False),  # no double holds it: null
    # ordering, strings (code point order)
    ({"input": {"$gt": "a"}}, {"input": "b"}, True),
    ({"input": {"$gt": "a"}}, {"input": "B"}, False),
    ({"input": {"$gte": "abc"}}, {"input": "abc"}, True),
    ({"input": {"$lt": "abc"}}, {"input": "ab"}, True),
    ({"input": {"$lte": ""}}, {"input": ""}, True),
    ({"input": {"$gt": "a"}}, {"input": 1}, False),
    ({"input": {"$lt": "\U0001f600"}}, {"input": "\uffff"}, True),
    # two operators on one path: both must hold
    ({"input": {"$gte": 1, "$lt": 3}}, {"input": 2}, True),
    ({"input": {"$gte": 1, "$lt": 3}}, {"input": 3}, False),
    # $exists
    ({"input.a": {"$exists": True}}, {"input": {"a": None}}, True),
    ({"input.a": {"$exists": True}}, {"input": {}}, False),
    ({"input.a": {"$exists": False}}, {"input": {}}, True),
    ({"input.a": {"$exists": False}}, {"input": {"a": 0}}, False),
    ({"error": {"$exists": False}}, {"input": 1}, True),
    ({"metadata": {"$exists": True}}, {"metadata": None}, True),
    # $prefix
    ({"input": {"$prefix": "ord"}}, {"input": "orders"}, True),
    ({"input": {"$prefix": "ord"}}, {"input": "or"}, False),
    ({"input": {"$prefix": ""}}, {"input": ""}, True),
    ({"input": {"$prefix": ""}}, {"input": 1}, False),
    ({"input": {"$prefix": "1"}}, {"input": 12}, False),
    ({"input": {"$prefix": "a"}}, MISSING, False),
    # $any, operator-object form
    ({"input": {"$any": {"$gt": 2}}}, {"input": [1, 3]}, True),
    ({"input": {"$any": {"$gt": 2}}}, {"input": [1, 2]}, False),
    ({"input": {"$any": {"$gt": 2, "$lt": 4}}}, {"input": [1, 5, 3]}, True),
    ({"input": {"$any": {"$gt": 2, "$lt": 4}}}, {"input": [1, 5]}, False),
    ({"input": {"$any": {"$eq": None}}}, {"input": [None]}, True),
    ({"input": {"$any": {"$exists": True}}}, {"input": [None]}, True),
    ({"input": {"$any": {"$eq": 1}}}, {"input": {"0": 1}}, False),  # not an array
    ({"input": {"$any": {"$eq": "a"}}}, {"input": "abc"}, False),
    ({"input": {"$any": {"$eq": 1}}}, MISSING, False),
    ({"input": {"$any": {"$any": {"$eq": 1}}}}, {"input": [[0], [2, 1]]}, True),
    # $any, filter form
    ({"input": {"$any": {"@": {"$eq": 2}}}}, {"input": [1, 2]}, True),
    ({"input": {"$any": {"@.k": {"$exists": True}}}}, {"input": [{"j": 1}, 3]}, False),
    ({"input": {"$any": {"@.k": {"$exists": False}}}}, {"input": [{"j": 1}]}, True),
    (
        {"input": {"$any": {"$or": [{"@.a": {"$eq": 1}}, {"@.b": {"$eq": 2}}]}}},
        {"input": [{"b": 2}]},
        True,
    ),
    ({"input": {"$any": {"$not": {"@.a": {"$eq": 1}}}}}, {"input": [{"a": 1}]}, False),
    (
        {"input": {"$any": {"@.tags": {"$any": {"@": {"$eq": "x"}}}}}},
        {"input": [{"tags": ["y"]}, {"tags": ["x"]}]},
        True,
    ),
    (
        {"input": {"$any": {"$and": [{"@.a": {"$eq": 1}}, {"@.b": {"$eq": 2}}]}}},
        {"input": [{"a": 1}, {"b": 2}]},
        False,
    ),
    (
        {"input": {"$any": {"$and": [{"@.a": {"$eq": 1}}, {"@.b": {"$eq": 2}}]}}},
        {"input": [{"a": 1, "b": 2}]},
        True,
    ),
    ({"input": {"$any": {}}}, {"input": "x"}, False),
]


@pytest.mark.parametrize(("flt", "doc", "expected"), OPERATORS)
def test_operators(flt: Any, doc: Any, expected: bool) -> None:
    assert verdict(flt, doc) is expected


# -- combinators --------------------------------------------------------------------------------

COMBINATIONS: list[tuple[Any, Any, bool]] = [
    ({"input.a": {"$eq": 1}, "input.b": {"$eq": 2}}, {"input": {"a": 1, "b": 2}}, True),
    ({"input.a": {"$eq": 1}, "input.b": {"$eq": 2}}, {"input": {"a": 1, "b": 3}}, False),
    (
        {"$and": [{"input.a": {"$eq": 1}}, {"input.b": {"$eq": 2}}]},
        {"input": {"a": 1, "b": 2}},
        True,
    ),
    ({"$and": [{"input.a": {"$eq": 1}}, {"input.b": {"$eq": 2}}]}, {"input": {"a": 1}}, False),
    ({"$and": [{}]}, {}, True),
    ({"$or": [{"input": {"$eq": 1}}, {"input": {"$eq": 2}}]}, {"input": 2}, True),
    ({"$or": [{"input": {"$eq": 1}}, {"input": {"$eq": 2}}]}, {"input": 3}, False),
    ({"$or": [{}, {"input": {"$eq": 2}}]}, {"input": 3}, True),  # {} holds always
    ({"$not": {"input": {"$eq": 1}}}, {"input": 1}, False),
    ({"$not": {"input": {"$eq": 1}}}, {"input": 2}, True),
    ({"$not": {"input": {"$eq": 1}}}, MISSING, True),
    ({"$not": {}}, {"input": 1}, False),
    ({"$not": {"$not": {"input": {"$exists": True}}}}, {"input": None}, True),
    (
        {
            "$or": [
                {"$and": [{"input.a": {"$gt": 1}}, {"input.a": {"$lt": 3}}]},
                {"input.b": {"$eq": 0}},
            ]
        },
        {"input": {"a": 2}},
        True,
    ),
    (
        {"input": {"$eq": 1}, "$not": {"output": {"$exists": True}}},
        {"input": 1, "output": 2},
        False,
    ),
]


@pytest.mark.parametrize(("flt", "doc", "expected"), COMBINATIONS)
def test_combinators(flt: Any, doc: Any, expected: bool) -> None:
    assert verdict(flt, doc) is expected


# -- paths ------------------------------------------------------------------------------------

PATHS: list[tuple[Any, Any, bool]] = [
    ({"input": {"$eq": {"a": 1}}}, {"input": {"a": 1}}, True),  # the root alone
    ({"output.a.b.c": {"$eq": 1}}, {"output": {"a": {"b": {"c": 1}}}}, True),
    ({"output.a.b.c": {"$eq": 1}}, {"output": {"a": {"b": 1}}}, False),  # through a number
    ({"output.a.b": {"$exists": True}}, {"output": {"a": None}}, False),  # through null
    ({"input.0.1": {"$eq": "x"}}, {"input": [["w", "x"]]}, True),
    ({"input.2": {"$exists": True}}, {"input": [1, 2]}, False),  # past the end
    ({"input.-1": {"$exists": True}}, {"input": [1, 2]}, False),
    ({"input.+1": {"$exists": True}}, {"input": [1, 2]}, False),
    ({"input.1": {"$exists": True}}, {"input": {"1": "k"}}, True),  # an object key
    ({"input.length": {"$exists": True}}, {"input": [1]}, False),
    ({"input.length": {"$exists": True}}, {"input": "abc"}, False),
    ({"input.0000000000000001": {"$exists": True}}, {"input": [1, 2]}, False),
    ({"input.a\\\\b": {"$eq": 1}}, {"input": {"a\\b": 1}}, True),
    ({"input.a\\.b.c": {"$eq": 1}}, {"input": {"a.b": {"c": 1}}}, True),
    ({"input.a\\.b.c": {"$eq": 1}}, {"input": {"a": {"b": {"c": 1}}}}, False),
    ({"caller.worker_name": {"$eq": "w"}}, {"caller": {"worker_name": "w"}}, True),
    ({"error.code": {"$eq": "E"}}, {"error": {"code": "E", "message": "m"}}, True),
    ({"metadata.tenant": {"$eq": "t"}}, {"metadata": {"tenant": "t"}}, True),
    ({"input.\u00e9t\u00e9": {"$eq": 1}}, {"input": {"\u00e9t\u00e9": 1}}, True),
    ({"input.a": {"$eq": 1}}, "not a document", False),  # a non-object document is empty
    ({"input.a": {"$exists": False}}, None, True),
    ({"input": {"$eq": None}}, {"input": float("nan")}, True),  # no JSON number: null
    ({"input": {"$eq": None}}, {"input": 10**400}, True),
]


@pytest.mark.parametrize(("flt", "doc", "expected"), PATHS)
def test_paths(flt: Any, doc: Any, expected: bool) -> None:
    assert verdict(flt, doc) is expected


def test_sixteen_segments_after_the_root_are_allowed() -> None:
    path = "input." + ".".join(["a"] * 16)
    doc: Any = 1
    for _ in range(16):
        doc = {"a": doc}
    assert verdict({path: {"$eq": 1}}, {"input": doc})


# -- invalid filters --------------------------------------------------------------------------


def nested_or(levels: int) -> dict[str, Any]:
    flt: dict[str, Any] = {"input": {"$eq": 1}}
    for _ in range(levels - 1):
        flt = {"$or": [flt]}
    return flt


def nested_not(levels: int) -> dict[str, Any]:
    flt: dict[str, Any] = {"input": {"$eq": 1}}
    for _ in range(levels - 1):
        flt = {"$not": flt}
    return flt


def nested_any(levels: int) -> dict[str, Any]:
    """A filter whose innermost $any operand sits at depth ``levels``."""
    flt: dict[str, Any] = {"@": {"$eq": 1}}
    for _ in range(levels - 2):
        flt = {"@": {"$any": flt}}
    return {"input": {"$any": flt}}


def deep_literal(levels: int) -> Any:
    value: Any = 1
    for _ in range(levels):
        value = [value]
    return value


def deep_json(levels: int) -> dict[str, Any]:
    """A filter nesting ``levels`` arrays/objects in all (the filter itself is one)."""
    return {"input": {"$eq": deep_literal(levels - 2)}}


INVALID: list[tuple[Any, str]] = [
    # not an object, not JSON
    ([], "a filter must be a JSON object, not an array"),
    (None, "a filter must be a JSON object, not null"),
    ("input", "not a string"[:0] + "a filter must be a JSON object, not a string"),
    ({1: {"$eq": 1}}, "is not a string"),
    ({"input": {"$eq": float("nan")}}, "is not a JSON number"),
    ({"input": {"$eq": float("inf")}}, "is not a JSON number"),
    ({"input": {"$eq": -(2**53) - 1}}, "beyond ±2^53"),
    ({"input": {"$eq": 1e300}}, "beyond ±2^53"),
    ({"input": {"$eq": "\ud800"}}, "lone surrogate"),
    ({"input.\udc00": {"$eq": 1}}, "lone surrogate"),
    ({"input": {"$eq": {1, 2}}}, "a set is not JSON"),
    (deep_json(121), "more than 120 arrays/objects"),
    # size
    ({"input": {"$eq": "x" * 8200}}, "limit 8192"),
    # structure
    ({"$and": []}, "`$and` takes a non-empty array"),
    ({"$and": {}}, "`$and` takes an array of filters, not an object"),
    ({"$and": [1]}, "a filter must be a JSON object, not a number"),
    ({"$or": []}, "`$or` takes a non-empty array"),
    ({"$or": "x"}, "`$or` takes an array of filters, not a string"),
    ({"$or": [None]}, "a filter must be a JSON object, not null"),
    ({"$not": []}, "`$not` takes a filter object, not an array"),
    ({"$not": True}, "`$not` takes a filter object"),
    ({"$nor": []}, "unknown clause `$nor`"),
    ({"$in": [1]}, "`$in` needs a path"),
    ({"$any": {}}, "`$any` needs a path"),
    ({"input": 1}, "literal values are not allowed"),
    ({"input": None}, "literal values are not allowed"),
    ({"input": [1]}, "literal values are not allowed"),
    ({"input": {"$eq": 1, "x": 2}}, "literal values are not allowed"),
    ({"input": {}}, "empty operator object"),
    ({"input": {"$and": [{}]}}, "`$and` combines filters"),
    ({"input": {"$or": [{}]}}, "`$or` combines filters"),
    ({"input": {"$not": {}}}, "`$not` combines filters"),
    ({"input": {"$regex": "a"}}, "unknown operator `$regex`"),
    ({"input": {"$in": 1}}, "`$in` takes an array, not a number"),
    ({"input": {"$nin": {"a": 1}}}, "`$nin` takes an array, not an object"),
    ({"input": {"$in": list(range(257))}}, "257 items (limit 256)"),
    ({"input": {"$gt": None}}, "`$gt` takes a number or a string, not null"),
    ({"input": {"$gte": [1]}}, "not an array"),
    ({"input": {"$lt": {"a": 1}}}, "not an object"),
    ({"input": {"$lte": False}}, "not a boolean"),
    ({"input": {"$exists": 1}}, "`$exists` takes a boolean, not a number"),
    ({"input": {"$exists": "yes"}}, "`$exists` takes a boolean"),
    ({"input": {"$prefix": 1}}, "`$prefix` takes a string, not a number"),
    ({"input": {"$any": 1}}, "`$any` takes an operator object or a filter over `@`"),
    ({"input": {"$any": []}}, "`$any` takes an operator object or a filter over `@`"),
    ({"input": {"$any": {"$eq": 1, "@": {"$eq": 1}}}}, "`$eq` needs a path"),
    ({"input": {"$any": {"$gt": True}}}, "`$gt` takes a number or a string"),
    ({"input": {"$any": {"@": 1}}}, "literal values are not allowed"),
    # paths
    ({"": {"$eq": 1}}, "empty path"),
    ({"input.": {"$eq": 1}}, "empty segment"),
    ({".input": {"$eq": 1}}, "empty segment"),
    ({"input..a": {"$eq": 1}}, "empty segment"),
    ({"input.a\\": {"$eq": 1}}, "a trailing `\\`"),
    ({"input.a\\n": {"$eq": 1}}, "the escape `\\n`"),
    ({"inputs.a": {"$eq": 1}}, "unknown root `inputs`"),
    ({"result": {"$eq": 1}}, "unknown root `result`"),
    ({"@": {"$eq": 1}}, "`@` is only allowed inside `$any`"),
    ({"@.a": {"$eq": 1}}, "`@` is only allowed inside `$any`"),
    ({"input\\.a": {"$eq": 1}}, "unknown root `input.a`"),
    ({"input." + ".".join(["a"] * 17): {"$eq": 1}}, "17 segments after the root"),
    ({"input.x": {"$any": {"$or": [{"input.y": {"$eq": 1}}]}}}, "inside `$any` paths start at `@`"),
    # literal nesting
    ({"input": {"$eq": deep_literal(33)}}, "nests more than 32"),
    ({"input": {"$ne": deep_literal(33)}}, "nests more than 32"),
    ({"input": {"$in": [deep_literal(33)]}}, "nests more than 32"),
    ({"input": {"$nin": [1, deep_literal(33)]}}, "nests more than 32"),
    # depth and nodes
    (nested_or(9), "deeper than 8"),
    (nested_not(9), "deeper than 8"),
    (nested_any(9), "deeper than 8"),
    ({"$or": [nested_not(8)]}, "deeper than 8"),
    ({f"input.k{i}": {"$exists": True} for i in range(65)}, "more than 64"),
    (
        {"input": {"$any": {"$eq": 1, "$ne": 2}}, **{f"input.k{i}": {"$eq": i} for i in range(62)}},
        "more than 64",
    ),
    ({"$or": [{f"input.k{i}": {"$eq": i}} for i in range(64)]}, "more than 64"),
    ({"$not": {"$not": {f"input.k{i}": {"$eq": i} for i in range(63)}}}, "more than 64"),
]


@pytest.mark.parametrize(("flt", "message"), INVALID)
def test_invalid_filters_are_refused_with_a_specific_message(flt: Any, message: str) -> None:
    with pytest.raises(FilterError) as caught:
        compile_filter(flt)
    assert message in caught.value.message, caught.value.message


VALID_AT_THE_LIMITS: list[Any] = [
    nested_or(8),
    nested_not(8),
    nested_any(8),
    {"$and": [{"$and": [{"$and": [nested_or(8)]}]}]},  # $and adds no depth
    {f"input.k{i}": {"$exists": True} for i in range(64)},
    {"$or": [{f"input.k{i}": {"$eq": i} for i in range(63)}]},
    {"input": {"$in": list(range(256))}},
    {"input": {"$eq": deep_literal(32)}},
    {"input": {"$eq": 2**53}},
    {"input": {"$eq": -(2**53)}},
    {"input": {"$eq": "x" * (8192 - len('{"input":{"$eq":""}}'))}},
    deep_json(34),  # nesting within 120 overall, but literal nesting 32 is the tighter bound
    {"input": {"$eq": "\U0001f600" * 2040}},
]


@pytest.mark.parametrize("flt", VALID_AT_THE_LIMITS)
def test_filters_at_the_limits_are_accepted(flt: Any) -> None:
    assert isinstance(compile_filter(flt), CompiledFilter)


def test_the_size_limit_counts_utf8_bytes_of_compact_json() -> None:
    base = len('{"input":{"$eq":""}}')
    compile_filter({"input": {"$eq": "é" * ((8192 - base) // 2)}})
    with pytest.raises(FilterError):
        compile_filter({"input": {"$eq": "é" * ((8192 - base) // 2 + 1)}})


def test_the_size_limit_is_checked_before_the_structure() -> None:
    with pytest.raises(FilterError, match="limit 8192"):
        compile_filter({"$bad": "x" * 9000})


def test_json_checks_come_before_the_size() -> None:
    with pytest.raises(FilterError, match="beyond"):
        compile_filter({"input": {"$eq": 2**60}, "pad": "x" * 9000})


# -- the normal form (§10.7) -----------------------------------------------------------------

NORMAL: list[tuple[Any, Any]] = [
    ({}, {}),
    ({"input.n": {"$gte": 2}}, {"$and": [{"input.n": {"$gte": 2}}]}),
    (
        {"input.a": {"$eq": 1}, "output": {"$exists": True}},
        {"$and": [{"input.a": {"$eq": 1}}, {"output": {"$exists": True}}]},
    ),
    (
        {
            "$and": [
                {"input.a": {"$eq": 1}, "input.b": {"$eq": 2}},
                {"$and": [{"input.c": {"$eq": 3}}]},
            ]
        },
        {"$and": [{"input.a": {"$eq": 1}}, {"input.b": {"$eq": 2}}, {"input.c": {"$eq": 3}}]},
    ),
    (
        {"$or": [{"input": {"$eq": 1}}], "$not": {"input": {"$eq": 2}}},
        {"$and": [{"$or": [{"input": {"$eq": 1}}]}, {"$not": {"input": {"$eq": 2}}}]},
    ),
    ({"$and": [{}]}, {}),
    ({"$and": [{}, {"input": {"$eq": 1}}]}, {"$and": [{"input": {"$eq": 1}}]}),
]


@pytest.mark.parametrize(("flt", "normal"), NORMAL)
def test_normal_form(flt: Any, normal: Any) -> None:
    compiled = compile_filter(flt)
    assert compiled.normal == normal
    again = compile_filter(normal)  # the normal form is a valid, equivalent filter
    assert again.normal == normal


def test_the_normal_form_may_exceed_the_size_limit() -> None:
    def build(width: int) -> dict[str, Any]:
        return {f"input.k{i}": {"$eq": "x" * width} for i in range(64)}

    def size(value: Any) -> int:
        return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False))

    width = max(w for w in range(100, 130) if size(build(w)) <= 8192)
    flt = build(width)
    compiled = compile_filter(flt)
    assert size(compiled.normal) > 8192 and len(compiled.normal["$and"]) == 64


def test_roots_lists_the_roots_a_filter_reads() -> None:
    compiled = compile_filter(
        {
            "input.a": {"$eq": 1},
            "$or": [{"error": {"$exists": True}}],
            "caller": {"$any": {"@.x": {"$eq": 1}}},
        }
    )
    assert compiled.roots == {"input", "error", "caller"}
    assert compile_filter({}).roots == frozenset() and compile_filter({}).match_all


def test_evaluation_is_total() -> None:
    class Weird(dict[str, Any]):
        def __contains__(self, key: object) -> bool:
            raise RuntimeError("boom")

    assert compile_filter({"input": {"$exists": True}}).matches(Weird()) is False


def test_filter_error_carries_its_message() -> None:
    with pytest.raises(FilterError) as caught:
        compile_filter({"input": 1})
    assert str(caught.value) == caught.value.message
