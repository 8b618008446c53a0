"""The console rendering of a worker's output: one readable line, never ``record={...}``."""

from __future__ import annotations

import structlog

from supervisor.logs import flatten_worker_output


def render(event: dict[str, object]) -> str:
    out = flatten_worker_output(None, "info", dict(event))
    return str(structlog.dev.ConsoleRenderer(colors=False, pad_event=0)(None, "info", dict(out)))


def test_a_structured_record_becomes_its_event_and_fields() -> None:
    line = render(
        {
            "event": "worker.output",
            "worker": "iii-state",
            "stream": "stderr",
            "pid": 42,
            "level": "warning",
            "record": {
                "event": "state store open",
                "adapter": "kv",
                "actor": "iii-state",
                "level": "warning",
                "timestamp": "2026-01-01T00:00:00Z",
            },
        }
    )
    assert "[iii-state] state store open" in line and "adapter=kv" in line
    assert "record=" not in line and "pid=" not in line and "timestamp" not in line
    assert "\n" not in line


def test_a_plain_line_keeps_its_text() -> None:
    line = render({"event": "worker.output", "worker": "api", "stream": "stdout", "line": "hi"})
    assert line.strip().endswith("[api] hi")
    cut = render({"event": "worker.output", "worker": "api", "line": "x" * 5, "truncated": True})
    assert "[api] xxxxx …" in cut


def test_other_events_pass_through() -> None:
    event = {"event": "worker.ready", "worker": "api"}
    assert flatten_worker_output(None, "info", dict(event)) == event
