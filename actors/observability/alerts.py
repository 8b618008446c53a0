"""Alert rules evaluated over recent metric samples (WORKERS.md §10.1 AlertRule; pure: time is an
input, in Unix nanoseconds).

The samples are the engine's RED figures (sampled by the actor from ``engine::calls::stats``, see
``rollups.red_samples``) and the SDK metrics the actor ingests, each a (metric name, value, kind)
at a time. A rule's value over its ``window_seconds`` depends on the kind of its metric:

* ``delta`` samples (calls, errors, delta sums) are added up: ``iii.invocations.error > 10``
  means more than 10 failed calls in the window;
* ``gauge`` samples (latencies, resource gauges, cumulative sums) are averaged;
* ``iii.invocations.error_rate`` is derived: failed calls / calls in the window, in percent.

A rule with no sample in its window has state ``no_data`` and neither fires nor resolves. A rule
whose condition holds is ``firing``; it *triggers* (its action runs, it appears in
``triggered_alerts``) when it starts firing and again every ``cooldown_seconds`` while it keeps
firing, never more often. When the condition stops holding the rule is ``resolved`` once (a
resolution is reported to the action too) and then ``ok``. Rules are replaced as a whole on a
configuration change (``swap`` tier); a rule kept under the same name keeps its state.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Final, Literal

import attrs

from manifests.blocks.observability import AlertRule

__all__ = [
    "ERROR_RATE",
    "AlertEngine",
    "AlertEvent",
    "RecentSamples",
    "Sample",
    "compare",
    "normalize_operator",
    "rule_json",
]

ERROR_RATE: Final = "iii.invocations.error_rate"
ERRORS: Final = "iii.invocations.error"
CALLS: Final = "iii.invocations.total"
MAX_SAMPLES: Final = 100_000  # recent samples kept at most, whatever the rules' windows
DEFAULT_HORIZON_S: Final = 3600  # how long samples are kept with no rule asking for longer
_NS: Final = 1_000_000_000

Kind = Literal["delta", "gauge"]
State = Literal["ok", "firing", "resolved", "no_data", "disabled"]

_SYMBOLS: Final = {
    ">": "greaterthan",
    ">=": "greaterthanorequal",
    "<": "lessthan",
    "<=": "lessthanorequal",
    "==": "equal",
    "!=": "notequal",
}
_COMPARE: Final[dict[str, Callable[[float, float], bool]]] = {
    "greaterthan": lambda v, t: v > t,
    "greaterthanorequal": lambda v, t: v >= t,
    "lessthan": lambda v, t: v < t,
    "lessthanorequal": lambda v, t: v <= t,
    "equal": lambda v, t: v == t,
    "notequal": lambda v, t: v != t,
}


def normalize_operator(operator: str) -> str:
    """The operator's name (config.yaml also accepts the symbols, §10.1)."""
    return _SYMBOLS.get(operator, operator)


def compare(operator: str, value: float, threshold: float) -> bool:
    return _COMPARE[normalize_operator(operator)](value, threshold)


@attrs.frozen
class Sample:
    name: str
    value: float
    time_ns: int
    kind: Kind = "gauge"


class RecentSamples:
    """The samples of the last ``horizon_s`` seconds, at most ``max_samples`` (oldest dropped),
    in arrival order (the actor's clock: samples are stamped when ingested)."""

    def __init__(self, *, horizon_s: int = DEFAULT_HORIZON_S, max_samples: int = MAX_SAMPLES):
        self.horizon_ns = horizon_s * _NS
        self.max_samples = max_samples
        self._samples: deque[Sample] = deque()

    def __len__(self) -> int:
        return len(self._samples)

    def names(self) -> set[str]:
        return {s.name for s in self._samples}

    def add(self, samples: Iterable[Sample], now_ns: int) -> None:
        self._samples.extend(samples)
        while len(self._samples) > self.max_samples:
            self._samples.popleft()
        self.expire(now_ns)

    def expire(self, now_ns: int) -> None:
        cutoff = now_ns - self.horizon_ns
        while self._samples and self._samples[0].time_ns < cutoff:
            self._samples.popleft()

    def value(self, metric: str, window_s: int, now_ns: int) -> float | None:
        """The metric's value over the last ``window_s`` seconds (module docstring), or None
        when no sample of it is in the window."""
        start = now_ns - window_s * _NS
        if metric == ERROR_RATE:
            calls = self.value(CALLS, window_s, now_ns)
            errors = self.value(ERRORS, window_s, now_ns)
            if calls is None:
                return None
            return 100.0 * (errors or 0.0) / calls if calls else 0.0
        total, n, kind = 0.0, 0, "gauge"
        for sample in reversed(self._samples):
            if sample.time_ns < start:
                break
            if sample.name == metric and sample.time_ns <= now_ns:
                total += sample.value
                n += 1
                kind = sample.kind
        if not n:
            return None
        return total if kind == "delta" else total / n


