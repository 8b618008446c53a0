"""Per-function call statistics, kept by a completion hook (the seed of the RED metrics).

Count, errors, total and worst latency per (namespace, function id): O(1) per completed call.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import attrs

if TYPE_CHECKING:
    from supervisor.engine.invocations import Pending
    from transport.messages import ErrorBody


@attrs.define
class FunctionStats:
    calls: int = 0
    errors: int = 0
    total_seconds: float = 0.0
    max_seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        mean = self.total_seconds / self.calls if self.calls else 0.0
        return {
            "calls": self.calls,
            "errors": self.errors,
            "mean_ms": round(mean * 1000, 3),
            "max_ms": round(self.max_seconds * 1000, 3),
        }


class CallMetrics:
    """The completion hook; ``stats`` is keyed by (namespace, function id)."""

    def __init__(self) -> None:
        self.stats: dict[tuple[str, str], FunctionStats] = {}

    def on_completion(
        self, pending: Pending, result: Any, err: ErrorBody | None, now: float
    ) -> None:
        key = (pending.namespace, pending.function_id)
        stats = self.stats.get(key)
        if stats is None:
            stats = self.stats[key] = FunctionStats()
        elapsed = now - pending.started
        stats.calls += 1
        stats.total_seconds += elapsed
        if elapsed > stats.max_seconds:
            stats.max_seconds = elapsed
        if err is not None:
            stats.errors += 1
