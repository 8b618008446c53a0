"""A block's JSON Schema (draft-07), derived from its attrs class: what an actor publishes for its
entry in the configuration worker (WORKERS.md §1.6), so the worker checks values by the same rules.

Field descriptions come from ``attrs.field(metadata={"description": ...})``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, get_args, get_origin

import attrs

from manifests.blocks.strict import IntRange, NonEmpty, NumberRange, tag_of, union_members

__all__ = ["json_schema"]

_SCALARS: dict[Any, dict[str, Any]] = {
    str: {"type": "string"},
    bool: {"type": "boolean"},
    int: {"type": "integer"},
    float: {"type": "number"},
    Any: {},
}


def json_schema(cls: type, *, title: str) -> dict[str, Any]:
    """The draft-07 schema a value of block ``cls`` must satisfy."""
    return {"$schema": "http://json-schema.org/draft-07/schema#", "title": title, **_of(cls)}


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    # Keywords such as minimum or properties apply to their own type only, so adding "null"
    # to the type list is enough; a schema without a type gets null as an alternative.
    kind = schema.get("type")
    if isinstance(kind, str):
        return {**schema, "type": [kind, "null"]}
    if "enum" in schema:
        return {**schema, "enum": [*schema["enum"], None]}
    return {"anyOf": [schema, {"type": "null"}]}


def _of(tp: Any) -> dict[str, Any]:
    if tp in _SCALARS:
        return dict(_SCALARS[tp])
    origin = get_origin(tp)
    if origin is Annotated:
        base, *rules = get_args(tp)
        schema = _of(base)
        for rule in rules:
            schema.update(_keywords(rule))
        return schema
    if origin is Literal:
        choices = list(get_args(tp))
        return {"const": choices[0]} if len(choices) == 1 else {"enum": choices}
    if origin in (list, tuple):
        args = [a for a in get_args(tp) if a is not Ellipsis] or [Any]
        return {"type": "array", "items": _of(args[0])}
    if origin is dict or tp is dict:
        return {"type": "object"}
    members = union_members(tp)
    if members:
        present = [m for m in members if m is not type(None)]
        inner = _of(present[0]) if len(present) == 1 else {"oneOf": [_of(m) for m in present]}
        return _nullable(inner) if len(present) < len(members) else inner
    if attrs.has(tp):
        return _of_class(tp)
    raise TypeError(f"no JSON Schema for {tp!r}")


def _keywords(rule: object) -> dict[str, Any]:
    if isinstance(rule, IntRange | NumberRange):
        return {"minimum": rule.low, **({} if rule.high is None else {"maximum": rule.high})}
    if isinstance(rule, NonEmpty):
        return {"minLength": 1}
    return {}


def _of_class(cls: type) -> dict[str, Any]:
    attrs.resolve_types(cls)
    properties: dict[str, Any] = {}
    required: list[str] = []
    for field in attrs.fields(cls):
        schema = _of(field.type)
        if field.name == "name" and tag_of(cls) is not None:
            required.append("name")
        elif field.default is attrs.NOTHING:
            required.append(field.name)
        description = field.metadata.get("description")
        if description:
            schema["description"] = description
        properties[field.name] = schema
    out: dict[str, Any] = {
        "type": "object",
        "additionalProperties": False,
        "properties": properties,
    }
    if required:
        out["required"] = required
    return out
