"""Worker output capture: pipes → whole lines → supervisor log, per-worker file, memory ring.

``LineSplitter`` is the sans-io core (bytes in, lines out): it never splits a line that fits
in 16 KiB, cuts a longer one into records marked ``truncated`` (meaning "continues in the
next record"), backs a cut off to a UTF-8 character boundary, and flushes a partial line at
EOF. ``WorkerLog`` fans each line out without ever blocking the pipe reader: the ring and
followers are in-memory (followers that fall behind lose lines), and file writes go through a
bounded queue to a thread; a full queue drops lines and counts them (SUPERVISOR.md §11).
"""

from __future__ import annotations

import collections
import contextlib
import datetime
import math
import os
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import attrs
import orjson
import structlog
import trio

from supervisor.config.model import LogSettings

__all__ = [
    "MAX_LINE",
    "RING_SIZE",
    "LogLine",
    "LogRecord",
    "LineSplitter",
    "RotatingLogFile",
    "WorkerLog",
    "strip_control",
    "rfc3339",
]

MAX_LINE = 16 * 1024
RING_SIZE = 500
FILE_QUEUE = 4096  # lines waiting for the disk before we start dropping
FOLLOW_QUEUE = 1024

log = structlog.get_logger(__name__)

_CONTROL = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b[@-Z\\-_]|[\x00-\x08\x0b-\x1f\x7f]")


def strip_control(text: str) -> str:
    """Drop terminal escape sequences and control characters (tabs stay)."""
    return _CONTROL.sub("", text)


def rfc3339(ts: float) -> str:
    return (
        datetime.datetime.fromtimestamp(ts, tz=datetime.UTC)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
    )


@attrs.frozen
class LogLine:
    text: str
    truncated: bool = False  # cut at MAX_LINE; the line continues in the next record


def _char_boundary(buf: bytearray, start: int, cut: int) -> int:
    """Move ``cut`` back (at most 3 bytes) so it does not land inside a UTF-8 sequence."""
    pos = cut
    while pos > start and cut - pos < 3 and (buf[pos] & 0xC0) == 0x80:
        pos -= 1
    return pos if pos > start and (buf[pos] & 0xC0) != 0x80 else cut


class LineSplitter:
    """Bytes in, lines out. No line is ever split unless it is longer than ``max_line``."""

    def __init__(self, max_line: int = MAX_LINE) -> None:
        self.max_line = max_line
        self._buf = bytearray()

    def feed(self, data: bytes | bytearray) -> list[LogLine]:
        self._buf += data
        buf = self._buf
        out: list[LogLine] = []
        start = 0
        while True:
            nl = buf.find(b"\n", start, start + self.max_line + 1)
            if nl != -1:
                out.append(_decode(buf[start:nl], truncated=False))
                start = nl + 1
            elif len(buf) - start > self.max_line:
                cut = _char_boundary(buf, start, start + self.max_line)
                out.append(_decode(buf[start:cut], truncated=True, keep_cr=True))
                start = cut
            else:
                break
        del buf[:start]
        return out

    def flush(self) -> list[LogLine]:
        """At EOF: the partial last line, if any."""
        if not self._buf:
            return []
        line = _decode(self._buf, truncated=False)
        self._buf.clear()
        return [line]

    @property
    def pending(self) -> int:
        return len(self._buf)


def _decode(raw: bytes | bytearray, *, truncated: bool, keep_cr: bool = False) -> LogLine:
    if not keep_cr and raw.endswith(b"\r"):
        raw = raw[:-1]
    return LogLine(bytes(raw).decode("utf-8", errors="replace"), truncated)


@attrs.frozen
class LogRecord:
    seq: int
    ts: float  # unix seconds
    stream: str  # "stdout" | "stderr" | "supervisor"
    line: str
    truncated: bool = False
    pid: int | None = None

    def to_wire(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "stream": self.stream,
            "ts": rfc3339(self.ts),
            "line": strip_control(self.line),
        }
        if self.truncated:
            out["truncated"] = True
        if self.pid is not None:
            out["pid"] = self.pid
        return out


_FILE_TAG = {"stdout": "out", "stderr": "err", "supervisor": "---"}


