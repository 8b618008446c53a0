"""Stored spans as compact rows, and the Span objects of WORKERS.md §10.2 made from them only
when a query, the archive or the exporter asks (pure).

A row is a flat tuple: trace id, span id, parent span id, start and end (Unix ns; end 0 while
pending), its size in bytes, its body, its error. The body of one of the engine's spans (the
``ENGINE_SPANS_KIND`` batches) is the number of a ``Shape`` in ``SHAPES``, shared by every span
of the same function, callee and caller, and its error is ``(code, message)`` or None; the body
of a span read from OTLP/JSON (SDK telemetry, the archive) is the Span object itself. So an
engine span costs one tuple to store, whatever it will be asked for later — a tuple of strings
and numbers only, which the garbage collector stops tracking: with a Shape object in it, every
full collection walked every stored row (1–5 µs per stored span at half a million rows).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Final

import orjson

__all__ = [
    "INTERNAL_PREFIXES",
    "SHAPES",
    "Row",
    "Shape",
    "ShapeTable",
    "attributes_of",
    "engine_rows",
    "is_internal",
    "is_internal_row",
    "name_of",
    "row_of",
    "service_of",
    "shape_numbers",
    "span_of",
    "span_size",
    "status_of",
]

Span = dict[str, Any]
# trace id, span id, parent span id, start ns, end ns, size, body (shape number | Span), error
Row = tuple[str, str, "str | None", int, int, int, Any, Any]
TRACE: Final = 0
SPAN: Final = 1
PARENT: Final = 2
START: Final = 3
END: Final = 4
SIZE: Final = 5
BODY: Final = 6
ERROR: Final = 7

# Traces whose root is one of these functions are the engine's own plumbing (hidden by default).
INTERNAL_PREFIXES: Final = ("engine::", "iii-observability::", "configuration::", "iii.")
_FUNCTION_KEYS: Final = ("iii.function.id", "iii.function_id", "function_id")
SERVER_KIND: Final = 2  # OTLP SpanKind of the engine's spans
_PARENT_BYTES: Final = 14  # "<16 hex>" in place of null
_ERROR_BYTES: Final = 64  # the error attribute's and status description's JSON around them


def span_size(span: Span) -> int:
    return len(orjson.dumps(span))


def is_internal(span: Span) -> bool:
    if span.get("_internal"):
        return True
    name = span.get("name") or ""
    if name.startswith(INTERNAL_PREFIXES):
        return True
    for key, value in span.get("attributes") or ():
        if key in _FUNCTION_KEYS and value.startswith(INTERNAL_PREFIXES):
            return True
    return False


class Shape:
    """What the engine's spans of one (function, namespace, callee, caller) share."""

    __slots__ = ("attributes", "internal", "name", "scope", "service_name", "size")

    def __init__(self, name: str, attributes: list[list[str]], service: str, scope: str) -> None:
        self.name = name
        self.attributes = attributes
        self.service_name = service
        self.scope = scope
        self.internal = False
        self.size = 0
        template = _span_of(self, ("0" * 32, "0" * 16, None, 10**18, 10**18, 0, -1, None))
        self.internal = is_internal(template)
        self.size = span_size(template)


class ShapeTable:
    """The shapes met so far, by number, so a batch's shape table costs a lookup per entry and
    the rows of many batches share one shape. ``prune`` forgets those no row uses any more."""

    def __init__(self) -> None:
        self._numbers: dict[tuple[Any, ...], int] = {}
        self.shapes: dict[int, Shape] = {}
        self._keys: dict[int, tuple[Any, ...]] = {}
        self._next = 0

    def __len__(self) -> int:
        return len(self.shapes)

    def number(self, raw: Any, service: str, scope: str) -> int | None:
        if not (isinstance(raw, list) and len(raw) == 2 and isinstance(raw[0], str)):
            return None
        name, attrs = raw
        if not isinstance(attrs, list):
            return None
        try:
            key = (service, scope, name, *(a for kv in attrs for a in kv))
            found = self._numbers.get(key)
            if found is not None:
                return found
            pairs = [[str(k), str(v)] for k, v in attrs]
        except (TypeError, ValueError):
            return None
        found = self._next
        self._next += 1
        self._numbers[key] = found
        self._keys[found] = key
        self.shapes[found] = Shape(name, pairs, service, scope)
        return found

    def prune(self, used: set[int]) -> int:
        """Forget the shapes whose number is not in ``used``; returns how many."""
        gone = [n for n in self.shapes if n not in used]
        for n in gone:
            del self.shapes[n]
            del self._numbers[self._keys.pop(n)]
        return len(gone)


SHAPES: Final = ShapeTable()  # the process's: engine rows hold numbers in it


