"""Atomic update operations of ``state::update`` / ``stream::update`` (WORKERS.md §1.9).

Pure functions: ``parse_ops`` checks the shape of the ops list (a bad shape fails the whole call
before anything is touched); ``apply_ops`` runs them on a value and reports per-op errors.

Decisions where §1.9 is silent: the "missing default" flag (the key did not exist) holds until the
first op that succeeds, so ``[merge {...}, increment ""]`` on a new key fails with ``not_number``
rather than throwing the merge away; a path given as a one-element array counts as a
single-segment path; a ``null`` leaf at a multi-segment append path becomes ``[value]`` (as a
missing leaf does, per the SDK's description of the engine).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

import attrs
import structlog

from transport.jsonshape import json_kind

__all__ = [
    "DOC_URL",
    "InvalidOpsError",
    "Op",
    "apply_ops",
    "parse_ops",
]

log = structlog.get_logger(__name__)

DOC_URL: Final = "https://iii.dev/docs/workers/iii-state#error-codes"
MAX_PATH_SEGMENTS: Final = 32
MAX_SEGMENT_BYTES: Final = 256
MAX_MERGE_KEYS: Final = 1024
MAX_MERGE_DEPTH: Final = 16
FORBIDDEN_KEYS: Final = frozenset({"__proto__", "constructor", "prototype"})
I64_MIN: Final = -(2**63)
I64_MAX: Final = 2**63 - 1
U64_MAX: Final = 2**64 - 1

OP_TYPES: Final = ("set", "merge", "increment", "decrement", "append", "remove")
_STRING_PATH_OPS: Final = frozenset({"set", "increment", "decrement", "remove"})

_MISSING: Final = object()

Failure = tuple[str, str]


class InvalidOpsError(ValueError):
    """The ``ops`` argument does not have the shape of a list of update operations."""


@attrs.frozen
class Op:
    """One parsed operation. ``path`` holds literal segments; ``()`` is the root."""

    type: str
    path: tuple[str, ...] = ()
    value: Any = None
    by: int = 0


def parse_ops(ops: Any) -> list[Op]:
    """Check the shape of ``ops`` (a JSON array of op objects) and return them parsed.

    Raises ``InvalidOpsError`` naming the first offending op; the caller reports it as a
    deserialization error and applies nothing.
    """
    if not isinstance(ops, list | tuple):
        raise InvalidOpsError(f"ops: expected an array, got {json_kind(ops)}")
    return [_parse_op(index, raw) for index, raw in enumerate(ops)]


def _parse_op(index: int, raw: Any) -> Op:
    where = f"ops[{index}]"
    if not isinstance(raw, dict):
        raise InvalidOpsError(f"{where}: expected an object, got {json_kind(raw)}")
    kind = raw.get("type")
    if kind not in OP_TYPES:
        raise InvalidOpsError(
            f"{where}: unknown variant {kind!r}, expected one of {', '.join(OP_TYPES)}"
        )
    if kind in _STRING_PATH_OPS:
        if "path" not in raw:
            raise InvalidOpsError(f"{where}: missing field `path`")
        path = raw["path"]
        if not isinstance(path, str):
            raise InvalidOpsError(f"{where}.path: expected a string, got {json_kind(path)}")
        segments: tuple[str, ...] = (path,) if path else ()
    else:
        segments = _parse_flexible_path(where, raw.get("path"))
    if kind in ("increment", "decrement"):
        if "by" not in raw:
            raise InvalidOpsError(f"{where}: missing field `by`")
        by = raw["by"]
        if isinstance(by, bool) or not isinstance(by, int):
            raise InvalidOpsError(f"{where}.by: expected an integer, got {json_kind(by)}")
        if not I64_MIN <= by <= I64_MAX:
            raise InvalidOpsError(f"{where}.by: {by} does not fit a signed 64-bit integer")
        return Op(type=kind, path=segments, by=by)
    return Op(type=kind, path=segments, value=raw.get("value"))


def _parse_flexible_path(where: str, path: Any) -> tuple[str, ...]:
    if path is None:
        return ()
    if isinstance(path, str):
        return (path,) if path else ()
    if isinstance(path, list | tuple):
        for position, segment in enumerate(path):
            if not isinstance(segment, str):
                raise InvalidOpsError(
                    f"{where}.path[{position}]: expected a string, got {json_kind(segment)}"
                )
        return tuple(path)
    raise InvalidOpsError(
        f"{where}.path: expected a string or an array of strings, got {json_kind(path)}"
    )


@attrs.define
class _Target:
    value: Any
    missing: bool


def apply_ops(current: Any, *, exists: bool, ops: Sequence[Op]) -> tuple[Any, list[dict[str, Any]]]:
    """Apply ``ops`` in order to ``current`` and return ``(new_value, errors)``.

    ``current`` is consumed: it may be modified in place, so pass a private copy. When
    ``exists`` is false the starting value is ``{}`` flagged as "missing default". A failed op
    is skipped (no rollback) and reported as ``{op_index, code, message, doc_url}``.
    """
    target = _Target(value=current if exists else {}, missing=not exists)
    errors: list[dict[str, Any]] = []
    for index, op in enumerate(ops):
        failure = _APPLY[op.type](target, op, index)
        if failure is not None:
            code, message = failure
            errors.append({"op_index": index, "code": code, "message": message, "doc_url": DOC_URL})
    return target.value, errors


def _check_path(name: str, path: tuple[str, ...]) -> Failure | None:
    if len(path) > MAX_PATH_SEGMENTS:
        return (
            f"{name}.path.too_deep",
            f"path has {len(path)} segments; at most {MAX_PATH_SEGMENTS} are allowed",
        )
    for position, segment in enumerate(path):
        if not segment:
            return f"{name}.path.empty_segment", f"path segment {position} is empty"
    for position, segment in enumerate(path):
        size = len(segment.encode("utf-8", "surrogatepass"))
        if size > MAX_SEGMENT_BYTES:
            return (
                f"{name}.path.segment_too_long",
                f"path segment {position} is {size} bytes; at most {MAX_SEGMENT_BYTES} are allowed",
            )
    for segment in path:
        if segment in FORBIDDEN_KEYS:
            return f"{name}.path.proto_polluted", f"path segment {segment!r} is not allowed"
    return None


def _check_merge_value(value: Any) -> Failure | None:
    if not isinstance(value, dict):
        return (
            "merge.value.not_an_object",
            f"merge value must be an object, got {json_kind(value)}",
        )
    if len(value) > MAX_MERGE_KEYS:
        return (
            "merge.value.too_many_keys",
            f"merge value has {len(value)} top-level keys; at most {MAX_MERGE_KEYS} are allowed",
        )
    for key in value:
        if key in FORBIDDEN_KEYS:
            return "merge.value.proto_polluted", f"merge value key {key!r} is not allowed"
    if _deeper_than(value, MAX_MERGE_DEPTH):
        return (
            "merge.value.too_deep",
            f"merge value is nested deeper than {MAX_MERGE_DEPTH} levels",
        )
    return None


def _deeper_than(value: Any, limit: int) -> bool:
    """True when ``value`` nests objects/arrays more than ``limit`` levels (scalars count 0)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > limit:
            return True
        children = node.values() if isinstance(node, dict) else node
        for child in children:
            if isinstance(child, dict | list):
                stack.append((child, depth + 1))
    return False