@attrs.define
class RuleState:
    state: State = "ok"
    value: float | None = None
    firing_since_ns: int | None = None
    last_triggered_ns: int | None = None
    last_resolved_ns: int | None = None
    last_evaluated_ns: int | None = None
    trigger_count: int = 0


@attrs.frozen
class AlertEvent:
    """One trigger or one resolution of a rule, as ``triggered_alerts`` rows and action
    payloads show it."""

    rule: AlertRule
    status: Literal["firing", "resolved"]
    value: float | None
    time_ns: int

    def to_json(self) -> dict[str, Any]:
        r = self.rule
        op = normalize_operator(r.operator)
        verb = "is" if self.status == "firing" else "is no longer"
        value = "no value" if self.value is None else f"{self.value:g}"
        return {
            "name": r.name,
            "metric": r.metric,
            "status": self.status,
            "value": self.value,
            "threshold": r.threshold,
            "operator": op,
            "window_seconds": r.window_seconds,
            "timestamp": self.time_ns // 1_000_000,
            "action": action_json(r),
            "message": f"{r.metric} {verb} {op} {r.threshold:g} over {r.window_seconds}s "
            f"(value {value})",
        }


def action_json(rule: AlertRule) -> dict[str, Any]:
    a = rule.action
    if a is None or a.type == "log":
        return {"type": "log"}
    if a.type == "webhook":
        return {"type": "webhook", "url": a.url}
    return {"type": "function", "path": a.path}


def rule_json(rule: AlertRule) -> dict[str, Any]:
    return {
        "name": rule.name,
        "metric": rule.metric,
        "threshold": rule.threshold,
        "operator": normalize_operator(rule.operator),
        "window_seconds": rule.window_seconds,
        "cooldown_seconds": rule.cooldown_seconds,
        "enabled": rule.enabled,
        "action": action_json(rule),
    }


def _ms(ns: int | None) -> int | None:
    return None if ns is None else ns // 1_000_000


class AlertEngine:
    def __init__(self, rules: Sequence[AlertRule] = ()) -> None:
        self.rules: tuple[AlertRule, ...] = ()
        self._states: dict[str, RuleState] = {}
        self.set_rules(rules)

    def set_rules(self, rules: Sequence[AlertRule]) -> None:
        """Replace the rules; a rule under an old name keeps its state (a firing rule whose
        threshold was edited is re-judged at the next evaluation, not re-triggered now)."""
        self.rules = tuple(rules)
        self._states = {r.name: self._states.get(r.name) or RuleState() for r in self.rules}

    @property
    def horizon_s(self) -> int:
        return max((r.window_seconds for r in self.rules), default=DEFAULT_HORIZON_S)

    @property
    def firing_count(self) -> int:
        return sum(1 for s in self._states.values() if s.state == "firing")

    def evaluate(self, samples: RecentSamples, now_ns: int) -> list[AlertEvent]:
        """Judge every enabled rule at ``now_ns``; the triggers and resolutions it caused."""
        events: list[AlertEvent] = []
        for rule in self.rules:
            st = self._states[rule.name]
            st.last_evaluated_ns = now_ns
            if not rule.enabled:
                st.state, st.value, st.firing_since_ns = "disabled", None, None
                continue
            value = samples.value(rule.metric, rule.window_seconds, now_ns)
            st.value = value
            if value is None:
                if st.state != "firing":
                    st.state = "no_data"
                continue
            if compare(rule.operator, value, rule.threshold):
                if st.state != "firing":
                    st.state, st.firing_since_ns = "firing", now_ns
                cooldown = rule.cooldown_seconds * _NS
                if st.last_triggered_ns is None or now_ns - st.last_triggered_ns >= cooldown:
                    st.last_triggered_ns = now_ns
                    st.trigger_count += 1
                    events.append(AlertEvent(rule, "firing", value, now_ns))
            elif st.state == "firing":
                st.state, st.firing_since_ns, st.last_resolved_ns = "resolved", None, now_ns
                events.append(AlertEvent(rule, "resolved", value, now_ns))
            else:
                st.state = "ok"
        return events

    def states(self) -> list[dict[str, Any]]:
        """One row per rule: the rule, its state and its last value and times (ms)."""
        out = []
        for rule in self.rules:
            st = self._states[rule.name]
            out.append(
                {
                    **rule_json(rule),
                    "state": st.state,
                    "firing": st.state == "firing",
                    "value": st.value,
                    "firing_since": _ms(st.firing_since_ns),
                    "last_triggered": _ms(st.last_triggered_ns),
                    "last_resolved": _ms(st.last_resolved_ns),
                    "last_evaluated": _ms(st.last_evaluated_ns),
                    "trigger_count": st.trigger_count,
                }
            )
        return out
