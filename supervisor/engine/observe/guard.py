"""A cheap pre-check before a filter runs: a top-level ``$eq`` clause on a plain path with a
scalar literal (the commonest filter: ``{"input.op": {"$eq": "insert"}}``) is tested by
resolving the path and comparing once, so an observer whose filter cannot match costs a
dict walk instead of a whole evaluation.

Conservative by construction: ``fails`` says True only where iii-filter v1 (OBSERVE.md
§10.3–§10.5) surely does not match; every other case goes to the compiled filter.
"""

from __future__ import annotations

import math
import re
from typing import Any

ROOTS = frozenset({"input", "output", "error", "caller", "metadata"})
_INDEX = re.compile(r"0|[1-9][0-9]{0,14}")


class _Absent:
    __slots__ = ()


ABSENT: Any = _Absent()
_EXACT = 2**53  # integers up to this compare as doubles do
Guard = tuple[tuple[str, ...], Any]  # (path segments, literal)


def eq_guard(normal: Any) -> Guard | None:
    """The first top-level ``{path: {"$eq": scalar, ...}}`` clause of a normal-form filter."""
    if not isinstance(normal, dict):
        return None
    clauses = normal.get("$and")
    if not isinstance(clauses, list):
        return None
    for clause in clauses:
        if not isinstance(clause, dict) or len(clause) != 1:
            continue
        ((path, ops),) = clause.items()
        if not isinstance(path, str) or path.startswith("$") or "\\" in path:
            continue
        if not isinstance(ops, dict) or "$eq" not in ops:
            continue
        literal = ops["$eq"]
        if not (literal is None or isinstance(literal, str | int | float | bool)):
            continue
        segments = tuple(path.split("."))
        if segments[0] not in ROOTS or not all(segments):
            continue
        return segments, literal
    return None


_ORDER: dict[str, Any] = {
    "$gt": lambda a, b: a > b,
    "$gte": lambda a, b: a >= b,
    "$lt": lambda a, b: a < b,
    "$lte": lambda a, b: a <= b,
}
RangeGuard = tuple[tuple[str, ...], Any, Any]  # (path segments, comparison, operand)


def range_guard(normal: Any) -> RangeGuard | None:
    """The first top-level ``{path: {"$gt"|"$gte"|"$lt"|"$lte": number or string}}`` clause."""
    if not isinstance(normal, dict) or not isinstance(normal.get("$and"), list):
        return None
    for clause in normal["$and"]:
        if not isinstance(clause, dict) or len(clause) != 1:
            continue
        ((path, ops),) = clause.items()
        if not isinstance(path, str) or path.startswith("$") or "\\" in path:
            continue
        if not isinstance(ops, dict):
            continue
        segments = tuple(path.split("."))
        if segments[0] not in ROOTS or not all(segments):
            continue
        for op, operand in ops.items():
            if (
                op in _ORDER
                and isinstance(operand, str | int | float)
                and type(operand) is not bool
            ):
                return segments, _ORDER[op], operand
    return None


def range_fails(value: Any, holds: Any, operand: Any) -> bool:
    """True only if the comparison ``value <op> operand`` surely does not hold (§10.4)."""
    kind = type(value)
    if kind is type(operand):  # the common case: one comparison
        if kind is str or (kind is int and -_EXACT <= value <= _EXACT):
            return not holds(value, operand)
    if value is ABSENT:
        return True
    if isinstance(operand, str):
        return not isinstance(value, str) or not holds(value, operand)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return True
    if isinstance(value, float) and not math.isfinite(value):
        return False  # read as null: let the evaluator decide
    if isinstance(value, int) and value.bit_length() > 1023:
        return False
    return not holds(float(value), float(operand))


def resolve(doc: dict[str, Any], segments: tuple[str, ...]) -> Any:
    """The value at ``segments`` (§10.3 rule 5), or ``ABSENT``."""
    value: Any = doc
    for seg in segments:
        if isinstance(value, dict):
            if seg not in value:
                return ABSENT
            value = value[seg]
        elif isinstance(value, list):
            if not _INDEX.fullmatch(seg) or int(seg) >= len(value):
                return ABSENT
            value = value[int(seg)]
        else:
            return ABSENT
    return value


def fails(value: Any, literal: Any) -> bool:
    """True only if ``{path: {"$eq": literal}}`` surely does not hold for ``value``."""
    kind = type(value)
    if kind is type(literal):  # the common case: one comparison
        if kind is str:
            return value != literal
        if kind is int and -_EXACT <= value <= _EXACT:
            return value != literal
    if value is ABSENT:
        return True
    if isinstance(value, float) and not math.isfinite(value):
        return False  # read as null by the evaluator: let it decide
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 1023:
        return False  # no double holds it: read as null too
    if isinstance(literal, str):
        return not isinstance(value, str) or value != literal
    if isinstance(literal, bool):
        return not isinstance(value, bool) or value is not literal
    if literal is None:
        return value is not None
    if isinstance(value, bool) or not isinstance(value, int | float):
        return True
    return float(value) != float(literal)


def index_key(value: Any) -> tuple[str, Any] | None:
    """The key a value files under in a ``Watch`` index: strings by value, numbers by double
    (as §10.5 compares them); None for anything no indexed literal can equal."""
    kind = type(value)
    if kind is str:
        return ("s", value)
    if kind is int:
        if value.bit_length() > 1023:
            return None  # no double holds it: read as null
        return ("n", float(value))
    if kind is float:
        return ("n", value) if math.isfinite(value) else None
    return None


class Watch:
    """The active observers of one function, as a completion matches them: observers whose
    filter starts with ``{path: {"$eq": string or number}}`` filed by path and literal, so
    those that cannot match cost nothing; the others (``rest``) are evaluated one by one."""

    __slots__ = ("by_path", "observers", "reads_caller", "rest")

    def __init__(self, observers: tuple[Any, ...], reads_caller: bool) -> None:
        self.observers = observers
        self.reads_caller = reads_caller
        self.by_path: dict[tuple[str, ...], dict[tuple[str, Any], list[Any]]] = {}
        rest: list[Any] = []
        for obs in observers:
            guard = obs.guard
            key = index_key(guard[1]) if guard is not None else None
            if guard is None or key is None or type(guard[1]) is bool:
                rest.append(obs)
                continue
            self.by_path.setdefault(guard[0], {}).setdefault(key, []).append(obs)
        self.rest = tuple(rest)

    def candidates(self, doc: dict[str, Any]) -> list[Any]:
        """The observers whose filter may match ``doc``, in their original order."""
        found: list[Any] = list(self.rest)
        for path, table in self.by_path.items():
            key = index_key(resolve(doc, path))
            if key is not None:
                found.extend(table.get(key, ()))
        if len(found) > 1 and self.by_path:
            order = {id(o): i for i, o in enumerate(self.observers)}
            found.sort(key=lambda o: order[id(o)])
        return found