class RotatingLogFile:
    """Size-rotated file, ``name.log`` → ``name.log.1`` … ``.N``. Used from one thread."""

    def __init__(self, path: Path, max_bytes: int, backups: int) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.backups = backups
        self._f: IO[bytes] | None = None
        self._size = 0

    def _open(self) -> IO[bytes]:
        if self._f is None:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o750)
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o640)
            self._f = os.fdopen(fd, "ab")
            self._size = self._f.tell()
        return self._f

    def write(self, chunks: list[bytes]) -> None:
        for data in chunks:
            f = self._open()
            if self._size and self._size + len(data) > self.max_bytes:
                self._rotate()
                f = self._open()
            f.write(data)
            self._size += len(data)
        if self._f is not None:
            self._f.flush()

    def _rotate(self) -> None:
        self.close()
        if self.backups <= 0:
            with contextlib.suppress(OSError):
                os.unlink(self.path)
            return
        for i in range(self.backups - 1, 0, -1):
            src = self.path.with_name(f"{self.path.name}.{i}")
            if src.exists():
                os.replace(src, self.path.with_name(f"{self.path.name}.{i + 1}"))
        if self.path.exists():
            os.replace(self.path, self.path.with_name(f"{self.path.name}.1"))

    def reopen(self) -> None:
        """For external logrotate (SIGUSR1): close, next write creates the file again."""
        self.close()

    def close(self) -> None:
        if self._f is not None:
            with contextlib.suppress(OSError):
                self._f.close()
            self._f = None
            self._size = 0


