"""iii-observability settings changed in the configuration worker: each field by its tier
(live, swap, limits, rebuild applied at once; restart kept for the next start), the log store
gate, the alert rules swapped, and an invalid value changing nothing."""

from __future__ import annotations

import random
from typing import Any, cast

import pytest

from actors.observability.export import logs_due
from actors.observability.live import apply_value, changed_by_tier
from actors.observability.service import ObservabilityService
from actors.observability.settings import parse_config, resolve
from transport.client import BusClient, FunctionError, InvocationContext

BASE: dict[str, Any] = {"enabled": True, "exporter": "memory", "metrics_enabled": True}


class FakeClient:
    def __init__(self) -> None:
        self.registered: list[str] = []

    def register_function(self, function_id: str, *args: Any, **kw: Any) -> None:
        self.registered.append(function_id)

    register_inline = register_function


def service(block: dict[str, Any]) -> tuple[ObservabilityService, FakeClient]:
    client = FakeClient()
    settings = resolve(parse_config(block), {})
    return ObservabilityService(cast(BusClient, client), settings, rng=random.Random(1)), client


def test_fields_are_classified_by_their_tier() -> None:
    old = resolve(parse_config(BASE), {})
    new = resolve(
        parse_config(
            {
                **BASE,
                "logs_sampling_ratio": 0.5,
                "level": "warn",
                "metrics_max_count": 5,
                "logs_batch_size": 7,
                "service_name": "renamed",
                "format": "json",
            }
        ),
        {},
    )
    assert changed_by_tier(old, new) == {
        "unapplied": ["format"],
        "live": ["logs_sampling_ratio"],
        "swap": ["level"],
        "limits": ["metrics_max_count"],
        "rebuild": ["logs_batch_size"],
        "restart": ["service_name"],
    }


def test_live_swap_limits_and_rebuild_fields_apply_restart_ones_wait() -> None:
    svc, _ = service(BASE)
    rule = {"name": "r", "metric": "iii.invocations.error", "threshold": 1}
    apply_value(
        svc,
        {
            **BASE,
            "logs_sampling_ratio": 0.25,
            "logs_console_output": False,
            "alerts": [rule],
            "metrics_max_count": 3,
            "logs_max_count": 4,
            "logs_retention_seconds": 60,
            "logs_flush_interval_ms": 250,
            "service_name": "renamed",
        },
        env={},
    )
    s = svc.settings
    assert (s.logs_sampling_ratio, s.logs_console_output) == (0.25, False)
    assert [r.name for r in svc.watch.alerts.rules] == ["r"]
    assert svc.metrics is not None and svc.metrics.max_count == 3
    assert svc.logs is not None and svc.logs.max_count == 4
    assert svc.logs.retention_ns == 60 * 1_000_000_000
    assert s.logs_flush_interval_ms == 250
    assert s.service_name == "iii"  # restart tier: the running pipeline keeps its identity


def test_logs_enabled_gates_the_store_and_a_new_one_comes_back() -> None:
    svc, _ = service(BASE)
    assert svc.logs is not None
    svc.logs.add({"observed_timestamp_unix_nano": 1, "severity_text": "INFO"}, now_ns=1)
    apply_value(svc, {**BASE, "logs_enabled": False}, env={})
    assert svc.logs is None
    apply_value(svc, BASE, env={})
    assert svc.logs is not None and len(svc.logs) == 0


def test_enabling_at_runtime_registers_the_ingest_function_once() -> None:
    svc, client = service({**BASE, "enabled": False})
    apply_value(svc, BASE, env={})
    apply_value(svc, {**BASE, "logs_sampling_ratio": 0.5}, env={})
    assert client.registered.count("iii-observability::ingest") == 1
    assert svc.settings.enabled is True


def test_an_invalid_value_changes_nothing() -> None:
    svc, _ = service(BASE)
    before = svc.settings
    apply_value(svc, {**BASE, "logs_sampling_ratio": 7, "level": "loud"}, env={})
    assert svc.settings is before


def test_logs_go_to_the_collector_in_full_batches_or_after_the_flush_interval() -> None:
    s = resolve(parse_config({**BASE, "logs_batch_size": 10, "logs_flush_interval_ms": 2000}), {})
    assert logs_due(10, 0.0, s) is True  # a full batch goes at once
    assert logs_due(9, 1.9, s) is False
    assert logs_due(9, 2.0, s) is True
    assert logs_due(0, 60.0, s) is False
    env = resolve(parse_config(BASE), {"OTEL_LOGS_BATCH_SIZE": "99999"})
    assert (env.logs_batch_size, env.logs_flush_interval_ms) == (10_000, 5000)


def test_collapse_spans_is_swapped_into_the_trace_trees() -> None:
    svc, _ = service(BASE)
    assert svc.collapse == []
    apply_value(svc, {**BASE, "collapse_spans": [{"name": "noisy*"}]}, env={})
    assert len(svc.collapse) == 1 and svc.collapse[0][0].match("noisy-span")


def test_ingest_stores_an_engine_batch_and_refuses_an_unknown_kind() -> None:
    svc, _ = service(BASE)
    ctx = InvocationContext("i1", "iii-observability::ingest")
    body = {
        "service_name": "iii",
        "scope": "iii-supervisor",
        "shapes": [["call a::b", [["iii.function.id", "a::b"]]]],
        "spans": [["00-" + "1" * 32 + "-" + "2" * 16 + "-01", None, 0, 10, 20]],
    }
    svc.ingest({"kind": "SPANS", "body": body}, ctx)
    assert svc.spans is not None and [r[:5] for r in svc.spans.rows()] == [
        ("1" * 32, "2" * 16, None, 10, 20)
    ]
    with pytest.raises(FunctionError):
        svc.ingest({"kind": "NOPE", "body": {}}, ctx)
