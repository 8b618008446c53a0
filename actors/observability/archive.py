"""The durable trace archive (``trace_storage``): finished spans in SQLite, so traces survive a
restart, bounded by ``max_disk_bytes`` (the database file's size) and ``retention_seconds``.

Blocking SQLite calls run in a worker thread (``trio.to_thread``), one at a time. The file uses
``auto_vacuum = FULL``, so deleting spans gives the pages back and the file shrinks: after each
write the oldest spans are deleted in chunks until the file fits ``max_disk_bytes`` again.
A failure marks the archive degraded (health reports it) and never reaches the caller.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any, Final

import orjson
import structlog
import trio

__all__ = ["TraceArchive"]

log = structlog.get_logger("iii-observability.archive")

FILE_NAME: Final = "traces.sqlite3"
_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS spans (
    trace_id TEXT NOT NULL,
    span_id TEXT NOT NULL,
    end_ns INTEGER NOT NULL,
    body BLOB NOT NULL,
    PRIMARY KEY (trace_id, span_id)
);
CREATE INDEX IF NOT EXISTS spans_by_end ON spans (end_ns);
"""


class TraceArchive:
    def __init__(self, directory: Path, *, max_disk_bytes: int, retention_seconds: int) -> None:
        self.directory = directory
        self.path = directory / FILE_NAME
        self.max_disk_bytes = max_disk_bytes
        self.retention_ns = retention_seconds * 1_000_000_000
        self.degraded: str | None = None
        self.written = 0
        self.evicted = 0
        self._db: sqlite3.Connection | None = None
        self._lock = trio.Lock()

    # -- blocking core (a worker thread, or a unit test, calls these) -----------------------

    def open_sync(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        db.execute("PRAGMA auto_vacuum = FULL")  # before the first table: pages are returned
        db.execute("PRAGMA journal_mode = WAL")
        db.execute("PRAGMA synchronous = NORMAL")
        db.executescript(_SCHEMA)
        self._db = db

    def close_sync(self) -> None:
        if self._db is not None:
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            self._db.close()
            self._db = None

    def disk_bytes_sync(self) -> int:
        assert self._db is not None
        pages = self._db.execute("PRAGMA page_count").fetchone()[0]
        size = self._db.execute("PRAGMA page_size").fetchone()[0]
        return int(pages * size)

    def write_sync(self, spans: list[dict[str, Any]], now_ns: int) -> None:
        db = self._db
        assert db is not None
        rows = [
            (s["trace_id"], s["span_id"], s["end_time_unix_nano"], orjson.dumps(s))
            for s in spans
            if s.get("end_time_unix_nano")  # finished spans only (§10.6)
        ]
        db.execute("BEGIN")
        db.executemany("INSERT OR REPLACE INTO spans VALUES (?, ?, ?, ?)", rows)
        db.execute("DELETE FROM spans WHERE end_ns < ?", (now_ns - self.retention_ns,))
        db.execute("COMMIT")
        self.written += len(rows)
        self._fit_sync()

    def _fit_sync(self) -> None:
        db = self._db
        assert db is not None
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # pages live in the main file again
        while self.disk_bytes_sync() > self.max_disk_bytes:
            count = db.execute("SELECT count(*) FROM spans").fetchone()[0]
            if not count:
                break
            chunk = max(1, count // 10)
            db.execute(
                "DELETE FROM spans WHERE rowid IN "
                "(SELECT rowid FROM spans ORDER BY end_ns LIMIT ?)",
                (chunk,),
            )
            self.evicted += chunk
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def newest_sync(self, limit: int, now_ns: int) -> list[dict[str, Any]]:
        """The newest ``limit`` spans still within retention, oldest first."""
        assert self._db is not None
        rows = self._db.execute(
            "SELECT body FROM spans WHERE end_ns >= ? ORDER BY end_ns DESC LIMIT ?",
            (now_ns - self.retention_ns, limit),
        ).fetchall()
        return [orjson.loads(r[0]) for r in reversed(rows)]

    def clear_sync(self) -> None:
        assert self._db is not None
        self._db.execute("DELETE FROM spans")
        self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def count_sync(self) -> int:
        assert self._db is not None
        return int(self._db.execute("SELECT count(*) FROM spans").fetchone()[0])

    # -- from trio ---------------------------------------------------------------------------

    async def _run(self, fn: Any, *args: Any) -> Any:
        async with self._lock:
            try:
                return await trio.to_thread.run_sync(fn, *args)
            except (sqlite3.Error, OSError) as exc:
                if self.degraded is None:
                    log.error(
                        "trace archive failed; traces are kept in memory only", error=str(exc)
                    )
                self.degraded = str(exc)
                return None

    async def open(self) -> None:
        await self._run(self.open_sync)

    async def close(self) -> None:
        await self._run(self.close_sync)

    async def write(self, spans: list[dict[str, Any]], now_ns: int) -> None:
        if self._db is not None:
            await self._run(self.write_sync, spans, now_ns)

    async def newest(self, limit: int, now_ns: int) -> list[dict[str, Any]]:
        if self._db is None:
            return []
        return await self._run(self.newest_sync, limit, now_ns) or []

    async def clear(self) -> None:
        if self._db is not None:
            await self._run(self.clear_sync)

    def status(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "enabled": True,
            "status": "degraded" if self.degraded else "ok",
            "directory": str(self.directory),
            "max_disk_bytes": self.max_disk_bytes,
            "retention_seconds": self.retention_ns // 1_000_000_000,
            "written_spans": self.written,
            "evicted_spans": self.evicted,
        }
        try:
            out["disk_bytes"] = self.path.stat().st_size
        except OSError:
            out["disk_bytes"] = 0
        if self.degraded:
            out["error"] = self.degraded
        return out
