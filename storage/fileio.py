"""Files of one file-based store: names, the directory lock and small durable-I/O helpers.

Used by ``storage.filelog``; everything here is blocking and runs in worker threads.
"""

from __future__ import annotations

import fcntl
import os
import re
import string
import time
from pathlib import Path
from typing import Final

from storage.errors import StorageUnavailableError

__all__ = ["StoreFiles", "acquire_lock", "encode_name", "fsync_dir", "write_all"]

_SAFE_CHARS: Final = frozenset(string.ascii_letters + string.digits + "-_.")


def encode_name(name: str) -> str:
    """§1.8 file-name encoding: keep ``A–Z a–z 0–9 - _ .``, write other bytes as ``%XX``."""
    return "".join(
        ch if ch in _SAFE_CHARS else "".join(f"%{b:02X}" for b in ch.encode("utf-8")) for ch in name
    )


class StoreFiles:
    """Paths of one store inside its directory."""

    def __init__(self, directory: Path, name: str) -> None:
        self.directory = directory
        self.base = encode_name(name) or "kv"
        self.snapshot = directory / f"{self.base}.snapshot"
        self.tmp = directory / f"{self.base}.snapshot.tmp"
        self.lock = directory / f"{self.base}.lock"
        self._log_re = re.compile(re.escape(self.base) + r"\.wal-(\d{10})")

    def log(self, gen: int) -> Path:
        return self.directory / f"{self.base}.wal-{gen:010d}"

    def logs(self) -> list[tuple[int, Path]]:
        found = []
        for entry in os.scandir(self.directory):
            match = self._log_re.fullmatch(entry.name)
            if match:
                found.append((int(match.group(1)), Path(entry.path)))
        return sorted(found)

    def set_aside(self, path: Path) -> Path:
        """Rename an unreadable file out of the way (kept for inspection)."""
        target = path.with_name(f"{path.name}.corrupt-{time.time_ns()}")
        os.replace(path, target)
        return target


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def acquire_lock(path: Path) -> int:
    """``flock`` ``path`` exclusively (non-blocking) and return its descriptor."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise StorageUnavailableError(
            f"{path} is held by another open store (one process per store)"
        ) from None
    return fd
