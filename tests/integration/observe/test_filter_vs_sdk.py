"""Property: our iii-filter v1 evaluator agrees with the 0.25 SDK's own (``iii.filter``) on
generated filters and documents — the same filters refused, the same verdict on every
document — and the SDK, compiling our normal form as an owner does, answers the same.

Hypothesis generates the cases here; the SDK evaluates the whole batch in one subprocess
(its interpreter, the batch as JSON on stdin, verdicts on stdout). Python's json module
carries every value both sides see (big integers, -0.0, NaN, lone surrogates) unchanged.
"""

from __future__ import annotations

import json
import subprocess
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from supervisor.engine.observe.filter import FilterError, compile_filter
from tests.support import require_sdk025

BATCH = 400  # filters; each is evaluated on a few documents

# The SDK's evaluator alone: its package __init__ (the whole client) is not needed for it.
ORACLE = r"""
import importlib.util, json, sys, types
spec = importlib.util.find_spec("iii")
package = types.ModuleType("iii")
package.__path__ = list(spec.submodule_search_locations)
sys.modules["iii"] = package
from iii.filter import FilterError, compile_filter

out = []
for case in json.load(sys.stdin):
    try:
        compiled = compile_filter(case["filter"])
    except FilterError as exc:
        out.append({"error": exc.code})
        continue
    except Exception as exc:
        out.append({"crash": repr(exc)})
        continue
    entry = {"verdicts": [compiled.matches(doc) for doc in case["docs"]]}
    if case.get("normal") is not None:
        try:
            owner = compile_filter(case["normal"], trusted=True)
            entry["normal"] = [owner.matches(doc) for doc in case["docs"]]
        except Exception as exc:
            entry["normal"] = repr(exc)
    out.append(entry)
json.dump(out, sys.stdout)
"""

# -- strategies -------------------------------------------------------------------------------

KEYS = ["a", "b", "k", "0", "1", "01", "x.y", "x\\y", "", "é", "@", "$eq"]
ROOTS = ["input", "output", "error", "caller", "metadata"]

numbers = st.one_of(
    st.sampled_from([0, 1, -1, 2, 3, 1.0, -0.0, 0.5, 2**53, -(2**53), 2**53 + 1, 2**60, 1e300]),
    st.integers(-5, 5),
    st.floats(allow_nan=False, allow_infinity=False, width=32),
)
strings = st.one_of(
    st.sampled_from(["", "a", "ab", "abc", "b", "B", "x", "1", "\uff61", "\U0001f600", "é"]),
    st.text(max_size=4),
)
scalars = st.one_of(st.none(), st.booleans(), numbers, strings)
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.sampled_from(KEYS), inner, max_size=4)
    ),
    max_leaves=6,
)


@st.composite
def documents(draw: st.DrawFn) -> dict[str, Any]:
    roots = draw(st.lists(st.sampled_from(ROOTS), unique=True, max_size=5))
    return {root: draw(json_values) for root in roots}


VALID_SEGMENTS = ["a", "b", "k", "0", "1", "01", "2", "-1", "x\\.y", "x\\\\y", "é"]
INVALID_SEGMENTS = ["", "x\\y", "tail\\"]  # empty segment, bad escapes


