"""Rendering of the status document for the CLI: one supervisorctl-style line per worker, the
read-only rows of remote workers, and the functions view of ``status --functions`` (the RED
metrics the bus keeps: calls and errors since the start, latency percentiles over the window).
"""

from __future__ import annotations

from typing import Any

__all__ = ["format_functions", "format_remote", "format_worker"]


def _fmt_uptime(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = int(seconds)
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def _clock(ts: str | None) -> str:
    return ts[11:19] if ts and len(ts) >= 19 else "?"


def format_worker(w: dict[str, Any]) -> str:
    """One supervisorctl-style line."""
    state = w["state"].upper()
    if w["state"] == "ready":
        detail = (
            f"pid {w['pid']}, uptime {_fmt_uptime(w.get('uptime_s'))}, restarts {w['restarts']}"
        )
    elif w["state"] in ("starting", "stopping"):
        detail = f"{w.get('phase') or ''}" + (f", pid {w['pid']}" if w.get("pid") else "")
    elif w["state"] == "backoff":
        detail = f"restart at {_clock(w.get('next_restart_at'))}, restarts {w['restarts']}"
    else:
        last = w.get("last_exit") or {}
        err = w.get("last_error") or {}
        if last:
            how = (
                f"signal {last.get('signal_name')}"
                if last.get("signal")
                else f"exit {last.get('code')}"
            )
            detail = f"{how} at {_clock(last.get('at'))}"
        else:
            detail = "not started"
        if w["state"] == "failed" and err:
            tail = (err.get("log_tail") or [""])[-1]
            message = str(err.get("message") or "")
            prefix = f"worker {w['name']!r}: "
            message = message[len(prefix) :] if message.startswith(prefix) else message
            why = message.split("; ", 1)[0] or str(err.get("code"))
            detail += f" — {why}" + (f": {tail}" if tail else "")
    return f"{w['name']:<20} {state:<9} {detail}".rstrip()


def format_remote(r: dict[str, Any]) -> str:
    name = r.get("name") or "(unnamed)"
    where = f"{r.get('namespace')}" if r.get("namespace") else ""
    functions = r.get("functions") or []
    detail = (
        f"remote {r.get('peer') or '?'}, since {_clock(r.get('connected_since'))}, "
        f"{len(functions)} function{'s' if len(functions) != 1 else ''}"
    )
    return f"{name:<20} {'REMOTE':<9} {detail}" + (f" [{where}]" if where else "")


def _ms(value: Any) -> str:
    if value is None:
        return "-"
    return f"{value:.1f}ms" if value >= 10 else f"{value:.2f}ms"


def _row(label: str, r: dict[str, Any]) -> str:
    count, errors = r.get("count", 0), r.get("errors", 0)
    rate = f"{100 * errors / count:.1f}%" if count else "-"
    return (
        f"{label:<40} {count:>8} {errors:>7} {rate:>6} "
        f"{_ms(r.get('p50_ms')):>9} {_ms(r.get('p95_ms')):>9} {_ms(r.get('p99_ms')):>9}"
    )


def format_functions(calls: dict[str, Any] | None) -> list[str]:
    """The lines of ``status --functions``: one per function, then one per worker."""
    if not calls or not calls.get("enabled", True):
        return ["metrics are off (iii-observability metrics_enabled: false)"]
    functions = calls.get("functions") or []
    workers = calls.get("workers") or []
    window = int(functions[0]["window_seconds"]) if functions else 60
    head = f"{'CALLS':>8} {'ERRORS':>7} {'ERR%':>6} {'P50':>9} {'P95':>9} {'P99':>9}"
    lines = [f"{'FUNCTION':<40} {head}   (percentiles over the last {window}s)"]
    for r in functions:
        ns = r.get("namespace")
        label = r["function_id"] if ns in (None, "default") else f"{r['function_id']} [{ns}]"
        lines.append(_row(label, r))
    if workers:
        lines.append("")
        lines.append(f"{'WORKER':<40} {head}")
        for r in workers:
            lines.append(_row(r.get("name") or r["worker_id"], r))
    return lines
