"""The strict cattrs converter every built-in config block is structured with, and its issues.

Unknown keys and wrong types are errors, as upstream's deny-unknown-fields structs (WORKERS.md §0);
each :class:`Issue` carries the path to its field and is phrased for config files and for actors.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Callable, Iterator, Sequence
from typing import Annotated, Any, Literal, NoReturn, TypeVar, get_args, get_origin

import attrs
import cattrs
from cattrs.errors import (
    AttributeValidationNote,
    ClassValidationError,
    ForbiddenExtraKeysError,
    IterableValidationError,
    IterableValidationNote,
)
from cattrs.gen import make_dict_structure_fn

from manifests.problems import PathPart, did_you_mean, dotted, show_value
from transport.jsonshape import json_type

__all__ = [
    "BatchSize",
    "BlockError",
    "I64",
    "IntRange",
    "IntervalMs",
    "Invalid",
    "Issue",
    "NonEmpty",
    "NonEmptyStr",
    "NonNegativeInt",
    "NumberRange",
    "Port",
    "PositiveInt",
    "Ratio",
    "parse",
    "validate",
    "wrong_type",
]

T = TypeVar("T")


@attrs.frozen
class IntRange:
    """``Annotated[int, IntRange(0, 65535)]``: an integer within bounds (``None``: unbounded)."""

    low: int
    high: int | None = None


@attrs.frozen
class NumberRange:
    """``Annotated[float, NumberRange(0.0, 1.0)]``: a number (int or float) within bounds."""

    low: float
    high: float


@attrs.frozen
class NonEmpty:
    """``Annotated[str, NonEmpty()]``: a string with at least one character."""


# Constrained scalars: the type names the rule, the converter's hook enforces it, and the JSON
# Schema of a block (manifests.blocks.jsonschema) states it. To the type checker they are plain
# int, float and str, so blocks are built as ``HttpBlock(port=8080)``.
Port = Annotated[int, IntRange(0, 65535)]
PositiveInt = Annotated[int, IntRange(1)]
NonNegativeInt = Annotated[int, IntRange(0)]
IntervalMs = Annotated[int, IntRange(100, 3_600_000)]
BatchSize = Annotated[int, IntRange(1, 10_000)]
I64 = Annotated[int, IntRange(-(2**63), 2**63 - 1)]
Ratio = Annotated[float, NumberRange(0.0, 1.0)]
NonEmptyStr = Annotated[str, NonEmpty()]


@attrs.frozen
class Issue:
    """One problem of a block, at ``path`` below the block.

    ``message`` is how a config file problem says it (SUPERVISOR.md §4.3, the path is shown
    beside it); ``detail`` is how an actor says it after the field's name (:meth:`field_text`).
    """

    path: tuple[PathPart, ...]
    message: str
    detail: str

    def field_text(self) -> str:
        """``cors.allowed_origins[1]: expected a string, got integer 2`` (``config`` at the top)."""
        return f"{dotted(self.path) or 'config'}: {self.detail}"

    def below(self, prefix: tuple[PathPart, ...]) -> Issue:
        return attrs.evolve(self, path=prefix + self.path)


class Invalid(Exception):
    """What a structure hook raises for a value it refuses: issues relative to that value."""

    def __init__(self, issues: Sequence[Issue]) -> None:
        super().__init__("; ".join(i.field_text() for i in issues))
        self.issues = list(issues)

    @classmethod
    def one(cls, message: str, detail: str | None = None, at: tuple[PathPart, ...] = ()) -> Invalid:
        return cls([Issue(at, message, message if detail is None else detail)])


class BlockError(ValueError):
    """A block that does not fit its schema; the message names every offending field."""

    def __init__(self, issues: Sequence[Issue]) -> None:
        self.issues = list(issues)
        super().__init__("; ".join(i.field_text() for i in self.issues))


# How a type is named: (in config file messages, in actor messages).
_TYPE_NAMES: dict[type, tuple[str, str]] = {
    str: ("string", "a string"),
    int: ("int", "an integer"),
    float: ("number", "a number"),
    bool: ("bool", "a boolean"),
    list: ("a list", "an array"),
    dict: ("a mapping", "an object"),
}


def wrong_type(expected: type, value: object) -> Invalid:
    """``expected int, got 'abc'`` / ``expected an integer, got string 'abc'``."""
    ours, theirs = _TYPE_NAMES[expected]
    got = json_type(value)
    if not isinstance(value, dict | list | tuple) and value is not None:
        got += f" {show_value(value)}"
    return Invalid.one(f"expected {ours}, got {show_value(value)}", f"expected {theirs}, got {got}")


def _refuse(expected: type, value: object) -> NoReturn:
    raise wrong_type(expected, value)


def _strict_str(value: object, _: object) -> str:
    return value if isinstance(value, str) else _refuse(str, value)


def _strict_int(value: object, _: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        _refuse(int, value)
    return value


def _strict_float(value: object, _: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        _refuse(float, value)
    return float(value)


def _strict_bool(value: object, _: object) -> bool:
    return value if isinstance(value, bool) else _refuse(bool, value)


_BASE_HOOKS: dict[Any, Callable[[object, object], Any]] = {
    str: _strict_str,
    int: _strict_int,
    float: _strict_float,
}


def _constrained_hook(tp: Any) -> Callable[[object, object], Any]:
    """A strict base hook, then each ``Annotated`` constraint in turn."""
    base, *constraints = get_args(tp)
    strict = _BASE_HOOKS[base]

    def hook(value: object, _: object) -> Any:
        checked = strict(value, None)
        for rule in constraints:
            _check(rule, checked, value)
        return checked

    return hook


def _check(rule: object, checked: Any, value: object) -> None:
    if isinstance(rule, IntRange):
        low, high = rule.low, rule.high
        if checked < low or (high is not None and checked > high):
            bound = f"between {low} and {high}" if high is not None else f">= {low}"
            raise Invalid.one(
                f"expected an integer {bound}, got {checked}", f"must be {bound}, got {checked}"
            )
    elif isinstance(rule, NumberRange):
        if not rule.low <= checked <= rule.high:
            bound, shown = f"between {rule.low} and {rule.high}", show_value(value)
            raise Invalid.one(
                f"expected a number {bound}, got {shown}", f"must be {bound}, got {shown}"
            )
    elif isinstance(rule, NonEmpty) and not checked:
        raise Invalid.one("must not be empty", "expected a non-empty string")


def _literal_hook(tp: Any) -> Callable[[object, object], Any]:
    choices = get_args(tp)

    def hook(value: object, _: object) -> Any:
        if value not in choices or isinstance(value, bool):
            listed = ", ".join(map(str, choices))
            raise Invalid.one(f"expected one of {listed}, got {show_value(value)}")
        return value

    return hook


def tag_of(cls: type) -> str | None:
    """The ``name`` a tagged class answers to (``name: Literal["kv"]``), if it has one."""
    if not attrs.has(cls):
        return None
    attrs.resolve_types(cls)
    field = attrs.fields_dict(cls).get("name")
    if field is None or get_origin(field.type) is not Literal:
        return None
    (tag,) = get_args(field.type)
    return str(tag)


def union_members(tp: Any) -> tuple[Any, ...]:
    """The members of ``A | B`` (either spelling of a union), else ``()``."""
    if get_origin(tp) in (typing.Union, types.UnionType):
        return get_args(tp)
    return ()


def tagged_members(tp: Any) -> tuple[type, ...]:
    """The classes of ``KvAdapter | RedisAdapter [| None]``, told apart by their ``name`` tag;
    ``()`` for any other type."""
    members = tuple(m for m in union_members(tp) if m is not type(None))
    return members if members and all(tag_of(m) for m in members) else ()


def _is_constrained(tp: Any) -> bool:
    return get_origin(tp) is Annotated and get_args(tp)[0] in _BASE_HOOKS


def _is_literal(tp: Any) -> bool:
    return get_origin(tp) is Literal


def _is_sequence(tp: Any) -> bool:
    return get_origin(tp) in (list, tuple)


def _is_mapping(tp: Any) -> bool:
    return get_origin(tp) is dict or tp is dict


def _is_tagged(tp: Any) -> bool:
    return bool(tagged_members(tp))


class _Converter:
    """Builds the converter; the hooks that need it (containers, classes) close over it."""

    def __init__(self) -> None:
        conv = cattrs.Converter(forbid_extra_keys=True, detailed_validation=True)
        conv.register_structure_hook(str, _strict_str)
        conv.register_structure_hook(int, _strict_int)
        conv.register_structure_hook(float, _strict_float)
        conv.register_structure_hook(bool, _strict_bool)
        conv.register_structure_hook(Any, lambda value, _: value)
        conv.register_structure_hook_factory(_is_constrained, _constrained_hook)
        conv.register_structure_hook_factory(_is_literal, _literal_hook)
        conv.register_structure_hook_factory(_is_sequence, self._sequence)
        conv.register_structure_hook_factory(_is_mapping, self._mapping)
        conv.register_structure_hook_factory(attrs.has, self._class)
        conv.register_structure_hook_factory(_is_tagged, self._tagged)
        self.conv = conv

    def _sequence(self, tp: Any) -> Callable[[object, object], Any]:
        args = [a for a in get_args(tp) if a is not Ellipsis] or [Any]
        elem = args[0]
        handler = self.conv.get_structure_hook(elem)
        make: Callable[[list[Any]], Any] = tuple if get_origin(tp) is tuple else list

        def hook(value: object, _: object) -> Any:
            if not isinstance(value, list | tuple):
                _refuse(list, value)
            out: list[Any] = []
            errors: list[Exception] = []
            for index, item in enumerate(value):
                try:
                    out.append(handler(item, elem))
                except Exception as exc:
                    exc.add_note(IterableValidationNote(f"@ index {index}", index, elem))
                    errors.append(exc)
            if errors:
                raise IterableValidationError(f"While structuring {tp}", errors, tp)
            return make(out)

        return hook

    def _mapping(self, tp: Any) -> Callable[[object, object], dict[Any, Any]]:
        def hook(value: object, _: object) -> dict[Any, Any]:
            return dict(value) if isinstance(value, dict) else _refuse(dict, value)

        return hook

    def _class(self, cl: type) -> Callable[[object, object], Any]:
        inner: Callable[[Any, Any], Any] = make_dict_structure_fn(cl, self.conv)

        def hook(value: object, _: object) -> Any:
            if not isinstance(value, dict):
                _refuse(dict, value)
            return inner(value, cl)

        return hook

    def _tagged(self, tp: Any) -> Callable[[object, object], Any]:
        by_tag = {tag_of(m): m for m in tagged_members(tp)}
        listed = ", ".join(str(t) for t in by_tag)
        optional = type(None) in union_members(tp)

        def hook(value: object, _: object) -> Any:
            if value is None and optional:
                return None
            if not isinstance(value, dict):
                _refuse(dict, value)
            if "name" not in value:
                raise Invalid.one("missing (required)", "missing required field", ("name",))
            tag = value["name"]
            if not isinstance(tag, str):
                raise Invalid([i.below(("name",)) for i in wrong_type(str, tag).issues])
            member = by_tag.get(tag)
            if member is None:
                raise Invalid.one(
                    f"unknown adapter {show_value(tag)} — available: {listed}",
                    f"unknown adapter {tag!r} (available: {listed})",
                    ("name",),
                )
            return self.conv.structure(value, member)

        return hook


CONVERTER = _Converter().conv


def _issues(exc: BaseException, path: tuple[PathPart, ...]) -> Iterator[Issue]:
    for note in getattr(exc, "__notes__", ()):
        if isinstance(note, IterableValidationNote):
            path = path + (note.index,)
        elif isinstance(note, AttributeValidationNote):
            path = path + (note.name,)
    if isinstance(exc, ForbiddenExtraKeysError):
        known = [a.name for a in attrs.fields(exc.cl)]
        prefix = dotted(path) + "." if path else ""
        expected = f", expected one of: {', '.join(known)}" if known else "; it takes no config"
        for key in sorted(exc.extra_fields, key=str):
            hint = did_you_mean(str(key), known, prefix)
            yield Issue(path + (key,), "unknown key" + hint, f"unknown field `{key}`{expected}")
    elif isinstance(exc, ClassValidationError | IterableValidationError):
        for sub in exc.exceptions:
            yield from _issues(sub, path)
    elif isinstance(exc, Invalid):
        for issue in exc.issues:
            yield issue.below(path)
    elif isinstance(exc, KeyError):
        yield Issue(path, "missing (required)", "missing required field")
    else:  # a hook of cattrs' own (there should be none left); say what it said
        yield Issue(path, str(exc), str(exc))


def validate(cls: type[T], raw: Any, at: tuple[PathPart, ...] = ()) -> tuple[T | None, list[Issue]]:
    """Structure ``raw`` into ``cls`` strictly: the instance (``None`` if invalid) and the issues.

    ``None`` means "all defaults", as an absent ``config:`` block does.
    """
    try:
        return CONVERTER.structure({} if raw is None else raw, cls), []
    except Exception as exc:  # cattrs reports every field's problem in one exception group
        return None, list(_issues(exc, at))


def parse(cls: type[T], raw: Any) -> T:
    """Like :func:`validate`, raising :class:`BlockError` (how actors read their block)."""
    block, issues = validate(cls, raw)
    if block is None:
        raise BlockError(issues)
    return block
