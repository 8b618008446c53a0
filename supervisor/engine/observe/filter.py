"""iii-filter v1 (OBSERVE.md §10): validation, the normal form pushed to owners, evaluation.

Pure: ``compile_filter(raw)`` checks a filter as a worker sent it (the limits and the order of
§10.6) and compiles it once into a tree of closures; ``CompiledFilter.matches(document)``
evaluates it against an observation document ``{input?, output?, error?, caller?, metadata?}``
(a missing key is an absent root, ``None`` the value null). Evaluation is total: a valid
filter never raises, and anything unexpected in a document counts as "no match".

OBSERVE.md and the 0.25 SDK's own evaluator (``iii.filter``, documented as semantically
identical to the engine's) agree on every case tested (tests/unit/observe/test_filter.py,
and the property test in tests/integration/observe/). Where the text leaves room:

* (as the SDK) A ``$any`` operand whose keys are not all value operators is read as a filter over ``@``
  (so ``{"$any": {"$eq": 1, "@.x": {...}}}`` is refused as "``$eq`` needs a path").
* (as the SDK) The encoded size is measured on Python's compact ``json.dumps`` output, as the SDK measures
  it, so number spellings such as ``1e+16`` count as the SDK counts them (a Rust engine
  would write ``1e16``: the two differ only for filters within a few bytes of the limit).
* (our choice: the SDK has no normal form) A filter whose clauses are all empty ``$and`` members (``{"$and": [{}]}``) matches every
  document; its normal form is ``{}``, not the ``{"$and": []}`` §10.7 would literally give,
  which is not a valid filter.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping
from typing import Any

from transport.jsonshape import json_kind

MAX_DEPTH = 8  # nested filters; the top-level filter is depth 1
MAX_NODES = 64  # operators, $or and $not nodes
MAX_SET_ITEMS = 256  # items of one $in / $nin
MAX_SEGMENTS = 16  # path segments after the root
MAX_BYTES = 8192  # UTF-8 bytes of the compact JSON encoding
MAX_LITERAL = 2**53  # |n| of any number in a filter
MAX_LITERAL_NESTING = 32  # arrays/objects in one $eq/$ne operand or $in/$nin item
MAX_JSON_NESTING = 120  # arrays/objects in the whole filter (the filter itself is 1)

ROOTS = ("input", "output", "error", "caller", "metadata")
ELEMENT = "@"
VALUE_OPERATORS = frozenset(
    ("$eq", "$ne", "$in", "$nin", "$gt", "$gte", "$lt", "$lte", "$exists", "$prefix", "$any")
)
COMBINATORS = frozenset(("$and", "$or", "$not"))

_INDEX = re.compile(r"0|[1-9][0-9]{0,14}")


class FilterError(Exception):
    """A filter iii-filter v1 refuses; ``message`` is the text for ``INVALID_FILTER``."""

    code = "INVALID_FILTER"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class _Absent:
    __slots__ = ()

    def __repr__(self) -> str:
        return "<absent>"


ABSENT: Any = _Absent()  # what a path that resolves to nothing yields

# A compiled filter node: (document, current $any element) -> holds?
Pred = Callable[[Mapping[str, Any], Any], bool]
# A compiled operator: (resolved value or ABSENT, document) -> holds?
Test = Callable[[Any, Mapping[str, Any]], bool]


class CompiledFilter:
    """A validated filter: ``normal`` (§10.7), ``roots`` it reads, ``matches(document)``."""

    __slots__ = ("_pred", "match_all", "normal", "roots", "source")

    def __init__(
        self,
        source: dict[str, Any],
        normal: dict[str, Any],
        pred: Pred | None,
        roots: frozenset[str],
    ) -> None:
        self.source = source  # the filter as written (after its JSON check)
        self.normal = normal
        self.roots = roots
        self.match_all = pred is None
        self._pred = pred

    def matches(self, document: Any) -> bool:
        pred = self._pred
        if pred is None:
            return True
        if not isinstance(document, Mapping):
            document = {}
        try:
            return pred(document, None)
        except Exception:  # total: a document the evaluator cannot read does not match
            return False

    def __repr__(self) -> str:
        return f"CompiledFilter({self.source!r})"


def compile_filter(raw: object) -> CompiledFilter:
    """Validate ``raw`` (§10.6, in that order) and compile it; raises ``FilterError``."""
    if not isinstance(raw, dict):
        raise FilterError(f"a filter must be a JSON object, not {json_kind(raw)}")
    _check_json(raw)
    text = json.dumps(raw, separators=(",", ":"), ensure_ascii=False)
    size = len(text.encode("utf-8"))
    if size > MAX_BYTES:
        raise FilterError(f"the filter encodes to {size} bytes (limit {MAX_BYTES})")
    compiler = _Compiler()
    clauses: list[Pred] = []
    top: list[dict[str, Any]] = []
    compiler.clauses(raw, 1, False, clauses, top)
    normal: dict[str, Any] = {"$and": top} if top else {}
    return CompiledFilter(
        raw, normal, _all(clauses) if clauses else None, frozenset(compiler.roots)
    )


# -- step 1: the value is JSON ---------------------------------------------------------------


def _valid_unicode(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate
        return False
    return True


def _check_json(raw: dict[str, Any]) -> None:
    """Objects with string keys, arrays, valid strings, finite numbers within ±2^53, booleans,
    null; at most MAX_JSON_NESTING nested arrays/objects. Iterative: no recursion limit."""
    todo: list[tuple[Any, str, int]] = [(raw, "the filter", 1)]
    seen = 0
    while todo:
        value, where, level = todo.pop()
        seen += 1
        if seen > MAX_BYTES:  # every value takes at least one byte: over the size limit anyway
            raise FilterError(f"the filter encodes to more than {MAX_BYTES} bytes")
        if value is None or isinstance(value, bool):
            continue
        if isinstance(value, str):
            if not _valid_unicode(value):
                raise FilterError(f"{where}: a string holds a lone surrogate (not valid Unicode)")
            continue
        if isinstance(value, int | float):
            if isinstance(value, float) and not math.isfinite(value):
                raise FilterError(f"{where}: {value} is not a JSON number")
            if abs(value) > MAX_LITERAL:
                raise FilterError(f"{where}: the number {value} is beyond ±2^53")
            continue
        if isinstance(value, list | tuple | dict):
            if level > MAX_JSON_NESTING:
                raise FilterError(f"the filter nests more than {MAX_JSON_NESTING} arrays/objects")
            if isinstance(value, dict):
                for key, member in value.items():
                    if not isinstance(key, str):
                        raise FilterError(f"{where}: the key {key!r} is not a string")
                    if not _valid_unicode(key):
                        raise FilterError(f"{where}: a key holds a lone surrogate")
                    todo.append((member, f"`{key}`", level + 1))
            else:
                todo.extend((item, f"{where}[{i}]", level + 1) for i, item in enumerate(value))
            continue
        raise FilterError(f"{where}: {json_kind(value)} is not JSON")


# -- step 3: structure -----------------------------------------------------------------------


def _all(preds: list[Pred]) -> Pred:
    if len(preds) == 1:
        return preds[0]
    items = tuple(preds)
    return lambda doc, el: all(p(doc, el) for p in items)


def _literal_nesting(where: str, name: str, literal: Any) -> None:
    todo: list[tuple[Any, int]] = [(literal, 1)]
    while todo:
        value, level = todo.pop()
        if isinstance(value, dict):
            members: Any = value.values()
        elif isinstance(value, list | tuple):
            members = value
        else:
            continue
        if level > MAX_LITERAL_NESTING:
            raise FilterError(
                f"{where}: `{name}` nests more than {MAX_LITERAL_NESTING} arrays/objects"
            )
        todo.extend((member, level + 1) for member in members)


class _Compiler:
    def __init__(self) -> None:
        self.nodes = 0
        self.roots: set[str] = set()

    def count(self) -> None:
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise FilterError(f"the filter has more than {MAX_NODES} operator/clause nodes")

    def filter(self, raw: Any, depth: int, in_any: bool) -> Pred | None:
        """A nested filter; ``None`` when it has no clause (holds always)."""
        preds: list[Pred] = []
        self.clauses(raw, depth, in_any, preds, None)
        return _all(preds) if preds else None

    def clauses(
        self,
        raw: Any,
        depth: int,
        in_any: bool,
        out: list[Pred],
        normal: list[dict[str, Any]] | None,
    ) -> None:
        """Append the clauses of ``raw`` (``$and`` members flattened: they add no depth) to
        ``out``, and each as a one-member object to ``normal`` when it is given."""
        if depth > MAX_DEPTH:
            raise FilterError(f"filters nest deeper than {MAX_DEPTH} levels")
        if not isinstance(raw, dict):
            raise FilterError(f"a filter must be a JSON object, not {json_kind(raw)}")
        for key, value in raw.items():
            if key == "$and":
                for member in self.members("$and", value):
                    self.clauses(member, depth, in_any, out, normal)
                continue
            if key == "$or":
                self.count()
                children = [self.filter(m, depth + 1, in_any) for m in self.members("$or", value)]
                out.append(_either(children))
            elif key == "$not":
                self.count()
                if not isinstance(value, dict):
                    raise FilterError(f"`$not` takes a filter object, not {json_kind(value)}")
                out.append(_negation(self.filter(value, depth + 1, in_any)))
            elif key in VALUE_OPERATORS:
                raise FilterError(f'`{key}` needs a path: write {{"<path>": {{"{key}": …}}}}')
            elif key.startswith("$"):
                raise FilterError(f"unknown clause `{key}` (expected a path, $and, $or or $not)")
            else:
                resolve = self.path(key, in_any)
                tests = self.operator_object(key, value, depth)
                out.append(_clause(resolve, tests))
            if normal is not None:
                normal.append({key: value})

    @staticmethod
    def members(name: str, value: Any) -> list[Any]:
        if not isinstance(value, list):
            raise FilterError(f"`{name}` takes an array of filters, not {json_kind(value)}")
        if not value:
            raise FilterError(f"`{name}` takes a non-empty array of filters")
        return value

    # -- paths --

    def path(self, raw: str, in_any: bool) -> Callable[[Mapping[str, Any], Any], Any]:
        segments = _split(raw)
        root, rest = segments[0], segments[1:]
        if in_any:
            if root != ELEMENT:
                raise FilterError(f"path `{raw}`: inside `$any` paths start at `@`")
        elif root == ELEMENT:
            raise FilterError(f"path `{raw}`: `@` is only allowed inside `$any`")
        elif root not in ROOTS:
            raise FilterError(
                f"path `{raw}`: unknown root `{root}` (input, output, error, caller or metadata)"
            )
        if len(rest) > MAX_SEGMENTS:
            raise FilterError(f"path `{raw}`: {len(rest)} segments after the root (limit 16)")
        steps = tuple((seg, int(seg) if _INDEX.fullmatch(seg) else None) for seg in rest)
        if root == ELEMENT:
            return lambda doc, el: _walk(el, steps)
        self.roots.add(root)
        return lambda doc, el: _walk(_view(doc[root]), steps) if root in doc else ABSENT

    # -- operators --

    def operator_object(self, where: str, value: Any, depth: int) -> list[Test]:
        if not isinstance(value, dict) or any(not k.startswith("$") for k in value):
            raise FilterError(
                f'`{where}`: expected an operator object such as {{"$eq": …}}; '
                "literal values are not allowed"
            )
        if not value:
            raise FilterError(f"`{where}`: empty operator object")
        return self.operators(where, value, depth)

    def operators(self, where: str, ops: dict[str, Any], depth: int) -> list[Test]:
        tests = []
        for name, operand in ops.items():
            self.count()
            tests.append(self.operator(where, name, operand, depth))
        return tests

    def operator(self, where: str, name: str, operand: Any, depth: int) -> Test:
        def wrong(expected: str) -> FilterError:
            return FilterError(f"`{where}`: `{name}` takes {expected}, not {json_kind(operand)}")

        if name in ("$eq", "$ne"):
            _literal_nesting(where, name, operand)
            if name == "$eq":
                return lambda v, doc: v is not ABSENT and _equal(v, operand)
            return lambda v, doc: v is ABSENT or not _equal(v, operand)
        if name in ("$in", "$nin"):
            if not isinstance(operand, list):
                raise wrong("an array")
            if len(operand) > MAX_SET_ITEMS:
                raise FilterError(
                    f"`{where}`: `{name}` has {len(operand)} items (limit {MAX_SET_ITEMS})"
                )
            for item in operand:
                _literal_nesting(where, name, item)
            items = tuple(operand)
            if name == "$in":
                return lambda v, doc: v is not ABSENT and any(_equal(v, i) for i in items)
            return lambda v, doc: v is ABSENT or not any(_equal(v, i) for i in items)
        if name in ("$gt", "$gte", "$lt", "$lte"):
            return _ordering(name, operand, wrong)
        if name == "$exists":
            if not isinstance(operand, bool):
                raise wrong("a boolean")
            wanted = operand
            return lambda v, doc: (v is not ABSENT) is wanted
        if name == "$prefix":
            if not isinstance(operand, str):
                raise wrong("a string")
            prefix = operand
            return lambda v, doc: isinstance(v, str) and v.startswith(prefix)
        if name == "$any":
            return self.any(where, operand, depth)
        if name in COMBINATORS:
            raise FilterError(f"`{where}`: `{name}` combines filters; it is not a value operator")
        raise FilterError(f"`{where}`: unknown operator `{name}`")

    def any(self, where: str, operand: Any, depth: int) -> Test:
        if not isinstance(operand, dict):
            raise FilterError(
                f"`{where}`: `$any` takes an operator object or a filter over `@`, "
                f"not {json_kind(operand)}"
            )
        if depth + 1 > MAX_DEPTH:
            raise FilterError(f"filters nest deeper than {MAX_DEPTH} levels")
        if operand and all(k in VALUE_OPERATORS for k in operand):
            tests = tuple(self.operators(where, operand, depth + 1))

            def each_op(v: Any, doc: Mapping[str, Any]) -> bool:
                if not isinstance(v, list | tuple):
                    return False
                return any(all(t(_view(x), doc) for t in tests) for x in v)

            return each_op
        element = self.filter(operand, depth + 1, True)

        def each_filter(v: Any, doc: Mapping[str, Any]) -> bool:
            if not isinstance(v, list | tuple):
                return False
            if element is None:
                return len(v) > 0
            return any(element(doc, _view(x)) for x in v)

        return each_filter


def _split(raw: str) -> list[str]:
    """``a.b\\.c`` → ``["a", "b.c"]``; ``\\.`` and ``\\\\`` are the only escapes."""
    segments: list[str] = []
    current: list[str] = []
    chars = iter(range(len(raw)))
    for i in chars:
        ch = raw[i]
        if ch == "\\":
            nxt = raw[i + 1] if i + 1 < len(raw) else ""
            if nxt not in (".", "\\"):
                detail = "a trailing `\\`" if nxt == "" else f"the escape `\\{nxt}`"
                raise FilterError(f"path `{raw}`: {detail} (only `\\.` and `\\\\` are allowed)")
            current.append(nxt)
            next(chars)
        elif ch == ".":
            if not current:
                raise FilterError(_empty(raw))
            segments.append("".join(current))
            current = []
        else:
            current.append(ch)
    if not current:
        raise FilterError(_empty(raw))
    segments.append("".join(current))
    return segments


def _empty(raw: str) -> str:
    return "empty path" if raw == "" else f"path `{raw}`: empty segment"


def _either(children: list[Pred | None]) -> Pred:
    if any(c is None for c in children):
        return lambda doc, el: True  # an empty filter holds always
    preds = tuple(c for c in children if c is not None)
    return lambda doc, el: any(p(doc, el) for p in preds)


def _negation(child: Pred | None) -> Pred:
    if child is None:
        return lambda doc, el: False
    return lambda doc, el: not child(doc, el)


def _clause(resolve: Callable[[Mapping[str, Any], Any], Any], tests: list[Test]) -> Pred:
    if len(tests) == 1:
        test = tests[0]
        return lambda doc, el: test(resolve(doc, el), doc)
    items = tuple(tests)

    def every(doc: Mapping[str, Any], el: Any) -> bool:
        value = resolve(doc, el)
        return all(t(value, doc) for t in items)

    return every


def _ordering(name: str, operand: Any, wrong: Callable[[str], FilterError]) -> Test:
    holds: Callable[[Any, Any], bool] = {
        "$gt": lambda a, b: a > b,
        "$gte": lambda a, b: a >= b,
        "$lt": lambda a, b: a < b,
        "$lte": lambda a, b: a <= b,
    }[name]
    if _number(operand):
        bound = _double(operand)
        return lambda v, doc: _number(v) and holds(_double(v), bound)
    if isinstance(operand, str):
        text = operand  # str order is code point order, which is UTF-8 byte order
        return lambda v, doc: isinstance(v, str) and holds(v, text)
    raise wrong("a number or a string")


# -- documents as JSON -------------------------------------------------------------------------


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _double(value: int | float) -> float:
    try:
        return float(value)
    except OverflowError:
        return math.inf if value > 0 else -math.inf


def _view(value: Any) -> Any:
    """A document value as JSON reads it: a number no double holds (or NaN/±inf) is null."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 1023:
        try:
            float(value)
        except OverflowError:
            return None
    return value


