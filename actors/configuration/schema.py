"""A small JSON Schema (draft-07) checker for configuration entries (WORKERS.md §2.2).

It covers the vocabulary the built-in workers generate and the common hand-written one:
``type``, ``enum``, ``const``, numeric and string bounds, ``pattern``, ``properties``,
``patternProperties``, ``additionalProperties``, ``required``, ``propertyNames``,
``dependencies``, array keywords, ``allOf``/``anyOf``/``oneOf``/``not``, ``if``/``then``/``else``
and local ``$ref`` (``#/definitions/...``, ``#/$defs/...``, any JSON pointer into the schema).
``format`` and annotations (``title``, ``description``, ``default``, ...) are accepted and not
checked; unknown keywords are ignored, as draft-07 says. Patterns use Python's ``re``, close to
ECMA 262 for the patterns configuration schemas use.

``check_schema`` rejects a schema whose keywords have the wrong shape (``SchemaError``);
``violations`` lists every way an instance fails a (checked) schema, each naming its path.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any, Final, TypeGuard

from transport.jsonshape import json_type as _type_of

__all__ = ["SchemaError", "check_schema", "json_equal", "violations"]

TYPES: Final = ("null", "boolean", "object", "array", "number", "string", "integer")
MAX_REF_DEPTH: Final = 64
_SCHEMA_MAPS: Final = ("properties", "patternProperties", "definitions", "$defs")
_SCHEMA_LISTS: Final = ("allOf", "anyOf", "oneOf")
_SUBSCHEMAS: Final = (
    "additionalProperties",
    "additionalItems",
    "contains",
    "propertyNames",
    "not",
    "if",
    "then",
    "else",
)
_NUMBERS: Final = ("minimum", "maximum", "multipleOf")
_COUNTS: Final = (
    "minLength",
    "maxLength",
    "minItems",
    "maxItems",
    "minProperties",
    "maxProperties",
)


class SchemaError(ValueError):
    """The schema itself is not usable; the message names the offending keyword."""


def _pointer(path: tuple[str | int, ...]) -> str:
    if not path:
        return "/"
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in path)


def _is_number(value: Any) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _has_type(value: Any, name: str) -> bool:
    actual = _type_of(value)
    if name == "number":
        return actual in ("integer", "number")
    if name == "integer":
        return actual == "integer" or (actual == "number" and float(value).is_integer())
    return actual == name


def json_equal(a: Any, b: Any) -> bool:
    """Equality of JSON values (``true`` is not ``1``; ``1`` equals ``1.0``)."""
    if _is_number(a) and _is_number(b):
        return bool(a == b)
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(json_equal(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(json_equal(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def _show(value: Any) -> str:
    text = repr(value) if not isinstance(value, str) else f'"{value}"'
    if value is None:
        text = "null"
    elif isinstance(value, bool):
        text = "true" if value else "false"
    return text if len(text) <= 60 else text[:57] + "..."


# -- checking the schema --------------------------------------------------------------------


def _resolve(root: Any, ref: str) -> Any:
    if not ref.startswith("#"):
        raise SchemaError(f"$ref {ref!r}: only local references (starting with '#') are supported")
    node = root
    pointer = ref[1:]
    if pointer in ("", "/"):
        return root
    if not pointer.startswith("/"):
        raise SchemaError(f"$ref {ref!r}: not a JSON pointer")
    for raw in pointer[1:].split("/"):
        part = raw.replace("~1", "/").replace("~0", "~")
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            raise SchemaError(f"$ref {ref!r} does not resolve")
    return node


def check_schema(schema: Any) -> None:
    """Raise ``SchemaError`` when ``schema`` is not a usable JSON Schema."""
    for path, problem in _schema_problems(schema, schema, ()):
        raise SchemaError(f"{_pointer(path)}: {problem}")


def _schema_problems(
    root: Any, schema: Any, path: tuple[str | int, ...]
) -> Iterator[tuple[tuple[str | int, ...], str]]:
    if isinstance(schema, bool):
        return
    if not isinstance(schema, dict):
        yield path, f"a schema must be an object or a boolean, got {_type_of(schema)}"
        return
    if "type" in schema:
        kind = schema["type"]
        names = kind if isinstance(kind, list) else [kind]
        for name in names:
            if name not in TYPES:
                yield (*path, "type"), f"unknown type {_show(name)}"
    for key in _NUMBERS:
        if key in schema and not _is_number(schema[key]):
            yield (*path, key), "must be a number"
    if "multipleOf" in schema and _is_number(schema["multipleOf"]) and schema["multipleOf"] <= 0:
        yield (*path, "multipleOf"), "must be greater than 0"
    for key in ("exclusiveMinimum", "exclusiveMaximum"):
        if key in schema and not (_is_number(schema[key]) or isinstance(schema[key], bool)):
            yield (*path, key), "must be a number"
    for key in _COUNTS:
        if key in schema:
            value = schema[key]
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                yield (*path, key), "must be a non-negative integer"
    if "pattern" in schema:
        yield from _pattern_problems(schema["pattern"], (*path, "pattern"))
    if "required" in schema:
        req = schema["required"]
        if not isinstance(req, list) or not all(isinstance(r, str) for r in req):
            yield (*path, "required"), "must be an array of strings"
    if "enum" in schema and not isinstance(schema["enum"], list):
        yield (*path, "enum"), "must be an array"
    if "uniqueItems" in schema and not isinstance(schema["uniqueItems"], bool):
        yield (*path, "uniqueItems"), "must be a boolean"
    if "$ref" in schema:
        ref = schema["$ref"]
        if not isinstance(ref, str):
            yield (*path, "$ref"), "must be a string"
        else:
            try:
                _resolve(root, ref)
            except SchemaError as exc:
                yield (*path, "$ref"), str(exc)
    for key in _SCHEMA_MAPS:
        if key in schema:
            mapping = schema[key]
            if not isinstance(mapping, dict):
                yield (*path, key), "must be an object"
                continue
            for name, sub in mapping.items():
                if key == "patternProperties":
                    yield from _pattern_problems(name, (*path, key, name))
                yield from _schema_problems(root, sub, (*path, key, name))
    for key in _SCHEMA_LISTS:
        if key in schema:
            subs = schema[key]
            if not isinstance(subs, list) or not subs:
                yield (*path, key), "must be a non-empty array of schemas"
                continue
            for i, sub in enumerate(subs):
                yield from _schema_problems(root, sub, (*path, key, i))
    for key in _SUBSCHEMAS:
        if key in schema:
            yield from _schema_problems(root, schema[key], (*path, key))
    if "items" in schema:
        items = schema["items"]
        if isinstance(items, list):
            for i, sub in enumerate(items):
                yield from _schema_problems(root, sub, (*path, "items", i))
        else:
            yield from _schema_problems(root, items, (*path, "items"))
    if "dependencies" in schema:
        deps = schema["dependencies"]
        if not isinstance(deps, dict):
            yield (*path, "dependencies"), "must be an object"
        else:
            for name, dep in deps.items():
                if isinstance(dep, list):
                    if not all(isinstance(d, str) for d in dep):
                        yield (*path, "dependencies", name), "must be an array of strings"
                else:
                    yield from _schema_problems(root, dep, (*path, "dependencies", name))


def _pattern_problems(
    pattern: Any, path: tuple[str | int, ...]
) -> Iterator[tuple[tuple[str | int, ...], str]]:
    if not isinstance(pattern, str):
        yield path, "must be a string"
        return
    try:
        re.compile(pattern)
    except re.error as exc:
        yield path, f"invalid regular expression: {exc}"


# -- validating an instance -----------------------------------------------------------------


def violations(schema: Any, instance: Any) -> list[str]:
    """Every violation of ``schema`` (already checked) by ``instance``, as readable lines."""
    return list(_Validator(schema).errors(schema, instance, (), 0))


class _Validator:
    def __init__(self, root: Any) -> None:
        self.root = root

    def valid(self, schema: Any, value: Any, depth: int) -> bool:
        return next(iter(self.errors(schema, value, (), depth)), None) is None

    def errors(
        self, schema: Any, value: Any, path: tuple[str | int, ...], depth: int
    ) -> Iterator[str]:
        where = _pointer(path)
        if schema is True or schema == {}:
            return
        if schema is False:
            yield f"{where}: no value is allowed here"
            return
        if not isinstance(schema, dict):
            return
        if "$ref" in schema:
            if depth >= MAX_REF_DEPTH:
                yield f"{where}: $ref nesting deeper than {MAX_REF_DEPTH}"
                return
            yield from self.errors(_resolve(self.root, schema["$ref"]), value, path, depth + 1)
            return  # draft-07: keywords beside $ref are ignored
        if "type" in schema:
            kind = schema["type"]
            names = kind if isinstance(kind, list) else [kind]
            if not any(_has_type(value, n) for n in names):
                yield f"{where}: {_show(value)} is not of type {' or '.join(map(str, names))}"
                return
        if "enum" in schema and not any(json_equal(value, e) for e in schema["enum"]):
            choices = ", ".join(_show(e) for e in schema["enum"])
            yield f"{where}: {_show(value)} is not one of {choices}"
        if "const" in schema and not json_equal(value, schema["const"]):
            yield f"{where}: {_show(value)} is not {_show(schema['const'])}"
        if _is_number(value):
            yield from self._number(schema, value, where)
        elif isinstance(value, str):
            yield from self._string(schema, value, where)
        elif isinstance(value, list):
            yield from self._array(schema, value, path, depth)
        elif isinstance(value, dict):
            yield from self._object(schema, value, path, depth)
        yield from self._combinators(schema, value, path, depth)

    def _number(self, schema: dict[str, Any], value: float, where: str) -> Iterator[str]:
        low, high = schema.get("minimum"), schema.get("maximum")
        xlow, xhigh = schema.get("exclusiveMinimum"), schema.get("exclusiveMaximum")
        if xlow is True:  # draft-04 spelling
            xlow, low = low, None
        if xhigh is True:
            xhigh, high = high, None
        if _is_number(low) and value < low:
            yield f"{where}: {_show(value)} is less than the minimum of {_show(low)}"
        if _is_number(high) and value > high:
            yield f"{where}: {_show(value)} is greater than the maximum of {_show(high)}"
        if _is_number(xlow) and value <= xlow:
            yield f"{where}: {_show(value)} is not greater than {_show(xlow)}"
        if _is_number(xhigh) and value >= xhigh:
            yield f"{where}: {_show(value)} is not less than {_show(xhigh)}"
        step = schema.get("multipleOf")
        if _is_number(step) and step > 0:
            quotient = value / step
            if not (isinstance(quotient, float) and quotient.is_integer()) and not (
                isinstance(value, int) and isinstance(step, int) and value % step == 0
            ):
                yield f"{where}: {_show(value)} is not a multiple of {_show(step)}"

    def _string(self, schema: dict[str, Any], value: str, where: str) -> Iterator[str]:
        if "minLength" in schema and len(value) < schema["minLength"]:
            yield f"{where}: {_show(value)} is shorter than {schema['minLength']} characters"
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            yield f"{where}: {_show(value)} is longer than {schema['maxLength']} characters"
        if "pattern" in schema and re.search(schema["pattern"], value) is None:
            yield f"{where}: {_show(value)} does not match {_show(schema['pattern'])}"

    def _array(
        self, schema: dict[str, Any], value: list[Any], path: tuple[str | int, ...], depth: int
    ) -> Iterator[str]:
        where = _pointer(path)
        if "minItems" in schema and len(value) < schema["minItems"]:
            yield f"{where}: expected at least {schema['minItems']} items, got {len(value)}"
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            yield f"{where}: expected at most {schema['maxItems']} items, got {len(value)}"
        if schema.get("uniqueItems") is True:
            for i, item in enumerate(value):
                if any(json_equal(item, other) for other in value[:i]):
                    yield f"{where}: items are not unique ({_show(item)} repeats)"
                    break
        items = schema.get("items")
        if isinstance(items, list):
            for i, item in enumerate(value[: len(items)]):
                yield from self.errors(items[i], item, (*path, i), depth)
            extra = schema.get("additionalItems")
            if extra is not None:
                for i in range(len(items), len(value)):
                    yield from self.errors(extra, value[i], (*path, i), depth)
        elif items is not None:
            for i, item in enumerate(value):
                yield from self.errors(items, item, (*path, i), depth)
        if "contains" in schema and not any(
            self.valid(schema["contains"], item, depth) for item in value
        ):
            yield f"{where}: no item matches the `contains` schema"

    def _object(
        self,
        schema: dict[str, Any],
        value: dict[str, Any],
        path: tuple[str | int, ...],
        depth: int,
    ) -> Iterator[str]:
        where = _pointer(path)
        for name in schema.get("required", ()):
            if name not in value:
                yield f"{where}: missing required property {_show(name)}"
        if "minProperties" in schema and len(value) < schema["minProperties"]:
            yield f"{where}: expected at least {schema['minProperties']} properties"
        if "maxProperties" in schema and len(value) > schema["maxProperties"]:
            yield f"{where}: expected at most {schema['maxProperties']} properties"
        properties = schema.get("properties") or {}
        patterns = schema.get("patternProperties") or {}
        extra = schema.get("additionalProperties")
        names = schema.get("propertyNames")
        for key, item in value.items():
            matched = False
            if key in properties:
                matched = True
                yield from self.errors(properties[key], item, (*path, key), depth)
            for pattern, sub in patterns.items():
                if re.search(pattern, key):
                    matched = True
                    yield from self.errors(sub, item, (*path, key), depth)
            if not matched and extra is not None:
                if extra is False:
                    yield f"{where}: additional property {_show(key)} is not allowed"
                else:
                    yield from self.errors(extra, item, (*path, key), depth)
            if names is not None and not self.valid(names, key, depth):
                yield f"{where}: property name {_show(key)} does not match `propertyNames`"
        for name, dep in (schema.get("dependencies") or {}).items():
            if name not in value:
                continue
            if isinstance(dep, list):
                for other in dep:
                    if other not in value:
                        yield f"{where}: property {_show(name)} requires {_show(other)}"
            else:
                yield from self.errors(dep, value, path, depth)

    def _combinators(
        self, schema: dict[str, Any], value: Any, path: tuple[str | int, ...], depth: int
    ) -> Iterator[str]:
        where = _pointer(path)
        for sub in schema.get("allOf", ()):
            yield from self.errors(sub, value, path, depth)
        if "anyOf" in schema and not any(self.valid(s, value, depth) for s in schema["anyOf"]):
            yield f"{where}: {_show(value)} matches none of the `anyOf` schemas"
        if "oneOf" in schema:
            count = sum(1 for s in schema["oneOf"] if self.valid(s, value, depth))
            if count != 1:
                yield (
                    f"{where}: {_show(value)} matches {count} of the `oneOf` schemas "
                    "(expected exactly one)"
                )
        if "not" in schema and self.valid(schema["not"], value, depth):
            yield f"{where}: {_show(value)} matches the `not` schema"
        if "if" in schema:
            branch = "then" if self.valid(schema["if"], value, depth) else "else"
            if branch in schema:
                yield from self.errors(schema[branch], value, path, depth)
