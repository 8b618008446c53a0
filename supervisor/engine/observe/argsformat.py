"""``registerfunction.observe.args_format``: the observers' ``args`` checked against a JSON
Schema (OBSERVE.md §5.2 step 7, §6.4).

A validator of the common core of JSON Schema (``type``, ``enum``, ``const``, ``required``,
``properties``, ``additionalProperties``, ``items``, string lengths, numeric bounds,
``allOf``/``anyOf``/``oneOf``/``not``, boolean schemas): what owners write for ``args``.
Keywords outside it are ignored (a schema is advisory there), never guessed at.
"""

from __future__ import annotations

from typing import Any

_TYPES: dict[str, Any] = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
    "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    "integer": lambda v: (
        (isinstance(v, int) and not isinstance(v, bool))
        or (isinstance(v, float) and v.is_integer())
    ),
}


def _type_ok(value: Any, wanted: Any) -> bool:
    names = wanted if isinstance(wanted, list) else [wanted]
    return any(name in _TYPES and _TYPES[name](value) for name in names)


def check_args(schema: Any, value: Any, where: str = "args") -> str | None:
    """The first violation as a message naming where it is, or None when ``value`` conforms."""
    if schema is True or schema is None:
        return None
    if schema is False:
        return f"{where}: no value is allowed here"
    if not isinstance(schema, dict):
        return None
    if "type" in schema and not _type_ok(value, schema["type"]):
        return f"{where}: expected {schema['type']}, got {type(value).__name__}"
    if "enum" in schema and isinstance(schema["enum"], list) and value not in schema["enum"]:
        return f"{where}: {value!r} is not one of {schema['enum']!r}"
    if "const" in schema and value != schema["const"]:
        return f"{where}: must be {schema['const']!r}"
    problem = _combinators(schema, value, where)
    if problem:
        return problem
    if isinstance(value, dict):
        return _object(schema, value, where)
    if isinstance(value, list):
        items = schema.get("items")
        for i, item in enumerate(value):
            problem = check_args(items, item, f"{where}[{i}]")
            if problem:
                return problem
    if isinstance(value, str):
        if isinstance(schema.get("minLength"), int) and len(value) < schema["minLength"]:
            return f"{where}: shorter than {schema['minLength']} characters"
        if isinstance(schema.get("maxLength"), int) and len(value) > schema["maxLength"]:
            return f"{where}: longer than {schema['maxLength']} characters"
    if _TYPES["number"](value):
        if (
            "minimum" in schema
            and _TYPES["number"](schema["minimum"])
            and value < schema["minimum"]
        ):
            return f"{where}: below the minimum {schema['minimum']}"
        if (
            "maximum" in schema
            and _TYPES["number"](schema["maximum"])
            and value > schema["maximum"]
        ):
            return f"{where}: above the maximum {schema['maximum']}"
    return None


def _combinators(schema: dict[str, Any], value: Any, where: str) -> str | None:
    for sub in schema.get("allOf") or []:
        problem = check_args(sub, value, where)
        if problem:
            return problem
    any_of = schema.get("anyOf")
    if isinstance(any_of, list) and any_of:
        if all(check_args(sub, value, where) for sub in any_of):
            return f"{where}: matches none of anyOf"
    one_of = schema.get("oneOf")
    if isinstance(one_of, list) and one_of:
        if sum(check_args(sub, value, where) is None for sub in one_of) != 1:
            return f"{where}: must match exactly one of oneOf"
    if "not" in schema and check_args(schema["not"], value, where) is None:
        return f"{where}: must not match the 'not' schema"
    return None


def _object(schema: dict[str, Any], value: dict[str, Any], where: str) -> str | None:
    for name in schema.get("required") or []:
        if isinstance(name, str) and name not in value:
            return f"{where}: missing required property {name!r}"
    props = schema.get("properties")
    props = props if isinstance(props, dict) else {}
    extra = schema.get("additionalProperties", True)
    for name, item in value.items():
        if name in props:
            problem = check_args(props[name], item, f"{where}.{name}")
        elif extra is False:
            return f"{where}: unexpected property {name!r}"
        else:
            problem = check_args(extra, item, f"{where}.{name}")
        if problem:
            return problem
    return None
