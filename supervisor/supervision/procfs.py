"""Read-only views of ``/proc`` for the child manager: process groups, start times, resources.

Linux only; every function degrades to "unknown" (``None`` or empty) where ``/proc`` is
missing, as SUPERVISOR.md §8.6 asks. One ``ProcessTable`` scan serves every worker's sample.
"""

from __future__ import annotations

import os
import signal
import time

import attrs

__all__ = [
    "ProcStat",
    "ProcessTable",
    "GroupUsage",
    "read_stat",
    "start_time",
    "group_alive",
    "CLOCK_TICKS",
    "PAGE_SIZE",
]

try:
    CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
    PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
except (ValueError, OSError, AttributeError):  # pragma: no cover - non-POSIX
    CLOCK_TICKS = 100
    PAGE_SIZE = 4096


@attrs.frozen
class ProcStat:
    pid: int
    state: str
    ppid: int
    pgrp: int
    utime: int  # clock ticks
    stime: int
    starttime: int  # clock ticks since boot: with the pid, a process identity
    rss_pages: int


def read_stat(pid: int) -> ProcStat | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    # comm may contain spaces and ')' itself: everything after the last ')' is fixed fields.
    rest = data[data.rfind(b")") + 2 :].split()
    try:
        return ProcStat(
            pid=pid,
            state=rest[0].decode(),
            ppid=int(rest[1]),
            pgrp=int(rest[2]),
            utime=int(rest[11]),
            stime=int(rest[12]),
            starttime=int(rest[19]),
            rss_pages=int(rest[21]),
        )
    except (IndexError, ValueError):
        return None


def start_time(pid: int) -> int | None:
    st = read_stat(pid)
    return st.starttime if st else None


def group_alive(pgid: int) -> bool:
    """Whether any process still has this process group (``killpg(pgid, 0)``)."""
    if pgid <= 1:
        return False
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@attrs.frozen
class GroupUsage:
    processes: int
    rss_bytes: int
    cpu_seconds: float


class ProcessTable:
    """A snapshot of every process, rescanned at most once per ``max_age`` seconds."""

    def __init__(self, max_age: float = 1.0) -> None:
        self.max_age = max_age
        self._at = -1e18
        self._procs: dict[int, ProcStat] = {}

    def refresh(self, force: bool = False) -> dict[int, ProcStat]:
        now = time.monotonic()
        if force or now - self._at >= self.max_age:
            procs: dict[int, ProcStat] = {}
            try:
                names = os.listdir("/proc")
            except OSError:
                names = []
            for name in names:
                if name.isdigit():
                    st = read_stat(int(name))
                    if st is not None:
                        procs[st.pid] = st
            self._procs = procs
            self._at = now
        return self._procs

    def members(self, pgid: int, *, force: bool = False) -> list[int]:
        return sorted(
            p.pid for p in self.refresh(force).values() if p.pgrp == pgid and p.state != "Z"
        )

    def descendants(self, root: int, *, force: bool = False) -> set[int]:
        procs = self.refresh(force)
        children: dict[int, list[int]] = {}
        for p in procs.values():
            children.setdefault(p.ppid, []).append(p.pid)
        out: set[int] = set()
        stack = list(children.get(root, ()))
        while stack:
            pid = stack.pop()
            if pid in out:
                continue
            out.add(pid)
            stack.extend(children.get(pid, ()))
        return out

    def usage(self, pgid: int, root: int | None = None) -> GroupUsage | None:
        """Summed RSS and CPU time over the group plus the keeper's escaped descendants."""
        procs = self.refresh()
        if not procs:
            return None
        pids = {p.pid for p in procs.values() if p.pgrp == pgid and p.state != "Z"}
        if root is not None:
            pids |= self.descendants(root)
        rss = 0
        ticks = 0
        count = 0
        for pid in pids:
            p = procs.get(pid)
            if p is None or p.state == "Z":
                continue
            count += 1
            rss += p.rss_pages * PAGE_SIZE
            ticks += p.utime + p.stime
        return GroupUsage(processes=count, rss_bytes=rss, cpu_seconds=ticks / CLOCK_TICKS)


def kill_group(pgid: int, sig: int = signal.SIGKILL) -> bool:
    """``killpg`` that never raises; False when the group is already gone."""
    if pgid <= 1:
        return False
    try:
        os.killpg(pgid, sig)
        return True
    except OSError:
        return False