def _apply_set(target: _Target, op: Op, index: int) -> Failure | None:
    failure = _check_path("set", op.path)
    if failure:
        return failure
    if not op.path:
        target.value = _clone(op.value)
    elif isinstance(target.value, dict):
        target.value[op.path[0]] = _clone(op.value)
    else:
        return "set.target_not_object", _not_object_message(target.value)
    target.missing = False
    return None


def _apply_merge(target: _Target, op: Op, index: int) -> Failure | None:
    failure = _check_path("merge", op.path) or _check_merge_value(op.value)
    if failure:
        return failure
    if not op.path:
        if not isinstance(target.value, dict):
            log.info(
                "update.merge_skipped",
                op_index=index,
                reason="root value is not an object",
                root_type=json_kind(target.value),
            )
            return None
        node = target.value
    else:
        if not isinstance(target.value, dict):
            target.value = {}
        node = _walk_creating(target.value, op.path)
    node.update(_clone(op.value))
    target.missing = False
    return None


def _walk_creating(node: dict[str, Any], segments: Sequence[str]) -> dict[str, Any]:
    """Descend ``segments`` replacing missing or non-object children with ``{}``."""
    for segment in segments:
        child = node.get(segment)
        if not isinstance(child, dict):
            child = {}
            node[segment] = child
        node = child
    return node


