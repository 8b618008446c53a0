"""A systemd unit file as data: ``{section: {key: [values...]}}``, comments and blanks dropped.

Enough of systemd's syntax for our own files (no line continuations, no specifiers)."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
SYSTEMD = REPO / "deploy" / "systemd"
UNIT = SYSTEMD / "iii-supervisor.service"
SYSUSERS = SYSTEMD / "iii-supervisor.sysusers"
DROP_IN = SYSTEMD / "notify-reload.conf"

Unit = dict[str, dict[str, list[str]]]


def parse(text: str) -> Unit:
    out: Unit = {}
    section: dict[str, list[str]] | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            section = out.setdefault(line[1:-1], {})
            continue
        if section is None or "=" not in line:
            raise ValueError(f"not a unit line: {raw!r}")
        key, _, value = line.partition("=")
        section.setdefault(key.strip(), []).append(value.strip())
    return out


def load(path: Path = UNIT) -> Unit:
    return parse(path.read_text(encoding="utf-8"))


def one(unit: Unit, section: str, key: str) -> str:
    values = unit.get(section, {}).get(key, [])
    assert len(values) == 1, f"[{section}] {key}= set {len(values)} times"
    return values[0]
