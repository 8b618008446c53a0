"""iii-observability's watch with a fake bus client and a clock passed in: RED readings become
samples and rollups, evaluate's result shapes, and each action kind dispatched on a trigger."""

from __future__ import annotations

from typing import Any, cast

from actors.observability.watch import MetricWatch
from manifests.blocks.observability import AlertRule
from manifests.blocks.strict import parse
from transport.client import BusClient

S = 1_000_000_000
T0 = 1_699_999_200 * S


class FakeClient:
    def __init__(self) -> None:
        self.stats: dict[str, Any] = {"functions": []}
        self.voids: list[tuple[str, Any]] = []

    async def invoke(self, function_id: str, data: Any, *, timeout: float) -> Any:
        assert function_id == "engine::calls::stats"
        return self.stats

    def invoke_void(self, function_id: str, data: Any, **kw: Any) -> None:
        self.voids.append((function_id, data))

    def calls(self, count: int, errors: int) -> None:
        self.stats = {
            "functions": [
                {"function_id": "f", "namespace": "default", "count": count, "errors": errors,
                 "p50_ms": 1.0, "p95_ms": 2.0, "p99_ms": 3.0, "window_count": count}
            ]
        }  # fmt: skip


def rule(**kw: Any) -> AlertRule:
    return parse(AlertRule, {"name": "errors", "metric": "iii.invocations.error", **kw})


def make(rules: list[AlertRule]) -> tuple[MetricWatch, FakeClient, list[Any], list[int]]:
    client = FakeClient()
    logs: list[Any] = []
    now = [T0]
    watch = MetricWatch(
        cast(BusClient, client),
        rules,
        rollups=True,
        add_log=lambda record, at: logs.append(record),
        clock=lambda: now[0],
    )
    return watch, client, logs, now


async def test_with_no_rules_evaluate_answers_not_evaluated_with_a_message() -> None:
    watch, _, _, _ = make([])
    out = await watch.evaluate_result()
    assert out == {
        "evaluated": False,
        "message": "No alert rules configured",
        "timestamp": T0 // 1_000_000,
    }
    listed = watch.list_result()
    assert listed["alerts"] == [] and listed["firing_count"] == 0 and "message" in listed


async def test_a_function_action_gets_the_event_and_the_log_action_a_warn_record() -> None:
    by_function = rule(threshold=2, action={"type": "function", "path": "ops::page"})
    by_log = rule(name="logged", threshold=2)
    watch, client, logs, now = make([by_function, by_log])
    client.calls(10, 1)
    assert (await watch.evaluate_result())["triggered_alerts"] == []  # the baseline reading
    client.calls(20, 5)
    now[0] += 10 * S
    out = await watch.evaluate_result()
    assert out["evaluated"] is True
    assert [(a["name"], a["value"]) for a in out["triggered_alerts"]] == [
        ("errors", 4.0),
        ("logged", 4.0),
    ]
    assert [(fid, data["name"], data["status"]) for fid, data in client.voids] == [
        ("ops::page", "errors", "firing")
    ]
    [record] = logs
    assert record["severity_text"] == "WARN" and record["service_name"] == "iii-observability"
    assert record["body"].startswith("alert logged firing")
    assert record["attributes"]["alert.value"] == 4.0
    assert watch.list_result()["firing_count"] == 2


async def test_red_readings_feed_the_rollups() -> None:
    watch, client, _, now = make([])
    client.calls(5, 0)
    await watch.evaluate()
    client.calls(8, 1)
    now[0] += 10 * S
    await watch.evaluate()
    out = watch.rollups_result({"metric_name": "iii.invocations.total"})
    assert [(r["count"], r["sum"]) for r in out["rollups"]] == [(2, 3.0)]  # 0 then 3
    p99 = watch.rollups_result({"metric_name": "iii.invocation.duration.p99"})["rollups"]
    assert p99[0]["last"] == 3.0


async def test_only_the_metrics_the_rules_read_are_kept_as_samples() -> None:
    watch, client, _, _ = make([rule(metric="iii.invocations.error_rate", threshold=1)])
    client.calls(5, 1)
    await watch.evaluate()
    watch.ingest_metrics(
        [{"name": "sdk.other", "type": "gauge", "data_points": [{"value": 1}]}], T0
    )
    assert watch.samples.names() == {
        "iii.invocations.total",
        "iii.invocations.error",
    }
    assert watch.rollups_result({"metric_name": "sdk.other"})["rollups"]  # rollups keep all
    watch.set_rules([])
    await watch.evaluate()
    assert len(watch.samples) == 2  # nothing new kept without rules