def rarely(draw: st.DrawFn, one_in: int) -> bool:
    """True about once in ``one_in`` draws (hypothesis favours boundaries: use the middle)."""
    return bool(draw(st.sampled_from(range(one_in))) == one_in // 2)


@st.composite
def segment(draw: st.DrawFn) -> str:
    pool = INVALID_SEGMENTS if rarely(draw, 30) else VALID_SEGMENTS
    return draw(st.sampled_from(pool))


@st.composite
def paths(draw: st.DrawFn, in_any: bool) -> str:
    if rarely(draw, 40):
        root = draw(st.sampled_from(["inputs", "", "result", "input" if in_any else "@"]))
    else:
        root = "@" if in_any else draw(st.sampled_from(ROOTS))
    count = 17 if rarely(draw, 60) else draw(st.integers(0, 3))
    return ".".join([root, *[draw(segment()) for _ in range(count)]])


operands = st.one_of(scalars, st.lists(scalars, max_size=3), json_values)
OPERATORS = ["$eq", "$ne", "$in", "$nin", "$gt", "$gte", "$lt", "$lte", "$exists", "$prefix"]
OPERATORS += ["$any", "$any"]
INVALID_OPERATORS = ["$regex", "$and", "$not", "k"]


@st.composite
def operator_objects(draw: st.DrawFn, depth: int) -> Any:
    if rarely(draw, 60):
        return draw(st.one_of(scalars, st.just({})))  # literal shorthand / empty: invalid
    out: dict[str, Any] = {}
    for _ in range(draw(st.integers(1, 2))):
        pool = INVALID_OPERATORS if rarely(draw, 40) else OPERATORS
        name = draw(st.sampled_from(pool))
        out[name] = draw(operand_for(name, depth))
    return out


def well_typed(
    valid: st.SearchStrategy[Any], anything: st.SearchStrategy[Any]
) -> st.SearchStrategy[Any]:
    @st.composite
    def pick(draw: st.DrawFn) -> Any:
        return draw(anything if rarely(draw, 12) else valid)

    return pick()


def operand_for(name: str, depth: int) -> st.SearchStrategy[Any]:
    if name in ("$in", "$nin"):
        return well_typed(st.lists(json_values, max_size=4), operands)
    if name in ("$gt", "$gte", "$lt", "$lte"):
        return well_typed(st.one_of(numbers, strings), operands)
    if name == "$exists":
        return well_typed(st.booleans(), scalars)
    if name == "$prefix":
        return well_typed(strings, scalars)
    if name == "$any":
        if depth >= 8:
            return st.just({})
        forms: st.SearchStrategy[Any] = st.one_of(
            operator_objects(depth + 1).filter(lambda v: isinstance(v, dict) and bool(v)),
            filters(depth + 1, True),
            st.just({}),
        )
        return well_typed(forms, scalars)
    return operands


@st.composite
def filters(draw: st.DrawFn, depth: int = 1, in_any: bool = False) -> Any:
    if depth > 9:
        return {}
    if rarely(draw, 80):
        return draw(st.one_of(scalars, st.lists(scalars, max_size=2)))  # not an object
    out: dict[str, Any] = {}
    for _ in range(draw(st.integers(0, 3))):
        kind = draw(st.sampled_from(["path"] * 12 + ["and", "or", "not", "bad"]))
        nested = 3 if depth < 6 else 1  # deep nesting stays possible but rarer
        if kind == "path":
            out[draw(paths(in_any))] = draw(operator_objects(depth))
        elif kind == "and":
            out["$and"] = draw(st.lists(filters(depth, in_any), min_size=1, max_size=nested))
        elif kind == "or":
            out["$or"] = draw(st.lists(filters(depth + 1, in_any), min_size=1, max_size=nested))
        elif kind == "not":
            out["$not"] = draw(filters(depth + 1, in_any))
        elif rarely(draw, 3):
            out[draw(st.sampled_from(["$eq", "$nor", "$any", "$in"]))] = draw(scalars)
        elif rarely(draw, 2):
            out[draw(st.sampled_from(["$or", "$and"]))] = draw(st.one_of(scalars, st.just([])))
        else:
            out["$and"] = draw(st.sampled_from([{}, [1], [None], [[]]]))
    return out


def deep_chain(kind: str, levels: int) -> Any:
    flt: Any = {"input.a": {"$eq": 1}}
    for _ in range(levels):
        flt = {"$or": [flt]} if kind == "or" else {"$not": flt}
    return flt


# Structured cases random generation rarely reaches: limits, depth, nodes.
LIMIT_CASES: list[Any] = [
    *[deep_chain("or", n) for n in (6, 7, 8, 9)],
    *[deep_chain("not", n) for n in (6, 7, 8, 9)],
    {f"input.k{i}": {"$exists": True} for i in range(64)},
    {f"input.k{i}": {"$exists": True} for i in range(65)},
    {"input": {"$in": list(range(256))}},
    {"input": {"$in": list(range(257))}},
    {"input": {"$eq": "x" * 8170}},
    {"input": {"$eq": "x" * 8180}},
    {"input": {"$eq": "\U0001f600" * 2047}},
    {"input": {"$eq": 1e16}},
    {"input": {"$eq": float("nan")}},
    {"input": {"$eq": "\ud800"}},
    {"input." + ".".join(["a"] * 16): {"$exists": False}},
    {"input." + ".".join(["a"] * 17): {"$exists": False}},
]


def ours(case: dict[str, Any]) -> dict[str, Any]:
    try:
        compiled = compile_filter(case["filter"])
    except FilterError as exc:
        return {"error": exc.code}
    case["normal"] = compiled.normal
    return {"verdicts": [compiled.matches(doc) for doc in case["docs"]]}


def sdk(cases: list[dict[str, Any]]) -> list[dict[str, Any]]:
    proc = subprocess.run(
        [str(require_sdk025()), "-c", ORACLE],
        input=json.dumps(cases),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    answer: list[dict[str, Any]] = json.loads(proc.stdout)
    return answer


def split_path(path: str) -> list[str]:
    """Segments of a path, unescaped (malformed paths are split loosely: they never compile)."""
    parts, current, i = [], "", 0
    while i < len(path):
        if path[i] == "\\" and i + 1 < len(path):
            current += path[i + 1]
            i += 2
            continue
        if path[i] == ".":
            parts.append(current)
            current = ""
        else:
            current += path[i]
        i += 1
    return [*parts, current]


def place(segments: list[str], value: Any) -> Any:
    """A value that holds ``value`` at ``segments``: lists for indices, objects otherwise."""
    for seg in reversed(segments):
        if seg.isdigit() and seg == str(int(seg)) and int(seg) < 4:
            value = [None] * int(seg) + [value]
        else:
            value = {seg: value}
    return value


def near(operand: Any) -> list[Any]:
    """Values an operator's operand could (almost) match: the operand and neighbours."""
    out: list[Any] = [operand]
    if isinstance(operand, list):
        out += operand[:2] + [operand]
    if isinstance(operand, str):
        out += [operand + "z", "z" + operand, operand[:-1]]
    if isinstance(operand, int | float) and not isinstance(operand, bool):
        out += [operand + 1, operand - 1, float(operand)]
    if isinstance(operand, dict):
        out += [dict(reversed(list(operand.items())))]
    return out


def aimed(flt: Any, limit: int = 6) -> list[dict[str, Any]]:
    """Documents aimed at a filter's own paths and operands, so that clauses resolve and
    operators see values close to their operands (random documents rarely do)."""
    pairs: list[tuple[str, Any]] = []

    def walk(node: Any, prefix: str | None) -> None:
        if isinstance(node, list):
            for item in node:
                walk(item, prefix)
        elif isinstance(node, dict):
            for key, value in node.items():
                if key in ("$and", "$or", "$not"):
                    walk(value, prefix)
                elif key == "$any" and prefix is not None:
                    if isinstance(value, dict):
                        for inner, operand in value.items():
                            if isinstance(inner, str) and inner.startswith("@"):
                                walk({inner: operand}, prefix + ".0")
                            else:
                                pairs.append((prefix + ".0", operand))
                elif isinstance(key, str) and key.startswith("$") and prefix is not None:
                    pairs.append((prefix, value))
                elif isinstance(key, str) and not key.startswith("$"):
                    path = key
                    if path.startswith("@") and prefix is not None:
                        path = prefix + path[1:]
                    walk(value, path)

    walk(flt, None)
    docs: list[dict[str, Any]] = []
    for path, operand in pairs:
        segments = split_path(path)
        for value in near(operand)[:3]:
            root = segments[0]
            docs.append({root: place(segments[1:], value)})
    return docs[:limit]


def collect() -> list[dict[str, Any]]:
    cases: list[dict[str, Any]] = []

    @settings(
        max_examples=BATCH,
        database=None,
        derandomize=True,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(filters(), st.lists(documents(), min_size=1, max_size=6))
    def gather(flt: Any, docs: list[dict[str, Any]]) -> None:
        cases.append({"filter": flt, "docs": docs + aimed(flt)})

    gather()
    probes = [{"input": {"a": 1}}, {"input": "x" * 8170}, {}, {"input": 1e16}]
    cases += [{"filter": flt, "docs": probes} for flt in LIMIT_CASES]
    return cases


def test_our_evaluator_agrees_with_the_sdk_on_generated_filters() -> None:
    cases = collect()
    mine = [ours(case) for case in cases]  # fills case["normal"] for the valid ones
    theirs = sdk(cases)
    assert len(theirs) == len(cases)
    disagreements = []
    for case, a, b in zip(cases, mine, theirs, strict=True):
        normal = b.pop("normal", None)
        if a != b or (normal is not None and normal != a["verdicts"]):
            disagreements.append({"case": case, "ours": a, "sdk": b, "sdk_on_normal": normal})
    refused = sum("error" in a for a in mine)
    # the batch exercises both sides: many filters refused, many compiled and matched
    assert refused > BATCH // 10 and len(cases) - refused > BATCH // 10, refused
    assert sum(True in a.get("verdicts", []) for a in mine) > BATCH // 20
    assert not disagreements, json.dumps(disagreements[:5], ensure_ascii=False)[:4000]
