"""The log store, ``engine::log::*`` records and ``engine::logs::list`` (pure; time is an input).

``LogStore`` keeps at most ``max_count`` Log objects (WORKERS.md §10.2), the oldest evicted
first, and drops those older than ``retention_seconds`` whenever it is written or read.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from typing import Any, Final

from actors.runtime import Payload

__all__ = ["LEVELS", "LogStore", "list_logs", "log_record"]

Log = dict[str, Any]

# engine::log::<level> → (severity text, severity number) (§10.2).
LEVELS: Final = {
    "trace": ("TRACE", 1),
    "debug": ("DEBUG", 5),
    "info": ("INFO", 9),
    "warn": ("WARN", 13),
    "error": ("ERROR", 17),
}
_QUERY_KEYS: Final = (
    "start_time",
    "end_time",
    "trace_id",
    "span_id",
    "severity_min",
    "severity_text",
    "offset",
    "limit",
)


class LogStore:
    def __init__(self, *, max_count: int, retention_seconds: int) -> None:
        self.max_count = max_count
        self.retention_ns = retention_seconds * 1_000_000_000
        self._logs: deque[Log] = deque()

    def __len__(self) -> int:
        return len(self._logs)

    def add(self, record: Log, now_ns: int) -> None:
        self._logs.append(record)
        while len(self._logs) > self.max_count:
            self._logs.popleft()
        self.expire(now_ns)

    def expire(self, now_ns: int) -> None:
        cutoff = now_ns - self.retention_ns
        logs = self._logs
        while logs and logs[0]["observed_timestamp_unix_nano"] < cutoff:
            logs.popleft()

    def clear(self) -> None:
        self._logs.clear()

    def newest_first(self, now_ns: int) -> Iterator[Log]:
        self.expire(now_ns)
        return reversed(self._logs)


def log_record(level: str, data: Any, *, now_ns: int) -> Log:
    """The Log object of one ``engine::log::<level>`` call; raises on a payload without
    ``message`` (``deserialization_error``, as upstream's typed input)."""
    p = Payload(f"engine::log::{level}", data)
    message = p.str("message")
    text, number = LEVELS[level]
    service = p.opt_str("service_name") or "unknown"
    extra = p.data.get("data")
    attributes = (
        dict(extra) if isinstance(extra, dict) else ({} if extra is None else {"data": extra})
    )
    return {
        "timestamp_unix_nano": now_ns,
        "observed_timestamp_unix_nano": now_ns,
        "severity_number": number,
        "severity_text": text,
        "body": message,
        "attributes": attributes,
        "trace_id": p.opt_str("trace_id") or "",
        "span_id": p.opt_str("span_id") or "",
        "resource": {"service.name": service},
        "service_name": service,
    }


def list_logs(store: LogStore | None, data: Any, *, now_ns: int) -> dict[str, Any]:
    """``engine::logs::list``: newest first, ``total`` before pagination; with logs disabled
    (no store) an empty result without ``query``."""
    p = Payload("engine::logs::list", data)
    timestamp = now_ns // 1_000_000
    start, end = p.opt_int("start_time"), p.opt_int("end_time")
    severity_min = p.opt_int("severity_min")
    offset, limit = p.opt_int("offset") or 0, p.opt_int("limit")
    if offset < 0 or (limit is not None and limit < 0):
        raise p.error("`offset` and `limit` must not be negative")
    trace_id, span_id = p.opt_str("trace_id"), p.opt_str("span_id")
    severity_text = p.opt_str("severity_text")
    if store is None:
        return {"logs": [], "total": 0, "timestamp": timestamp}
    matched: list[Log] = []
    for record in store.newest_first(now_ns):
        ms = record["timestamp_unix_nano"] // 1_000_000
        if (start is not None and ms < start) or (end is not None and ms > end):
            continue
        if trace_id is not None and record["trace_id"] != trace_id:
            continue
        if span_id is not None and record["span_id"] != span_id:
            continue
        if severity_min is not None and record["severity_number"] < severity_min:
            continue
        if severity_text is not None and record["severity_text"].lower() != severity_text.lower():
            continue
        matched.append(record)
    page = matched[offset:] if limit is None else matched[offset : offset + limit]
    out: dict[str, Any] = {"logs": page, "total": len(matched), "timestamp": timestamp}
    query = {k: p.data[k] for k in _QUERY_KEYS if p.data.get(k) is not None}
    if query:
        out["query"] = query
    return out
