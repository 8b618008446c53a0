"""The durable trace archive: bounded by the file's size and by retention (fake time), finished
spans only, and what it holds is there again after reopening (a restart)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from actors.observability.archive import TraceArchive

S = 1_000_000_000


def spans(n: int, *, start: int = 0, end_at: int = 10 * S, pad: int = 400) -> list[dict[str, Any]]:
    return [
        {
            "trace_id": f"{i:032x}",
            "span_id": f"{i:016x}",
            "parent_span_id": None,
            "name": f"op {i}",
            "start_time_unix_nano": end_at - S,
            "end_time_unix_nano": end_at + i,
            "status": "ok",
            "attributes": [["pad", "x" * pad]],
            "service_name": "svc",
            "events": [],
            "links": [],
        }
        for i in range(start, start + n)
    ]


def test_the_file_stays_within_max_disk_bytes_keeping_the_newest(tmp_path: Path) -> None:
    limit = 256 * 1024
    archive = TraceArchive(tmp_path, max_disk_bytes=limit, retention_seconds=3600)
    archive.open_sync()
    for batch in range(20):
        archive.write_sync(spans(100, start=batch * 100), now_ns=11 * S)
        assert archive.disk_bytes_sync() <= limit
    kept = archive.count_sync()
    assert 0 < kept < 2000 and archive.evicted == 2000 - kept
    newest = archive.newest_sync(10, now_ns=11 * S)
    assert newest[-1]["name"] == "op 1999"
    archive.close_sync()
    assert archive.path.stat().st_size <= limit


def test_retention_drops_spans_that_ended_too_long_ago(tmp_path: Path) -> None:
    archive = TraceArchive(tmp_path, max_disk_bytes=10**9, retention_seconds=60)
    archive.open_sync()
    archive.write_sync(spans(5, end_at=10 * S), now_ns=20 * S)
    archive.write_sync(spans(3, start=5, end_at=100 * S), now_ns=100 * S)  # the first 5: 90 s old
    assert archive.count_sync() == 3
    assert archive.newest_sync(100, now_ns=200 * S) == []  # past retention: not restored either
    archive.close_sync()


def test_pending_spans_are_not_archived_and_spans_survive_reopening(tmp_path: Path) -> None:
    archive = TraceArchive(tmp_path, max_disk_bytes=10**9, retention_seconds=3600)
    archive.open_sync()
    pending = spans(1, start=50)[0] | {"end_time_unix_nano": 0}
    archive.write_sync([*spans(3), pending], now_ns=11 * S)
    archive.close_sync()
    again = TraceArchive(tmp_path, max_disk_bytes=10**9, retention_seconds=3600)
    again.open_sync()
    assert [s["name"] for s in again.newest_sync(10, now_ns=11 * S)] == ["op 0", "op 1", "op 2"]
    again.clear_sync()
    assert again.count_sync() == 0
    again.close_sync()
