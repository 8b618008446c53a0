"""Sampling of the engine's spans in a real engine (WORKERS.md §10.1): a call whose rule says
rate 0 leaves no span, the others do, engine::sampling::rules reports the block, and
collapse_spans hides the matching spans from trace trees."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from manifests.blocks.observability import DEFAULTS
from tests.integration.observability.helpers import call, wait_ready
from tests.support import EngineProcess, client_fixture, engine_fixture, wait_for

BLOCK = {
    **DEFAULTS,
    "sampling": {
        "rules": [{"operation": "engine::functions::*", "rate": 0.0}],
        "rate_limit": {"max_traces_per_second": 1000},
    },
    "collapse_spans": [{"name": "call engine::workers::*"}],
}


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EngineProcess]:
    config = {"workers": [{"name": "iii-observability", "config": BLOCK}]}
    yield from engine_fixture(tmp_path_factory.mktemp("sampling"), config)


@pytest.fixture(scope="module")
def client(engine: EngineProcess) -> Iterator[Any]:
    yield from client_fixture(engine.url, "sampling-test")


def function_ids(client: Any) -> set[str]:
    rows = call(client, "engine::traces::list", {"limit": 10_000, "include_internal": True})
    return {dict(r["attributes"]).get("iii.function.id", "") for r in rows["spans"]}


def test_a_rule_with_rate_zero_leaves_no_span_and_others_are_kept(client: Any) -> None:
    wait_ready(client)
    for _ in range(5):
        call(client, "engine::functions::list", {})
        call(client, "engine::workers::list", {})
    wait_for(lambda: "engine::workers::list" in function_ids(client))
    assert not any(fid.startswith("engine::functions::") for fid in function_ids(client))


def test_sampling_rules_reports_the_block(client: Any) -> None:
    wait_ready(client)
    traces = call(client, "engine::sampling::rules", {})["traces"]
    assert traces["default_ratio"] == 1.0 and traces["parent_based"] is False
    assert traces["rules"] == [{"operation": "engine::functions::*", "service": None, "rate": 0.0}]
    assert traces["rate_limit"] == {"max_traces_per_second": 1000}


def test_collapsed_spans_are_left_out_of_trees(client: Any) -> None:
    wait_ready(client)
    call(client, "engine::workers::list", {})
    rows = wait_for(
        lambda: call(
            client,
            "engine::traces::list",
            {"include_internal": True, "name": "engine::workers::list", "limit": 1},
        )["spans"]
    )
    trace_id = rows[0]["trace_id"]
    listed = call(client, "engine::traces::list", {"trace_id": trace_id, "include_internal": True})
    assert listed["total"] == 1  # stored and listed ...
    roots = call(client, "engine::traces::tree", {"trace_id": trace_id})["roots"]
    names = [r["name"] for r in roots] + [c["name"] for r in roots for c in r["children"]]
    assert not any(n.startswith("call engine::workers::") for n in names)  # ... not in the tree


def _count(client: Any, function_id: str) -> int:
    query = {"include_internal": True, "name": function_id, "limit": 10_000}
    return int(call(client, "engine::traces::list", query)["total"])


def _fresh_call_is_sampled_out(client: Any) -> bool:
    """One more engine::workers::list call left no span (engine::triggers::list, always kept,
    is the marker that the batch holding it has been stored)."""
    before, marks = (
        _count(client, "engine::workers::list"),
        _count(client, "engine::triggers::list"),
    )
    call(client, "engine::workers::list", {})
    call(client, "engine::triggers::list", {})
    wait_for(lambda: _count(client, "engine::triggers::list") > marks, timeout=10, interval=0.1)
    return _count(client, "engine::workers::list") == before


def test_configuration_set_changes_the_engines_sampling_without_a_restart(client: Any) -> None:
    wait_ready(client)
    assert not _fresh_call_is_sampled_out(client)  # kept by the boot block
    rule = {"operation": "engine::workers::*", "rate": 0.0}
    changed = {**BLOCK, "sampling": {**BLOCK["sampling"], "rules": [rule]}}
    try:
        call(client, "configuration::set", {"id": "iii-observability", "value": changed})
        wait_for(lambda: _fresh_call_is_sampled_out(client), timeout=20, interval=0.2)
    finally:
        call(client, "configuration::set", {"id": "iii-observability", "value": BLOCK})
    wait_for(lambda: not _fresh_call_is_sampled_out(client), timeout=20, interval=0.2)


def test_sampling_apply_refuses_an_invalid_block_and_keeps_the_sampler(client: Any) -> None:
    wait_ready(client)
    with pytest.raises(Exception, match="deserialization_error"):
        call(client, "engine::sampling::apply", {"sampling_ratio": "half"})
    assert not _fresh_call_is_sampled_out(client)
