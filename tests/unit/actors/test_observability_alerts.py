"""iii-observability's alert core on explicit time: rule values over the window (sums for
deltas, means for gauges, the derived error rate), firing / resolved / no_data states, the
cooldown between triggers, operators and their symbols, and rules swapped at runtime."""

from __future__ import annotations

import pytest

from actors.observability.alerts import (
    AlertEngine,
    RecentSamples,
    Sample,
    compare,
    normalize_operator,
)
from manifests.blocks.observability import AlertAction, AlertRule
from manifests.blocks.strict import parse

S = 1_000_000_000
T0 = 1_700_000_000 * S


def errors(n: float, at: int) -> Sample:
    return Sample("iii.invocations.error", n, at, "delta")


def rule(**kw: object) -> AlertRule:
    base: dict[str, object] = {"name": "errors", "metric": "iii.invocations.error"}
    base.update(kw)
    return parse(AlertRule, base)


def test_delta_samples_are_added_up_over_the_window_only() -> None:
    s = RecentSamples()
    s.add([errors(3, T0), errors(4, T0 + 30 * S), errors(5, T0 + 70 * S)], T0 + 70 * S)
    assert s.value("iii.invocations.error", 60, T0 + 70 * S) == 9  # the first is 70 s old
    assert s.value("iii.invocations.error", 100, T0 + 70 * S) == 12
    assert s.value("iii.other", 60, T0 + 70 * S) is None


def test_gauge_samples_are_averaged() -> None:
    s = RecentSamples()
    now = T0 + 10 * S
    s.add([Sample("rss", 100, T0), Sample("rss", 300, now)], now)
    assert s.value("rss", 60, now) == 200


def test_error_rate_is_errors_over_calls_in_percent() -> None:
    s = RecentSamples()
    s.add(
        [
            Sample("iii.invocations.total", 40, T0, "delta"),
            Sample("iii.invocations.total", 60, T0 + S, "delta"),
            errors(5, T0 + S),
        ],
        T0 + S,
    )
    assert s.value("iii.invocations.error_rate", 60, T0 + S) == 5.0
    idle = RecentSamples()
    idle.add([Sample("iii.invocations.total", 0, T0, "delta")], T0)
    assert idle.value("iii.invocations.error_rate", 60, T0) == 0.0


def test_samples_are_bounded_by_count_and_horizon() -> None:
    s = RecentSamples(horizon_s=60, max_samples=3)
    s.add([errors(1, T0 + i * S) for i in range(5)], T0 + 5 * S)
    assert len(s) == 3
    s.expire(T0 + 200 * S)
    assert len(s) == 0


def test_rule_fires_once_then_again_only_after_the_cooldown() -> None:
    engine = AlertEngine([rule(threshold=10, window_seconds=60, cooldown_seconds=30)])
    s = RecentSamples()
    s.add([errors(11, T0)], T0)
    first = engine.evaluate(s, T0)
    assert [(e.rule.name, e.status, e.value) for e in first] == [("errors", "firing", 11)]
    assert engine.states()[0]["state"] == "firing" and engine.firing_count == 1
    assert engine.evaluate(s, T0 + 10 * S) == []  # still firing, inside the cooldown
    again = engine.evaluate(s, T0 + 30 * S)  # cooldown over, still breached
    assert [e.status for e in again] == ["firing"]
    row = engine.states()[0]
    assert row["trigger_count"] == 2
    assert row["firing_since"] == T0 // 1_000_000
    assert row["last_triggered"] == (T0 + 30 * S) // 1_000_000


def test_rule_resolves_once_when_the_condition_stops_holding() -> None:
    engine = AlertEngine([rule(threshold=10, window_seconds=60)])
    s = RecentSamples()
    s.add([errors(11, T0)], T0)
    engine.evaluate(s, T0)
    s.add([errors(0, T0 + 70 * S)], T0 + 70 * S)  # the 11 left the window
    resolved = engine.evaluate(s, T0 + 70 * S)
    assert [(e.status, e.value) for e in resolved] == [("resolved", 0)]
    assert resolved[0].to_json()["message"].startswith("iii.invocations.error is no longer")
    assert engine.states()[0]["state"] == "resolved"
    assert engine.evaluate(s, T0 + 80 * S) == []
    assert engine.states()[0]["state"] == "ok"
    assert engine.firing_count == 0


def test_no_sample_in_the_window_is_no_data_and_keeps_a_firing_rule_firing() -> None:
    engine = AlertEngine([rule(metric="rss", threshold=5)])
    s = RecentSamples()
    assert engine.evaluate(s, T0) == []
    assert engine.states()[0]["state"] == "no_data"
    s.add([Sample("rss", 9, T0)], T0)
    engine.evaluate(s, T0)
    assert engine.evaluate(s, T0 + 120 * S) == []  # the sample is gone: no judgement
    assert engine.states()[0]["state"] == "firing"


def test_a_disabled_rule_is_never_judged() -> None:
    engine = AlertEngine([rule(threshold=0, enabled=False)])
    s = RecentSamples()
    s.add([errors(5, T0)], T0)
    assert engine.evaluate(s, T0) == []
    assert engine.states()[0]["state"] == "disabled"


@pytest.mark.parametrize(
    ("operator", "value", "expected"),
    [
        ("greaterthan", 10, False),
        (">", 11, True),
        ("greaterthanorequal", 10, True),
        (">=", 9, False),
        ("lessthan", 9, True),
        ("<", 10, False),
        ("lessthanorequal", 10, True),
        ("<=", 11, False),
        ("equal", 10, True),
        ("==", 11, False),
        ("notequal", 11, True),
        ("!=", 10, False),
    ],
)
def test_operators_and_their_symbols(operator: str, value: float, expected: bool) -> None:
    assert compare(operator, value, 10) is expected


def test_states_show_the_rule_with_the_operator_name_and_its_action() -> None:
    r = rule(
        threshold=1,
        operator=">=",
        action={"type": "function", "path": "ops::page"},
    )
    assert r.action == AlertAction(type="function", path="ops::page")
    row = AlertEngine([r]).states()[0]
    assert row["operator"] == normalize_operator(">=") == "greaterthanorequal"
    assert row["action"] == {"type": "function", "path": "ops::page"}
    assert row["state"] == "ok" and row["value"] is None and row["trigger_count"] == 0


def test_swapped_rules_keep_the_state_of_a_rule_with_the_same_name() -> None:
    engine = AlertEngine([rule(threshold=10), rule(name="other", threshold=1)])
    s = RecentSamples()
    s.add([errors(11, T0)], T0)
    engine.evaluate(s, T0)
    engine.set_rules([rule(threshold=20, cooldown_seconds=600)])
    assert [r["name"] for r in engine.states()] == ["errors"]
    assert engine.states()[0]["state"] == "firing"
    # Judged afresh against the new threshold: no longer breached → resolved.
    assert [e.status for e in engine.evaluate(s, T0 + S)] == ["resolved"]


def test_horizon_follows_the_longest_window() -> None:
    rules = [rule(threshold=1, window_seconds=30), rule(name="b", threshold=1, window_seconds=900)]
    assert AlertEngine(rules).horizon_s == 900