class WorkerLog:
    """Everything one worker printed: the ring, the followers, the file, the supervisor log."""

    def __init__(
        self,
        name: str,
        settings: LogSettings | None = None,
        logs_dir: Path | None = None,
        *,
        ring_size: int = RING_SIZE,
    ) -> None:
        self.name = name
        self.settings = settings or LogSettings()
        self.ring: collections.deque[LogRecord] = collections.deque(maxlen=ring_size)
        self.dropped = 0
        self._seq = 0
        self._followers: set[trio.MemorySendChannel[LogRecord]] = set()
        self._logger = structlog.get_logger("supervisor.worker_output")
        self.file: RotatingLogFile | None = None
        self._file_send: trio.MemorySendChannel[bytes] | None = None
        self._file_recv: trio.MemoryReceiveChannel[bytes] | None = None
        if self.settings.file and logs_dir is not None:
            self.file = RotatingLogFile(
                logs_dir / f"{_safe_name(name)}.log", self.settings.max_bytes, self.settings.backups
            )
            self._file_send, self._file_recv = trio.open_memory_channel[bytes](FILE_QUEUE)
        self._reopen = False

    @property
    def file_path(self) -> Path | None:
        return self.file.path if self.file else None

    # -- intake (never blocks) ------------------------------------------------------------

    def emit(
        self, stream: str, text: str, *, truncated: bool = False, pid: int | None = None
    ) -> LogRecord:
        self._seq += 1
        rec = LogRecord(self._seq, time.time(), stream, text, truncated, pid)
        self.ring.append(rec)
        if self.settings.to_supervisor_log and stream != "supervisor":
            structured = _structured(text) if not truncated else None
            if structured is not None:
                # A worker that logs JSON (our actors, structlog users): keep its record as
                # an object at its own level instead of an escaped string inside ``line``.
                level = str(structured.get("level", "info")).lower()
                log_at = getattr(self._logger, _LEVELS.get(level, "info"))
                log_at("worker.output", worker=self.name, stream=stream, pid=pid, record=structured)
            else:
                self._logger.info(
                    "worker.output",
                    worker=self.name,
                    stream=stream,
                    pid=pid,
                    line=text,
                    **({"truncated": True} if truncated else {}),
                )
        if self._file_send is not None:
            tag = _FILE_TAG.get(stream, stream)
            data = f"{rfc3339(rec.ts)} {tag} {text}\n".encode("utf-8", errors="replace")
            try:
                self._file_send.send_nowait(data)
            except trio.WouldBlock:
                self.dropped += 1
        for chan in list(self._followers):
            try:
                chan.send_nowait(rec)
            except trio.WouldBlock:
                pass  # a slow follower loses lines; the worker never waits for it
            except (trio.ClosedResourceError, trio.BrokenResourceError):
                self._followers.discard(chan)
        return rec

    def marker(self, text: str) -> None:
        """A supervisor line in the worker's log, e.g. ``spawned pid 4242 (restart 3)``."""
        self.emit("supervisor", f"--- iii-supervisor: {text} ---")

    async def pump(
        self,
        stream: trio.abc.ReceiveStream,
        name: str,
        pid_of: Callable[[], int | None] | None = None,
        *,
        prefix: str = "",
    ) -> None:
        """Read one pipe to EOF; every complete line goes to ``emit`` as it arrives."""
        splitter = LineSplitter()

        def pid() -> int | None:
            return pid_of() if pid_of is not None else None

        try:
            while True:
                try:
                    chunk = await stream.receive_some(65536)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    break
                if not chunk:
                    break
                for line in splitter.feed(chunk):
                    self.emit(name, prefix + line.text, truncated=line.truncated, pid=pid())
        finally:
            for line in splitter.flush():
                self.emit(name, prefix + line.text, truncated=line.truncated, pid=pid())
            with contextlib.suppress(Exception):
                await stream.aclose()

    # -- readers --------------------------------------------------------------------------

    def tail(self, n: int, stream: str | None = None) -> list[LogRecord]:
        if n <= 0:
            return []
        recs = [r for r in self.ring if stream is None or r.stream == stream]
        return recs[-n:]

    def log_tail(self, n: int = 5, width: int = 200) -> list[str]:
        """The last ``n`` non-empty worker lines, each at most ``width`` chars (last_error)."""
        lines = [
            strip_control(r.line)[:width]
            for r in self.ring
            if r.stream != "supervisor" and r.line.strip()
        ]
        return lines[-n:]

    @contextlib.contextmanager
    def follow(self) -> Iterator[trio.MemoryReceiveChannel[LogRecord]]:
        send, recv = trio.open_memory_channel[LogRecord](FOLLOW_QUEUE)
        self._followers.add(send)
        try:
            yield recv
        finally:
            self._followers.discard(send)
            send.close()

    def close_followers(self) -> None:
        for chan in list(self._followers):
            chan.close()
        self._followers.clear()

    # -- the file writer task -------------------------------------------------------------

    def reopen(self) -> None:
        self._reopen = True

    async def run_writer(self) -> None:
        """Drain the file queue through a thread; returns at once when file logging is off."""
        if self._file_recv is None or self.file is None:
            return
        file = self.file
        try:
            async for first in self._file_recv:
                batch = [first]
                while len(batch) < 512:
                    try:
                        batch.append(self._file_recv.receive_nowait())
                    except (trio.WouldBlock, trio.EndOfChannel):
                        break
                reopen, self._reopen = self._reopen, False
                await trio.to_thread.run_sync(_write_batch, file, batch, reopen)
        finally:
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(file.close)

    def close(self) -> None:
        if self._file_send is not None:
            self._file_send.close()
        self.close_followers()


def _write_batch(file: RotatingLogFile, batch: list[bytes], reopen: bool) -> None:
    if reopen:
        file.reopen()
    try:
        file.write(batch)
    except OSError as exc:  # a full or read-only disk must not take the supervisor down
        log.warning("worker.log_write_failed", path=str(file.path), error=str(exc))


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._#-]", "_", name)


def read_file_tail(path: Path, n: int, max_bytes: int = 8 * 1024 * 1024) -> list[str]:
    """The last ``n`` lines of a worker log file (blocking; call from a thread)."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - max_bytes))
            data = f.read()
    except OSError:
        return []
    lines = data.decode("utf-8", errors="replace").splitlines()
    return lines[-n:] if n < math.inf else lines


_LEVELS = {
    "debug": "debug",
    "info": "info",
    "warning": "warning",
    "warn": "warning",
    "error": "error",
    "critical": "critical",
    "exception": "error",
}


def _structured(text: str) -> dict[str, Any] | None:
    """A JSON log record (an object with an ``event``), or None for a plain line."""
    if not (text.startswith("{") and text.endswith("}")):
        return None
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        return None
    return value if isinstance(value, dict) and isinstance(value.get("event"), str) else None