def _walk(value: Any, steps: tuple[tuple[str, int | None], ...]) -> Any:
    for key, index in steps:
        if isinstance(value, dict):
            if key not in value:
                return ABSENT
            value = _view(value[key])
        elif isinstance(value, list | tuple):
            if index is None or index >= len(value):
                return ABSENT
            value = _view(value[index])
        else:
            return ABSENT
    return value


def _equal(value: Any, literal: Any) -> bool:
    """JSON deep equality of a document value and a filter literal (§10.5): no coercion,
    numbers as doubles, arrays in order, objects by key set."""
    if literal is None:
        return value is None
    if isinstance(literal, bool):
        return isinstance(value, bool) and value is literal
    if isinstance(literal, int | float):
        return _number(value) and _double(value) == _double(literal)
    if isinstance(literal, str):
        return isinstance(value, str) and value == literal
    if isinstance(literal, list | tuple):
        if not isinstance(value, list | tuple) or len(value) != len(literal):
            return False
        return all(_equal(_view(v), x) for v, x in zip(value, literal, strict=True))
    if isinstance(literal, dict):
        if not isinstance(value, dict) or len(value) != len(literal):
            return False
        for key, expected in literal.items():
            if key not in value or not _equal(_view(value[key]), expected):
                return False
        return True
    return False
