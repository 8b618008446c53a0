"""The ``$eq`` pre-check never refuses what the iii-filter v1 evaluator would match: checked
against the real evaluator over a cross product of literals and document values."""

from __future__ import annotations

import itertools
import math
from typing import Any

import pytest

from supervisor.engine.observe.filter import compile_filter
from supervisor.engine.observe.guard import eq_guard, fails, resolve

LITERALS: list[Any] = [None, True, False, 0, 1, 1.0, -0.0, 2**53, "", "a", "1", "😀"]
VALUES: list[Any] = [
    *LITERALS,
    2**53 + 1,
    10**400,
    math.nan,
    math.inf,
    [1],
    {"a": 1},
    [],
    {},
]
PATHS = ["input", "input.a", "input.0", "input.a.b", "caller.function_id"]


def docs(value: Any) -> list[dict[str, Any]]:
    return [
        {"input": value},
        {"input": {"a": value}},
        {"input": [value]},
        {"input": {"a": {"b": value}}},
        {"input": {"01": value}},
        {"caller": {"function_id": value}},
        {},
    ]


@pytest.mark.parametrize(("path", "literal"), list(itertools.product(PATHS, LITERALS)))
def test_a_guard_that_fails_means_the_filter_does_not_match(path: str, literal: Any) -> None:
    compiled = compile_filter({path: {"$eq": literal}, "metadata.z": {"$ne": 1}})
    guard = eq_guard(compiled.normal)
    assert guard is not None and guard == (tuple(path.split(".")), literal)
    for value in VALUES:
        for doc in docs(value):
            if fails(resolve(doc, guard[0]), guard[1]):
                assert not compiled.matches(doc), (path, literal, doc)


def test_filters_without_a_plain_eq_clause_have_no_guard() -> None:
    assert eq_guard(compile_filter({}).normal) is None
    assert eq_guard(compile_filter({"input.n": {"$gte": 2}}).normal) is None
    assert eq_guard(compile_filter({"input.a\\.b": {"$eq": 1}}).normal) is None
    assert eq_guard(compile_filter({"input": {"$eq": [1]}}).normal) is None
    assert eq_guard(compile_filter({"$or": [{"input": {"$eq": 1}}]}).normal) is None


def test_the_guard_passes_what_matches() -> None:
    compiled = compile_filter({"input.order": {"$eq": 42}})
    guard = eq_guard(compiled.normal)
    assert guard is not None
    doc = {"input": {"order": 42.0}}
    assert not fails(resolve(doc, guard[0]), guard[1]) and compiled.matches(doc)


def test_a_watch_offers_every_observer_that_matches_and_skips_those_that_cannot() -> None:
    from types import SimpleNamespace

    from supervisor.engine.observe.guard import Watch

    filters = [
        {"input.op": {"$eq": "insert"}},
        {"input.op": {"$eq": "delete"}},
        {"input.n": {"$eq": 1}},
        {"input.n": {"$eq": 1.0}, "input.op": {"$eq": "insert"}},
        {"input.flag": {"$eq": True}},
        {"input.n": {"$gte": 0}},
        {},
    ]
    observers = []
    for raw in filters:
        compiled = compile_filter(raw)
        observers.append(SimpleNamespace(guard=eq_guard(compiled.normal), compiled=compiled))
    watch = Watch(tuple(observers), reads_caller=False)
    for value in VALUES:
        for doc in [*docs(value), {"input": {"op": value, "n": value, "flag": value}}]:
            offered = watch.candidates(doc)
            assert [o for o in observers if o.compiled.matches(doc)] == [
                o for o in offered if o.compiled.matches(doc)
            ]
    skipped = watch.candidates({"input": {"op": "update", "n": 7}})
    assert observers[0] not in skipped and observers[1] not in skipped
    assert observers[2] not in skipped and observers[6] in skipped


@pytest.mark.parametrize(
    ("path", "op", "operand"),
    list(
        itertools.product(PATHS, ["$gt", "$gte", "$lt", "$lte"], [0, 1, -0.0, 2**53, "", "a", "😀"])
    ),
)
def test_a_range_guard_that_fails_means_the_filter_does_not_match(
    path: str, op: str, operand: Any
) -> None:
    from supervisor.engine.observe.guard import range_fails, range_guard

    compiled = compile_filter({path: {op: operand}, "metadata.z": {"$ne": 1}})
    guard = range_guard(compiled.normal)
    assert guard is not None and guard[0] == tuple(path.split(".")) and guard[2] == operand
    for value in [*VALUES, 0.5, -1, "b", "A"]:
        for doc in docs(value):
            if range_fails(resolve(doc, guard[0]), guard[1], guard[2]):
                assert not compiled.matches(doc), (path, op, operand, doc)