def engine_rows(body: Any, shapes: ShapeTable = SHAPES) -> list[Row]:
    """The rows of an ``ENGINE_SPANS_KIND`` batch; unreadable rows are skipped."""
    if not isinstance(body, dict):
        return []
    service = body.get("service_name")
    scope = body.get("scope")
    table = body.get("shapes")
    spans = body.get("spans")
    if not isinstance(table, list) or not isinstance(spans, list):
        return []
    service = service if isinstance(service, str) and service else "unknown"
    scope = scope if isinstance(scope, str) else ""
    numbers = [shapes.number(raw, service, scope) for raw in table]
    sizes = [0 if n is None else shapes.shapes[n].size for n in numbers]
    if None not in numbers:
        # The usual batch: every row of five fields (no error) and every shape readable. A row
        # of seven (an error) ends it for the row-by-row way below, which also skips what this
        # skips (a bad traceparent or time) and what fails here (a bad shape index).
        with_parent = [size + _PARENT_BYTES for size in sizes]
        try:
            return [
                (
                    tp[3:35],
                    tp[36:52],
                    parent,
                    start,
                    end,
                    sizes[at] if parent is None else with_parent[at],
                    numbers[at],
                    None,
                )
                for tp, parent, at, start, end in spans
                if len(tp) == 55 and type(start) is int and type(end) is int
            ]
        except (TypeError, ValueError, IndexError):
            pass
    rows: list[Row] = []
    append = rows.append
    for raw in spans:
        try:
            if len(raw) == 5:  # the usual row: unpacked whole, without a slice
                tp, parent, at, start, end = raw
            else:
                tp, parent, at, start, end = raw[:5]
            number = numbers[at]
            if number is None or len(tp) != 55 or type(start) is not int or type(end) is not int:
                continue
            size = sizes[at] if parent is None else sizes[at] + _PARENT_BYTES
            if len(raw) == 5:
                append((tp[3:35], tp[36:52], parent, start, end, size, number, None))
            else:
                code, message = str(raw[5]), str(raw[6] or "")
                size += _ERROR_BYTES + len(code) + len(message)
                append((tp[3:35], tp[36:52], parent, start, end, size, number, (code, message)))
        except (TypeError, ValueError, IndexError):
            continue
    return rows


def row_of(span: Span) -> Row:
    """The row of a Span object (read from OTLP/JSON or the archive); sized once."""
    size = span.get("_size") or 0
    if not size:
        span["_size"] = size = span_size(span)
    return (
        span["trace_id"],
        span["span_id"],
        span.get("parent_span_id"),
        span.get("start_time_unix_nano") or 0,
        span.get("end_time_unix_nano") or 0,
        size,
        span,
        None,
    )


def _span_of(shape: Shape, row: Row) -> Span:
    err = row[ERROR]
    attributes = [list(kv) for kv in shape.attributes]
    if err is not None:
        attributes.append(["iii.error.code", err[0]])
    span: Span = {
        "trace_id": row[TRACE],
        "span_id": row[SPAN],
        "parent_span_id": row[PARENT],
        "name": shape.name,
        "_kind": SERVER_KIND,
        "start_time_unix_nano": row[START],
        "end_time_unix_nano": row[END],
        "status": "ok" if err is None else "error",
        "attributes": attributes,
        "service_name": shape.service_name,
        "events": [],
        "links": [],
    }
    if err is not None and err[1]:
        span["status_description"] = err[1]
    if shape.scope:
        span["instrumentation_scope_name"] = shape.scope
    return span


def span_of(row: Row) -> Span:
    """The stored Span object of a row (with the ``_`` bookkeeping keys; a fresh dict for an
    engine span, the stored one for any other)."""
    body = row[BODY]
    return body if type(body) is dict else _span_of(SHAPES.shapes[body], row)


# -- what the queries read of a row without making its Span object ------------------------------


def name_of(row: Row) -> str:
    body = row[BODY]
    return str(body.get("name") or "") if type(body) is dict else SHAPES.shapes[body].name


def service_of(row: Row) -> str:
    body = row[BODY]
    if type(body) is dict:
        return str(body.get("service_name") or "")
    return SHAPES.shapes[body].service_name


def status_of(row: Row) -> str:
    body = row[BODY]
    if type(body) is dict:
        return str(body.get("status") or "")
    return "ok" if row[ERROR] is None else "error"


def attributes_of(row: Row) -> list[list[str]]:
    body = row[BODY]
    if type(body) is dict:
        return list(body.get("attributes") or ())
    attributes = SHAPES.shapes[body].attributes
    if row[ERROR] is None:
        return attributes
    return [*attributes, ["iii.error.code", row[ERROR][0]]]


def is_internal_row(row: Row) -> bool:
    body = row[BODY]
    return is_internal(body) if type(body) is dict else SHAPES.shapes[body].internal


def shape_numbers(rows: Iterable[Row]) -> set[int]:
    """The shape numbers these rows use (what ``SHAPES.prune`` must keep)."""
    return {body for row in rows if type(body := row[BODY]) is int}
