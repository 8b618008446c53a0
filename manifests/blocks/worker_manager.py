"""The ``iii-worker-manager`` config block (WORKERS.md §11): one WebSocket listener of the engine,
with its handshake deadline, message size limit, middleware and RBAC block (PROTOCOL.md §13)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any, Final

import attrs

from manifests.blocks.strict import (
    CONVERTER,
    Invalid,
    Issue,
    NonNegativeInt,
    Port,
    PositiveInt,
    wrong_type,
)
from manifests.problems import PathPart, did_you_mean, show_value

__all__ = ["DEFAULTS", "ListenerBlock", "RbacBlock"]

_RBAC_STRINGS: Final = (
    "auth_function_id",
    "on_function_registration_function_id",
    "on_trigger_registration_function_id",
    "on_trigger_type_registration_function_id",
)
_FILTER_KEYS: Final = ("match", "metadata", "namespace")
_MATCH_FORM: Final = re.compile(r"""\s*match\((["'])(.*)\1\)\s*""", re.S)


@attrs.frozen
class RbacBlock:
    """RBAC keys are typed; unknown keys are ignored as upstream does, except in map filters.

    ``expose_functions`` keeps each filter as written: ``match("pattern")`` or a mapping with
    exactly one of ``match`` / ``metadata`` (and optionally ``namespace``).
    """

    auth_function_id: str | None = None
    expose_functions: tuple[Any, ...] = ()
    on_function_registration_function_id: str | None = None
    on_trigger_registration_function_id: str | None = None
    on_trigger_type_registration_function_id: str | None = None


@attrs.frozen
class ListenerBlock:
    host: str = "0.0.0.0"
    port: Port = 49134
    handshake_timeout_ms: NonNegativeInt = 10000
    middleware_function_id: str | None = None
    rbac: RbacBlock | None = None
    max_message_bytes: PositiveInt = 64 * 1024 * 1024  # ours; not upstream


def _at(invalid: Invalid, where: tuple[PathPart, ...]) -> Iterator[Issue]:
    return (issue.below(where) for issue in invalid.issues)


def _same(at: tuple[PathPart, ...], message: str) -> Issue:
    return Issue(at, message, message)


def _filter_issues(index: int, item: Any) -> Iterator[Issue]:
    at: tuple[PathPart, ...] = ("expose_functions", index)
    if isinstance(item, str):
        if not _MATCH_FORM.fullmatch(item):
            yield _same(at, 'a string filter must have the form match("pattern")')
        return
    if not isinstance(item, dict):
        yield _same(at, f'expected match("pattern") or a mapping, got {show_value(item)}')
        return
    for key in item:
        if key not in _FILTER_KEYS:
            hint = did_you_mean(str(key), _FILTER_KEYS)
            yield Issue(at + (key,), "unknown key" + hint, f"unknown field `{key}`")
    if ("match" in item) == ("metadata" in item):
        yield _same(at, "a filter needs exactly one of match or metadata")
    for key, kind in (("match", str), ("metadata", dict), ("namespace", str)):
        if key in item and not isinstance(item[key], kind):
            yield from _at(wrong_type(kind, item[key]), at + (key,))


def _structure_rbac(value: object, _: object) -> RbacBlock:
    if not isinstance(value, dict):
        raise wrong_type(dict, value)
    issues: list[Issue] = []
    for key in _RBAC_STRINGS:
        if value.get(key) is not None and not isinstance(value[key], str):
            issues.extend(_at(wrong_type(str, value[key]), (key,)))
    filters = value.get("expose_functions")
    if filters is not None and not isinstance(filters, list):
        issues.extend(_at(wrong_type(list, filters), ("expose_functions",)))
    elif filters is not None:
        for index, item in enumerate(filters):
            issues.extend(_filter_issues(index, item))
    if issues:
        raise Invalid(issues)
    return RbacBlock(
        auth_function_id=value.get("auth_function_id"),
        expose_functions=tuple(filters or ()),
        on_function_registration_function_id=value.get("on_function_registration_function_id"),
        on_trigger_registration_function_id=value.get("on_trigger_registration_function_id"),
        on_trigger_type_registration_function_id=value.get(
            "on_trigger_type_registration_function_id"
        ),
    )


CONVERTER.register_structure_hook(RbacBlock, _structure_rbac)

DEFAULTS: Final[dict[str, Any]] = {"host": "0.0.0.0", "port": 49134}
