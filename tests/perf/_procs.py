"""Process CPU figures for the benchmarks, read from /proc: a process's user + system time
(its cost whatever else the machine runs) and the processes below one (an engine's actors)."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["cpu_of", "cpu_seconds", "descendants"]

_TICK = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> list[str]:
    # The fields after the command name, which may itself hold spaces and parentheses.
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def cpu_seconds(pid: int) -> float:
    """utime + stime of one process (OSError when it is gone)."""
    fields = _stat(pid)
    return (int(fields[11]) + int(fields[12])) / _TICK


def cpu_of(pids: list[int]) -> float:
    """The CPU seconds of these processes together; a gone one counts 0."""
    total = 0.0
    for pid in pids:
        try:
            total += cpu_seconds(pid)
        except OSError:
            continue
    return total


def descendants(root: int) -> list[int]:
    """The pids of every process below ``root`` (not ``root`` itself)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int(_stat(int(entry.name))[1])
            except OSError:
                continue
            children.setdefault(parent, []).append(int(entry.name))
    out: list[int] = []
    todo = [root]
    while todo:
        kids = children.get(todo.pop(), [])
        out += kids
        todo += kids
    return out
