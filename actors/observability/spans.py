"""The in-memory span store and the trace queries of WORKERS.md §10.2 (pure; time is an input).

``SpanStore`` holds rows (spanrows.py) in arrival order, bounded by a span count
(``memory_max_spans``) and by bytes (the JSON size of the Span objects they stand for,
``trace_storage.memory_max_bytes``); the oldest go first, and ``expire(now_ns)`` drops those
older than the retention. A span that arrives again (a pending snapshot, then the finished span)
replaces the one stored. Storing costs O(1): the per-trace index the queries need is brought up
to date when a query asks, from the keys stored since the last one.

``list_traces`` / ``trace_tree`` / ``group_by`` build the results of ``engine::traces::list``,
``::tree`` and ``::group_by`` from it: one row per trace (its root span; a span whose parent
is not stored counts as a root), Span objects without our ``_``-prefixed bookkeeping keys, made
only for the spans a result returns. ``collapse`` hides matching spans from trees.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from fnmatch import translate
from operator import itemgetter
from typing import Any, Final

from actors.observability.spanrows import (
    END,
    INTERNAL_PREFIXES,
    PARENT,
    SIZE,
    SPAN,
    START,
    TRACE,
    Row,
    attributes_of,
    is_internal,
    is_internal_row,
    name_of,
    row_of,
    service_of,
    span_of,
    span_size,
    status_of,
)
from actors.runtime import Payload
from transport.jsonshape import json_type

__all__ = [
    "INTERNAL_PREFIXES",
    "Collapse",
    "SpanStore",
    "collapse_rules",
    "group_by",
    "is_internal",
    "list_traces",
    "public",
    "span_size",
    "trace_tree",
]

Span = dict[str, Any]
Key = tuple[str, str]
# collapse_spans entries: a span whose name matches the first and whose service the second
# (when given) is hidden from trees.
Collapse = tuple[re.Pattern[str], "re.Pattern[str] | None"]

_SORT_KEYS: Final = {"start_time", "duration", "duration_ms", "service_name", "name"}


def public(span: Span) -> Span:
    """A stored span as a Span object: without the ``_`` bookkeeping keys."""
    return {k: v for k, v in span.items() if not k.startswith("_")}


_key: Final = itemgetter(TRACE, SPAN)
_size: Final = itemgetter(SIZE)


def duration_ms(row: Row, now_ns: int) -> float:
    end = row[END] or now_ns  # pending: the duration so far
    return max(0, end - row[START]) / 1e6


class SpanStore:
    def __init__(self, *, max_spans: int, max_bytes: int | None = None) -> None:
        self.max_spans = max_spans
        self.max_bytes = max_bytes
        self.bytes = 0
        self.evicted = 0
        self._rows: dict[Key, Row] = {}
        self._order: deque[Row] = deque()  # arrival order; a replaced row stays until reached
        self._index: dict[str, dict[str, Row]] | None = None  # trace id → span id → row
        self._unindexed: list[Key] = []  # stored since the index was brought up to date

    def __len__(self) -> int:
        return len(self._rows)

    def add(self, span: Span) -> None:
        """A Span object (OTLP/JSON, the archive)."""
        self.add_rows([row_of(span)])

    def add_rows(self, rows: Iterable[Row]) -> None:
        stored, order = self._rows, self._order
        indexed = self._index is not None
        unindexed = self._unindexed
        batch = rows if isinstance(rows, list) else list(rows)
        keys: list[Key] = list(map(_key, batch))
        count = len(stored)
        if stored.keys().isdisjoint(keys):
            # The usual batch: spans not stored yet, stored without a bytecode per row. Two of
            # the same span in it (the dict grew by fewer) take the row-by-row way below.
            stored.update(zip(keys, batch, strict=True))
            if len(stored) == count + len(keys):
                order.extend(batch)
                self.bytes += sum(map(_size, batch))
                if indexed:
                    unindexed.extend(keys)
                self._bound(indexed)
                return
            for key in keys:
                stored.pop(key, None)
        added = 0
        for row in batch:
            key = (row[TRACE], row[SPAN])
            count = len(stored)
            old = stored.setdefault(key, row)  # one lookup for a new span
            if len(stored) == count:  # it arrived again: the new one replaces it, at the end
                added -= old[SIZE]
                del stored[key]
                stored[key] = row
            order.append(row)
            added += row[SIZE]
            if indexed:
                unindexed.append(key)
        self.bytes += added
        self._bound(indexed)

    def _bound(self, indexed: bool) -> None:
        stored, order, unindexed = self._rows, self._order, self._unindexed
        max_bytes = self.max_bytes
        while len(stored) > self.max_spans or (
            max_bytes is not None and self.bytes > max_bytes and len(stored) > 1
        ):
            self._pop_oldest()
            self.evicted += 1
        if len(order) > 2 * len(stored) + 1024:
            self._order = deque(stored.values())  # drop the replaced rows (same order)
        if indexed and len(unindexed) > 2 * len(stored) + 1024:
            self._index, self._unindexed = None, []  # nobody asks: rebuilt when one does

    def _pop_oldest(self) -> Row:
        stored, order = self._rows, self._order
        while True:
            row = order.popleft()
            key = (row[TRACE], row[SPAN])
            if stored.get(key) is row:
                self._remove(key, row)
                return row

    def _remove(self, key: Key, row: Row) -> None:
        del self._rows[key]
        self.bytes -= row[SIZE]
        if self._index is not None:
            trace = self._index.get(key[0])
            if trace is not None and trace.get(key[1]) is row:
                del trace[key[1]]
                if not trace:
                    del self._index[key[0]]

    def expire(self, now_ns: int, max_age_ns: int) -> int:
        """Drop the spans (oldest first) that ended, or started while pending, before
        ``now_ns - max_age_ns``; returns how many."""
        cutoff = now_ns - max_age_ns
        dropped = 0
        stored, order = self._rows, self._order
        while order:
            row = order[0]
            key = (row[TRACE], row[SPAN])
            if stored.get(key) is not row:
                order.popleft()  # replaced since
                continue
            if (row[END] or row[START]) >= cutoff:
                break
            order.popleft()
            self._remove(key, row)
            dropped += 1
        return dropped

    def clear(self) -> None:
        self._rows.clear()
        self._order.clear()
        self._index, self._unindexed = None, []
        self.bytes = 0

    def _synced(self) -> dict[str, dict[str, Row]]:
        index = self._index
        stored = self._rows
        if index is None:
            index = self._index = {}
            keys: Iterable[Key] = stored
        else:
            keys = self._unindexed
        for key in keys:
            row = stored.get(key)
            if row is not None:
                trace = index.get(key[0])
                if trace is None:
                    trace = index[key[0]] = {}
                trace[key[1]] = row
        self._unindexed = []
        return index

    def rows(self) -> Iterator[Row]:
        return iter(list(self._rows.values()))

    def spans(self) -> Iterator[Span]:
        return (span_of(row) for row in list(self._rows.values()))

    def rows_of(self, trace_id: str) -> list[Row]:
        return list(self._synced().get(trace_id, {}).values())

    def trace(self, trace_id: str) -> list[Span]:
        return [span_of(row) for row in self.rows_of(trace_id)]

    def trace_ids(self) -> list[str]:
        return list(self._synced())

    def root_rows(self, trace_id: str) -> list[Row]:
        rows = self._synced().get(trace_id, {})
        roots = [r for r in rows.values() if r[PARENT] not in rows]
        return sorted(roots, key=lambda r: r[START])

    def roots(self, trace_id: str) -> list[Span]:
        return [span_of(row) for row in self.root_rows(trace_id)]


def collapse_rules(entries: Iterable[tuple[str, str | None]]) -> list[Collapse]:
    """``collapse_spans`` entries (name, service), as globs (``*`` and ``?``)."""
    return [
        (re.compile(translate(name)), None if service is None else re.compile(translate(service)))
        for name, service in entries
    ]


# -- queries ------------------------------------------------------------------------------------


def _opt_number(p: Payload, key: str) -> float | None:
    value = p.data.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise p.error(f"`{key}`: invalid type: {json_type(value)}, expected a number")
    return float(value)


def _opt_int(p: Payload, key: str, default: int | None) -> int | None:
    value = p.data.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise p.error(f"`{key}`: invalid value: {value!r}, expected a non-negative integer")
    return value


def _pairs(p: Payload, key: str) -> list[tuple[str, str]]:
    value = p.data.get(key)
    if value is None:
        return []
    ok = isinstance(value, list) and all(
        isinstance(kv, list) and len(kv) == 2 and all(isinstance(x, str) for x in kv)
        for kv in value
    )
    if not ok:
        raise p.error(f"`{key}`: expected an array of [key, value] string pairs")
    return [(k, v) for k, v in value]


def _contains(haystack: Any, needle: str | None) -> bool:
    return needle is None or needle.lower() in str(haystack or "").lower()


def list_traces(store: SpanStore, data: Any, *, now_ns: int) -> dict[str, Any]:
    """``engine::traces::list`` without its ``storage`` key."""
    p = Payload("engine::traces::list", data)
    trace_id = p.opt_str("trace_id")
    trace_ids = p.data.get("trace_ids")
    if trace_ids is not None and not (
        isinstance(trace_ids, list) and all(isinstance(t, str) for t in trace_ids)
    ):
        raise p.error("`trace_ids`: expected an array of strings")
    offset = _opt_int(p, "offset", 0) or 0
    limit = _opt_int(p, "limit", 100)
    service, name, status = p.opt_str("service_name"), p.opt_str("name"), p.opt_str("status")
    min_ms, max_ms = _opt_number(p, "min_duration_ms"), _opt_number(p, "max_duration_ms")
    start_ms, end_ms = _opt_number(p, "start_time"), _opt_number(p, "end_time")
    sort_by = p.opt_str("sort_by") or "start_time"
    if sort_by not in _SORT_KEYS:
        sort_by = "start_time"
    descending = (p.opt_str("sort_order") or "asc").lower() == "desc"
    wanted = _pairs(p, "attributes")
    unwanted = _pairs(p, "exclude_attributes")
    include_internal = p.opt_bool("include_internal")
    search_all = p.opt_bool("search_all_spans")

    if trace_id is not None:
        candidates: Iterable[str] = [trace_id]
    elif trace_ids is not None:
        candidates = list(dict.fromkeys(trace_ids))
    else:
        candidates = store.trace_ids()
    rows: list[Row] = []
    for tid in candidates:
        roots = store.root_rows(tid)
        if not roots:
            continue
        root = roots[0]
        if not include_internal and is_internal_row(root):
            continue
        if name is not None:
            spans = store.rows_of(tid) if search_all else [root]
            if not any(_contains(name_of(s), name) for s in spans):
                continue
        if not (_contains(service_of(root), service) and _contains(status_of(root), status)):
            continue
        took = duration_ms(root, now_ns)
        if (min_ms is not None and took < min_ms) or (max_ms is not None and took > max_ms):
            continue
        begin = root[START] / 1e6
        finish = (root[END] or now_ns) / 1e6
        if (end_ms is not None and begin > end_ms) or (start_ms is not None and finish < start_ms):
            continue
        if wanted or unwanted:
            attrs = {(k, v) for k, v in attributes_of(root)}
            if any(kv not in attrs for kv in wanted) or any(kv in attrs for kv in unwanted):
                continue
        rows.append(root)

    def order(row: Row) -> Any:
        if sort_by in ("duration", "duration_ms"):
            return duration_ms(row, now_ns)
        if sort_by == "service_name":
            return service_of(row).lower()
        if sort_by == "name":
            return name_of(row).lower()
        return row[START]

    rows.sort(key=order, reverse=descending)
    page = rows[offset:] if limit is None else rows[offset : offset + limit]
    return {
        "spans": [_row(r) for r in page],
        "total": len(rows),
        "offset": offset,
        "limit": limit,
    }


def _row(row: Row) -> Span:
    out = public(span_of(row))
    if not row[END]:
        out["pending"] = True
    return out


def _collapsed(row: Row, rules: Sequence[Collapse]) -> bool:
    name = name_of(row)
    for name_rule, service_rule in rules:
        if name_rule.match(name) and (service_rule is None or service_rule.match(service_of(row))):
            return True
    return False


def trace_tree(store: SpanStore, data: Any, *, collapse: Sequence[Collapse] = ()) -> dict[str, Any]:
    """``engine::traces::tree`` without its ``storage`` key: the roots, children nested. A span
    matching ``collapse`` is left out and its children hang from its nearest shown ancestor."""
    p = Payload("engine::traces::tree", data)
    trace_id = p.str("trace_id")
    rows = store.rows_of(trace_id)
    parents = {r[SPAN]: r[PARENT] for r in rows}
    hidden = {r[SPAN] for r in rows if _collapsed(r, collapse)} if collapse else set()
    children: dict[str, list[Row]] = {}
    roots: list[Row] = []
    for row in sorted(rows, key=lambda r: r[START]):
        if row[SPAN] in hidden:
            continue
        parent = row[PARENT]
        for _ in range(1000):  # up through hidden spans (a cycle ends as a root)
            if parent not in hidden:
                break
            parent = parents.get(parent)
        if isinstance(parent, str) and parent in parents and parent not in hidden:
            children.setdefault(parent, []).append(row)
        else:
            roots.append(row)

    def node(row: Row, depth: int) -> Span:
        out = _row(row)
        kids = children.get(row[SPAN], []) if depth < 1000 else []
        out["children"] = [node(c, depth + 1) for c in kids]
        return out

    return {"roots": [node(r, 0) for r in roots]}


def group_by(store: SpanStore, data: Any, *, now_ns: int) -> dict[str, Any]:
    """``engine::traces::group_by`` without its ``storage`` key: newest group first."""
    p = Payload("engine::traces::group_by", data)
    attribute = p.str("attribute")
    since_ms = _opt_number(p, "since_ms")
    limit = _opt_int(p, "limit", 100)
    include_internal = p.opt_bool("include_internal")
    label_attribute = p.opt_str("label_attribute")
    groups: dict[str, dict[str, Any]] = {}
    for tid in store.trace_ids():
        roots = store.root_rows(tid)
        if not roots or (not include_internal and is_internal_row(roots[0])):
            continue
        for row in store.rows_of(tid):
            attrs = dict(attributes_of(row))
            if attribute not in attrs:
                continue
            start = row[START] / 1e6
            end = (row[END] or now_ns) / 1e6
            if since_ms is not None and end < since_ms:
                continue
            value = attrs[attribute]
            group = groups.setdefault(
                value,
                {
                    "value": value,
                    "label": value,
                    "trace_ids": [],
                    "span_count": 0,
                    "first_seen_ms": start,
                    "last_seen_ms": end,
                    "duration_ms": 0.0,
                    "error_count": 0,
                },
            )
            if label_attribute is not None and label_attribute in attrs:
                group["label"] = attrs[label_attribute]
            if tid not in group["trace_ids"]:
                group["trace_ids"].append(tid)
            group["span_count"] += 1
            group["first_seen_ms"] = min(group["first_seen_ms"], start)
            group["last_seen_ms"] = max(group["last_seen_ms"], end)
            group["duration_ms"] += duration_ms(row, now_ns)
            if status_of(row) == "error":
                group["error_count"] += 1
    ordered = sorted(groups.values(), key=lambda g: g["last_seen_ms"], reverse=True)
    return {"groups": ordered if limit is None else ordered[:limit]}