def _apply_increment(target: _Target, op: Op, index: int) -> Failure | None:
    return _add(target, op, op.by)


def _apply_decrement(target: _Target, op: Op, index: int) -> Failure | None:
    return _add(target, op, -op.by)


def _add(target: _Target, op: Op, delta: int) -> Failure | None:
    name = op.type
    failure = _check_path(name, op.path)
    if failure:
        return failure
    if not op.path:
        if target.missing:
            target.value = delta
        else:
            result = _sum(name, target.value, delta)
            if isinstance(result, tuple):
                return result
            target.value = result[0]
    else:
        if not isinstance(target.value, dict):
            return f"{name}.target_not_object", _not_object_message(target.value)
        key = op.path[0]
        current = target.value.get(key, _MISSING)
        if current is _MISSING:
            target.value[key] = delta
        else:
            result = _sum(name, current, delta)
            if isinstance(result, tuple):
                return result
            target.value[key] = result[0]
    target.missing = False
    return None


def _sum(name: str, current: Any, delta: int) -> list[Any] | Failure:
    """``[current + delta]``, or a failure when ``current`` is not a number or it overflows."""
    if isinstance(current, bool) or not isinstance(current, int | float):
        return f"{name}.not_number", f"target is {json_kind(current)}, not a number"
    result = current + delta
    if isinstance(result, int) and not I64_MIN <= result <= U64_MAX:
        return (
            f"{name}.not_number",
            f"result {result} does not fit a 64-bit integer",
        )
    return [result]


def _apply_append(target: _Target, op: Op, index: int) -> Failure | None:
    failure = _check_path("append", op.path)
    if failure:
        return failure
    value = op.value
    if not op.path:
        if target.missing:
            target.value = _fresh_append(value, string_tier=True)
        else:
            result = _append_to(target.value, value)
            if isinstance(result, tuple):
                return result
            target.value = result[0]
        target.missing = False
        return None
    if not isinstance(target.value, dict):
        return "append.target_not_object", _not_object_message(target.value)
    *parents, leaf = op.path
    node = _walk_creating(target.value, parents)
    current = node.get(leaf, _MISSING)
    if current is _MISSING or (current is None and parents):
        node[leaf] = _fresh_append(value, string_tier=not parents)
    else:
        result = _append_to(current, value)
        if isinstance(result, tuple):
            return result
        node[leaf] = result[0]
    target.missing = False
    return None


def _fresh_append(value: Any, *, string_tier: bool) -> Any:
    if string_tier and isinstance(value, str):
        return value
    return [_clone(value)]


def _append_to(current: Any, value: Any) -> list[Any] | Failure:
    if current is None:
        return [_fresh_append(value, string_tier=True)]
    if isinstance(current, list):
        current.append(_clone(value))
        return [current]
    if isinstance(current, str):
        if isinstance(value, str):
            return [current + value]
        return "append.type_mismatch", f"cannot append {json_kind(value)} to a string"
    return "append.type_mismatch", f"cannot append to {json_kind(current)}"


def _apply_remove(target: _Target, op: Op, index: int) -> Failure | None:
    failure = _check_path("remove", op.path)
    if failure:
        return failure
    if not op.path:
        target.value = None
    elif isinstance(target.value, dict):
        target.value.pop(op.path[0], None)
    else:
        return "remove.target_not_object", _not_object_message(target.value)
    target.missing = False
    return None


_APPLY = {
    "set": _apply_set,
    "merge": _apply_merge,
    "increment": _apply_increment,
    "decrement": _apply_decrement,
    "append": _apply_append,
    "remove": _apply_remove,
}


def _clone(value: Any) -> Any:
    """Deep copy of a JSON value, so stored data never aliases an op's value."""
    if isinstance(value, dict):
        return {key: _clone(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_clone(item) for item in value]
    return value


def _not_object_message(value: Any) -> str:
    return f"target is {json_kind(value)}, not an object"
