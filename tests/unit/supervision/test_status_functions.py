"""``status --functions``: the lines rendered from the status document's ``calls``."""

from __future__ import annotations

from supervisor.status.render import format_functions


def row(fid: str, count: int, errors: int, p50: float | None, ns: str = "default") -> dict:
    return {
        "function_id": fid,
        "namespace": ns,
        "count": count,
        "errors": errors,
        "p50_ms": p50,
        "p95_ms": p50,
        "p99_ms": p50,
        "window_seconds": 60.0,
    }


def test_one_line_per_function_then_per_worker() -> None:
    calls = {
        "enabled": True,
        "functions": [row("orders::create", 200, 5, 12.345), row("x", 0, 0, None, ns="tenant")],
        "workers": [
            {
                "worker_id": "w1",
                "name": "orders",
                "count": 200,
                "errors": 5,
                "p50_ms": 0.5,
                "p95_ms": 1.0,
                "p99_ms": 2.0,
            }
        ],
    }
    lines = format_functions(calls)
    assert lines[0].split()[:7] == ["FUNCTION", "CALLS", "ERRORS", "ERR%", "P50", "P95", "P99"]
    assert "last 60s" in lines[0]
    assert lines[1].split() == ["orders::create", "200", "5", "2.5%", "12.3ms", "12.3ms", "12.3ms"]
    assert lines[2].split() == ["x", "[tenant]", "0", "0", "-", "-", "-", "-"]
    assert lines[4].startswith("WORKER")
    assert lines[5].split() == ["orders", "200", "5", "2.5%", "0.50ms", "1.00ms", "2.00ms"]


def test_metrics_off_or_missing_says_so() -> None:
    assert "off" in format_functions({"enabled": False, "functions": [], "workers": []})[0]
    assert "off" in format_functions(None)[0]
