"""Sampling of the engine's spans (WORKERS.md §10.1 sampling_ratio / sampling): the pure
decision on explicit time, and the tracing hook keeping only sampled spans and carrying the
decision in the callee's traceparent flags."""

from __future__ import annotations

from typing import Any

import pytest

from manifests.blocks.observability import INGEST_FUNCTION_ID, SamplingRule
from supervisor.engine.runner import build_bus
from supervisor.engine.sampling import Sampler, sampler_for
from tests.unit.bus.test_routing import Clock, Worker
from transport import messages as m


def trace(i: int) -> str:
    return f"{i * 0x9E3779B97F4A7C15 % (1 << 128):032x}"


def test_the_default_config_needs_no_sampler() -> None:
    assert sampler_for({"sampling_ratio": 1.0}, env={}) is None
    assert sampler_for({}, env={}) is None
    assert sampler_for({}, env={"OTEL_TRACES_SAMPLER_ARG": "0.5"}) is not None
    assert sampler_for({"sampling": {"parent_based": True}}, env={}) is not None


def test_the_ratio_keeps_about_its_share_and_decides_alike_for_a_trace() -> None:
    sampler = Sampler(0.25)
    kept = [sampler.sampled(trace(i), "f", None, None, 0.0) for i in range(4000)]
    assert 0.22 < sum(kept) / len(kept) < 0.28
    # Every hop of a trace gets the same answer (the test is on the trace id).
    assert all(sampler.sampled(trace(i), "g", "w", True, 1.0) == kept[i] for i in range(200))
    assert not any(Sampler(0.0).sampled(trace(i), "f", None, None, 0.0) for i in range(100))


def test_sampling_default_overrides_sampling_ratio() -> None:
    sampler = sampler_for({"sampling_ratio": 1.0, "sampling": {"default": 0.0}}, env={})
    assert sampler is not None and sampler.default == 0.0


def test_the_first_matching_rule_sets_the_rate() -> None:
    sampler = Sampler(
        1.0,
        [
            SamplingRule(rate=0.0, operation="health::*"),
            SamplingRule(rate=0.0, service="noisy-*"),
            SamplingRule(rate=1.0, operation="health::deep"),  # shadowed by the first
        ],
    )
    assert sampler.rate("health::deep", "api") == 0.0
    assert sampler.rate("orders::get", "noisy-worker") == 0.0
    assert sampler.rate("orders::get", "api") == 1.0
    assert sampler.rate("orders::get", None) == 1.0  # a service rule needs a service


def test_parent_based_follows_the_incoming_flag_and_roots_use_the_ratio() -> None:
    sampler = Sampler(0.0, parent_based=True)
    assert sampler.sampled(trace(1), "f", None, True, 0.0)
    assert not Sampler(1.0, parent_based=True).sampled(trace(1), "f", None, False, 0.0)
    assert not sampler.sampled(trace(1), "f", None, None, 0.0)
    # Without parent_based the incoming flag does not decide.
    assert Sampler(1.0).sampled(trace(1), "f", None, False, 0.0)


def test_the_rate_limit_spends_one_token_per_new_trace_and_refills_on_fake_time() -> None:
    sampler = Sampler(1.0, max_traces_per_second=3)
    assert [sampler.sampled(trace(i), "f", None, None, 10.0) for i in range(5)] == [
        True,
        True,
        True,
        False,
        False,
    ]
    assert sampler.sampled(trace(9), "f", None, True, 10.0)  # continued traces are not counted
    assert [sampler.sampled(trace(i), "f", None, None, 10.5) for i in range(3)] == [
        True,
        False,
        False,
    ]
    assert [sampler.sampled(trace(i), "f", None, None, 100.0) for i in range(4)].count(True) == 3
    assert (sampler.kept, sampler.dropped) == (8, 5)


TP = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def sampled_bus(raw: Any) -> tuple[Any, Worker, Worker, Worker]:
    bus = build_bus(clock=Clock(), invocation_deadline=60.0, sampler=sampler_for(raw, env={}))
    sink, a, b = Worker(bus, "obs"), Worker(bus, "a"), Worker(bus, "b")
    sink.register(INGEST_FUNCTION_ID)
    a.register("f")
    a.register("health::ping")
    return bus, sink, a, b


def call_and_answer(a: Worker, b: Worker, fid: str, traceparent: str | None) -> str:
    b.call(fid, {}, traceparent=traceparent)
    (msg,) = a.of(m.InvokeFunction)
    a.send(m.InvocationResult(msg.invocation_id, msg.function_id, {"ok": 1}))
    assert msg.traceparent is not None
    return msg.traceparent


def kept_spans(bus: Any, sink: Worker) -> list[Any]:
    bus.tracing.flush()
    return [r for msg in sink.of(m.InvokeFunction) for r in msg.data["body"]["spans"]]


def test_a_sampled_out_call_keeps_no_span_and_tells_the_callee() -> None:
    rules = {"sampling": {"rules": [{"operation": "health::*", "rate": 0.0}]}}
    bus, sink, a, b = sampled_bus(rules)
    dropped = call_and_answer(a, b, "health::ping", TP)
    kept = call_and_answer(a, b, "f", TP)
    assert dropped.endswith("-00") and kept.endswith("-01")
    assert dropped[3:35] == kept[3:35] == TP[3:35]  # the trace id goes on either way
    (row,) = kept_spans(bus, sink)
    assert row[0] == kept


@pytest.mark.parametrize(("flags", "kept"), [("01", 1), ("00", 0)])
def test_parent_based_engines_follow_the_callers_flag(flags: str, kept: int) -> None:
    bus, sink, a, b = sampled_bus({"sampling": {"parent_based": True}})
    out = call_and_answer(a, b, "f", TP[:-2] + flags)
    assert out.endswith(flags) and len(kept_spans(bus, sink)) == kept


def test_without_a_sampler_flags_pass_on_and_every_span_is_kept() -> None:
    bus, sink, a, b = sampled_bus({})
    assert bus.tracing.sampler is None
    out = call_and_answer(a, b, "f", TP[:-2] + "00")
    assert out.endswith("-00") and len(kept_spans(bus, sink)) == 1


def test_the_actor_reports_the_ratio_the_engine_applies() -> None:
    from actors.observability.settings import parse_config, resolve

    for raw in (
        {"sampling_ratio": 0.3},
        {
            "sampling_ratio": 0.3,
            "sampling": {"default": 0.7, "rate_limit": {"max_traces_per_second": 5}},
        },
        {"sampling": {"parent_based": True}},
    ):
        settings = resolve(parse_config(raw), {})
        sampler = sampler_for(raw, env={})
        assert sampler is not None and settings.sampling_ratio == sampler.default
        assert settings.rate_limit == sampler.limit
        assert settings.parent_based == sampler.parent_based
