"""The README's first-function guide as data: its steps, in order, read from the markers.

A ``<!-- guide:KIND [ARG] -->`` comment names what the fenced block after it is: ``run``
(shell commands; ``run eventually``: a read-only command a person re-runs until it shows
what the README says),
``background`` (a command that keeps running, ``iii-supervisor up``), ``file NAME`` (a file
to write in the current folder) and ``output`` (what the previous ``run`` prints, ``…``
standing for anything). ``guide:node`` starts the Node part and ``guide:end`` ends it.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import attrs

README = Path(__file__).resolve().parents[3] / "README.md"
_MARKER = re.compile(r"^<!-- guide:(\S+)(?: (.*?))? -->$")
_FENCE = re.compile(r"^```(\S*)\s*$")
GUIDE_HEADING = "## Your first function"


@attrs.frozen
class Step:
    kind: str  # run | background | file | output
    text: str
    arg: str | None = None  # run: "eventually"; file: the file name
    lang: str = ""
    line: int = 0  # of the marker in README.md, for messages


@attrs.frozen
class Guide:
    python: tuple[Step, ...]
    node: tuple[Step, ...]


class GuideError(ValueError):
    """The README's markers do not describe a guide (a marker without its block, ...)."""


def parse(text: str) -> Guide:
    lines = text.splitlines()
    try:
        start = next(i for i, line in enumerate(lines) if line.startswith(GUIDE_HEADING))
    except StopIteration:
        raise GuideError(f"README has no {GUIDE_HEADING!r} section") from None
    sections: dict[str, list[Step]] = {"python": [], "node": []}
    current = "python"
    i = start
    while i < len(lines):
        m = _MARKER.match(lines[i].strip())
        if m is None:
            i += 1
            continue
        kind, arg, at = m.group(1), m.group(2), i + 1
        if kind == "end":
            return Guide(tuple(sections["python"]), tuple(sections["node"]))
        if kind == "node":
            current = "node"
            i += 1
            continue
        if kind not in ("run", "background", "file", "output"):
            raise GuideError(f"README.md:{at}: unknown guide marker {kind!r}")
        i += 1
        while i < len(lines) and not lines[i].strip():
            i += 1
        fence = _FENCE.match(lines[i]) if i < len(lines) else None
        if fence is None:
            raise GuideError(f"README.md:{at}: guide:{kind} is not followed by a code block")
        body: list[str] = []
        i += 1
        while i < len(lines) and not lines[i].startswith("```"):
            body.append(lines[i])
            i += 1
        i += 1
        sections[current].append(Step(kind, "\n".join(body) + "\n", arg, fence.group(1), at))
    raise GuideError("README.md: the guide has no <!-- guide:end --> marker")


def load() -> Guide:
    return parse(README.read_text(encoding="utf-8"))


def line_pattern(expected: str) -> re.Pattern[str]:
    """One expected line as a regex: ``…`` is anything, a run of spaces any whitespace."""
    parts = []
    for chunk in re.split(r"(…|\s+)", expected.strip()):
        if chunk == "…":
            parts.append(".*")
        elif chunk and chunk.isspace():
            parts.append(r"\s+")
        else:
            parts.append(re.escape(chunk))
    return re.compile("".join(parts))


def matches(expected: Step, actual: str) -> bool:
    """Does a command's stdout match an ``output`` block? JSON without ``…`` compares as
    values (key order and spacing do not matter); everything else line by line."""
    if expected.lang == "json" and "…" not in expected.text:
        try:
            return bool(json.loads(actual) == json.loads(expected.text))
        except ValueError:
            return False
    want = [line for line in expected.text.splitlines() if line.strip()]
    got = [line for line in actual.splitlines() if line.strip()]
    return len(want) == len(got) and all(
        line_pattern(w).fullmatch(g.strip()) for w, g in zip(want, got, strict=True)
    )
