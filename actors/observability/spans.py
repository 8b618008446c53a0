"""The in-memory span store and the trace queries of WORKERS.md §10.2 (pure; time is an input).

``SpanStore`` is a ring buffer bounded by a span count (``memory_max_spans``) and by bytes (the
JSON size of the spans it holds, ``trace_storage.memory_max_bytes``); the oldest spans go first,
and ``expire(now_ns)`` drops spans older than the retention. A span that arrives again (a
pending snapshot, then the finished span) replaces the one stored.

``list_traces`` / ``trace_tree`` / ``group_by`` build the results of ``engine::traces::list``,
``::tree`` and ``::group_by`` from it: one row per trace (its root span; a span whose parent
is not stored counts as a root), Span objects without our ``_``-prefixed bookkeeping keys.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any, Final

import orjson

from actors.runtime import Payload
from transport.jsonshape import json_type

__all__ = [
    "INTERNAL_PREFIXES",
    "SpanStore",
    "group_by",
    "is_internal",
    "list_traces",
    "public",
    "span_size",
    "trace_tree",
]

Span = dict[str, Any]
Key = tuple[str, str]

# Traces whose root is one of these functions are the engine's own plumbing (hidden by default).
INTERNAL_PREFIXES: Final = ("engine::", "iii-observability::", "configuration::", "iii.")
_SORT_KEYS: Final = {"start_time", "duration", "duration_ms", "service_name", "name"}


def span_size(span: Span) -> int:
    return len(orjson.dumps(span))


def public(span: Span) -> Span:
    """A stored span as a Span object: without the ``_`` bookkeeping keys."""
    return {k: v for k, v in span.items() if not k.startswith("_")}


def is_internal(span: Span) -> bool:
    if span.get("_internal"):
        return True
    name = span.get("name") or ""
    if name.startswith(INTERNAL_PREFIXES):
        return True
    for key, value in span.get("attributes") or ():
        if key in ("iii.function.id", "iii.function_id", "function_id") and value.startswith(
            INTERNAL_PREFIXES
        ):
            return True
    return False


def duration_ms(span: Span, now_ns: int) -> float:
    end = span.get("end_time_unix_nano") or now_ns  # pending: the duration so far
    return max(0, end - span.get("start_time_unix_nano", 0)) / 1e6


class SpanStore:
    def __init__(self, *, max_spans: int, max_bytes: int | None = None) -> None:
        self.max_spans = max_spans
        self.max_bytes = max_bytes
        self.bytes = 0
        self.evicted = 0
        self._spans: dict[Key, Span] = {}  # insertion order: oldest first
        self._traces: dict[str, dict[str, Span]] = {}

    def __len__(self) -> int:
        return len(self._spans)

    def add(self, span: Span) -> None:
        key = (span["trace_id"], span["span_id"])
        old = self._spans.pop(key, None)
        if old is not None:
            self.bytes -= old["_size"]
        span["_size"] = size = span.get("_size") or span_size(span)
        self._spans[key] = span
        self._traces.setdefault(key[0], {})[key[1]] = span
        self.bytes += size
        while len(self._spans) > self.max_spans or (
            self.max_bytes is not None and self.bytes > self.max_bytes and len(self._spans) > 1
        ):
            self._evict_oldest()

    def _evict_oldest(self) -> None:
        key, span = next(iter(self._spans.items()))
        self._remove(key, span)
        self.evicted += 1

    def _remove(self, key: Key, span: Span) -> None:
        del self._spans[key]
        self.bytes -= span["_size"]
        trace = self._traces.get(key[0])
        if trace is not None:
            trace.pop(key[1], None)
            if not trace:
                del self._traces[key[0]]

    def expire(self, now_ns: int, max_age_ns: int) -> int:
        """Drop the spans (oldest first) that ended, or started while pending, before
        ``now_ns - max_age_ns``; returns how many."""
        cutoff = now_ns - max_age_ns
        dropped = 0
        while self._spans:
            key, span = next(iter(self._spans.items()))
            if (span.get("end_time_unix_nano") or span.get("start_time_unix_nano", 0)) >= cutoff:
                break
            self._remove(key, span)
            dropped += 1
        return dropped

    def clear(self) -> None:
        self._spans.clear()
        self._traces.clear()
        self.bytes = 0

    def spans(self) -> Iterator[Span]:
        return iter(self._spans.values())

    def trace(self, trace_id: str) -> list[Span]:
        return list(self._traces.get(trace_id, {}).values())

    def trace_ids(self) -> Iterable[str]:
        return self._traces.keys()

    def roots(self, trace_id: str) -> list[Span]:
        spans = self._traces.get(trace_id, {})
        roots = [s for s in spans.values() if s.get("parent_span_id") not in spans]
        return sorted(roots, key=lambda s: s.get("start_time_unix_nano", 0))


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
        candidates = list(store.trace_ids())
    rows: list[Span] = []
    for tid in candidates:
        roots = store.roots(tid)
        if not roots:
            continue
        root = roots[0]
        if not include_internal and is_internal(root):
            continue
        if name is not None:
            spans = store.trace(tid) if search_all else [root]
            if not any(_contains(s.get("name"), name) for s in spans):
                continue
        if not (_contains(root.get("service_name"), service) and _contains(root["status"], status)):
            continue
        took = duration_ms(root, now_ns)
        if (min_ms is not None and took < min_ms) or (max_ms is not None and took > max_ms):
            continue
        begin = root.get("start_time_unix_nano", 0) / 1e6
        finish = (root.get("end_time_unix_nano") or now_ns) / 1e6
        if (end_ms is not None and begin > end_ms) or (start_ms is not None and finish < start_ms):
            continue
        attrs = {(k, v) for k, v in root.get("attributes") or ()}
        if any(kv not in attrs for kv in wanted) or any(kv in attrs for kv in unwanted):
            continue
        rows.append(root)

    def order(span: Span) -> Any:
        if sort_by in ("duration", "duration_ms"):
            return duration_ms(span, now_ns)
        if sort_by in ("service_name", "name"):
            return str(span.get(sort_by) or "").lower()
        return span.get("start_time_unix_nano", 0)

    rows.sort(key=order, reverse=descending)
    page = rows[offset:] if limit is None else rows[offset : offset + limit]
    return {
        "spans": [_row(s) for s in page],
        "total": len(rows),
        "offset": offset,
        "limit": limit,
    }


def _row(span: Span) -> Span:
    out = public(span)
    if not span.get("end_time_unix_nano"):
        out["pending"] = True
    return out


def trace_tree(store: SpanStore, data: Any) -> dict[str, Any]:
    """``engine::traces::tree`` without its ``storage`` key: the roots, children nested."""
    p = Payload("engine::traces::tree", data)
    trace_id = p.str("trace_id")
    spans = store.trace(trace_id)
    ids = {s["span_id"] for s in spans}
    children: dict[str, list[Span]] = {}
    roots: list[Span] = []
    for span in sorted(spans, key=lambda s: s.get("start_time_unix_nano", 0)):
        parent = span.get("parent_span_id")
        if isinstance(parent, str) and parent in ids:
            children.setdefault(parent, []).append(span)
        else:
            roots.append(span)

    def node(span: Span, depth: int) -> Span:
        out = _row(span)
        kids = children.get(span["span_id"], []) if depth < 1000 else []
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
    for tid in list(store.trace_ids()):
        roots = store.roots(tid)
        if not roots or (not include_internal and is_internal(roots[0])):
            continue
        for span in store.trace(tid):
            attrs = dict(span.get("attributes") or ())
            if attribute not in attrs:
                continue
            start = span.get("start_time_unix_nano", 0) / 1e6
            end = (span.get("end_time_unix_nano") or now_ns) / 1e6
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
            group["duration_ms"] += duration_ms(span, now_ns)
            if span.get("status") == "error":
                group["error_count"] += 1
    ordered = sorted(groups.values(), key=lambda g: g["last_seen_ms"], reverse=True)
    return {"groups": ordered if limit is None else ordered[:limit]}
