"""Local dispatch, owner delivery and reconnects with official iii-sdk 0.25.0 workers
(OBSERVE.md §13.1 R12, §13.2 L1–L10).

One scenario process: ``shop`` hosts ``orders::place`` (auto) and calls it in-process;
``cron`` hosts owner-delivered functions with hooks; ``watcher`` observes and hosts the
targets. Sockets are dropped from the client side to make the SDK reconnect (reattach and
replay). Each test asserts one behaviour on the scenario's record.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.integration.observe.support import Scenario
from tests.support import EngineProcess, engine_fixture

LOCAL = r"""
import asyncio


def drop(w):
    '''Close the worker's socket from its side: the SDK reconnects, reattaches, replays.'''
    asyncio.run_coroutine_threadsafe(w._ws.close(), w._loop).result(5)


def body():
    shop, cron, watcher = worker("shop"), worker("cron"), worker("watcher")
    rec = Recorder(watcher)
    for fid in ("t::local", "t::rapid", "t::emit", "t::emit2", "t::call", "t::kept", "t::gone",
                "t::reconnect"):
        rec.target(fid, answer=lambda data: {"answered": True})

    # L1: functionregistered lists the observers attached before the function existed
    early = watcher.observe({"function_id": "orders::place"}, "t::local", {"metadata": {"m": 1}})
    wait(lambda: early._sent, 5)
    shop.register_function("orders::place", lambda data: {"placed": data.get("n")})
    registered(watcher, "orders::place", "t::local", "t::reconnect")
    check("L1.early", state_of(early))
    state = shop._observe_state("orders::place")
    check("L1.local_dispatch", state.local_dispatch)
    check("L1.observers", [o.id for o in state.observers()])

    # L2/L3: one call in-process, one through the engine, from the same worker
    shop.trigger({"function_id": "orders::place", "payload": {"n": 7}, "metadata": {"k": "v"}})
    shop.trigger({"function_id": "orders::place", "payload": {"n": 7}, "metadata": {"k": "v"},
                  "dispatch": "remote"})
    wait(lambda: len(rec.of("t::local")) >= 2, 10)
    time.sleep(0.3)
    check("L2.activations", rec.of("t::local"))
    early.dispose()
    time.sleep(0.3)
    shop.trigger({"function_id": "orders::place", "payload": {"n": 8}})  # nobody observes
    time.sleep(0.5)
    check("L3.after_dispose", len(rec.of("t::local")))

    # L4: 200 rapid local calls, each reported and activated
    rapid = watcher.observe({"function_id": "orders::place", "filters": {"input.rapid": {"$eq": True}}},
                            "t::rapid", {"max_in_flight": 200})
    check("L4.state", state_of(rapid))
    for i in range(200):
        shop.trigger({"function_id": "orders::place", "payload": {"rapid": True, "i": i}})
    wait(lambda: len(rec.of("t::rapid")) >= 200, 20)
    check("L4.inputs", sorted(r["data"]["input"]["i"] for r in rec.of("t::rapid")))

    # localinvocationstats (sent now rather than at the SDK's 10 s tick) reach the RED metrics
    shop._loop.call_soon_threadsafe(shop._reporter.send_stats)

    def counted():
        stats = shop.trigger({"function_id": "engine::calls::stats", "payload": {}})
        rows = [r for r in stats["functions"] if r["function_id"] == "orders::place"]
        return rows[0] if rows and rows[0]["count"] >= 202 else None

    check("stats.orders_place", wait(counted, 10))

    # L5-L9: owner delivery with hooks
    hooks_seen = {"added": [], "removed": [], "added_done_at": {}}

    class Ticks(ObserveHooks):
        delivery = "owner"
        args_format = {"type": "object", "required": ["expression"],
                       "properties": {"expression": {"type": "string"}}}

        def on_observer_added(self, obs):
            hooks_seen["added"].append({"id": obs.id, "args": obs.args, "filters": obs.filters})
            if obs.args.get("expression") == "bad":
                raise ObserveRejection("INVALID_CRON_EXPRESSION", "invalid day-of-week field")
            time.sleep(0.5)
            hooks_seen["added_done_at"][obs.id] = time.monotonic()

        def on_observer_removed(self, obs):
            hooks_seen["removed"].append(obs.id)

    cron.register_function("cron::tick", lambda data: None, observe=Ticks())
    registered(watcher, "cron::tick")
    bad_args = watcher.observe({"function_id": "cron::tick", "args": {"x": 1}}, "t::emit")
    check("L5.bad_args", state_of(bad_args))
    check("L5.hooks_after_bad_args", list(hooks_seen["added"]))

    emit = watcher.observe(
        {"function_id": "cron::tick", "args": {"expression": "* * * * *"},
         "filters": {"input.n": {"$gte": 2}}, "capture": ["input", "caller"]},
        "t::emit", {"metadata": {"sidecar": 1}})
    emit2 = watcher.observe(
        {"function_id": "cron::tick", "args": {"expression": "0 * * * *"}}, "t::emit2")
    check("L7.emit", state_of(emit))
    check("L7.active_after_hook",
          time.monotonic() >= hooks_seen["added_done_at"].get(emit.id, float("inf")))
    state_of(emit2)
    check("L5.args", [a["args"] for a in hooks_seen["added"] if a["id"] == emit.id])
    check("L7.filters", [a["filters"] for a in hooks_seen["added"] if a["id"] == emit.id])
    got = watcher.trigger({"function_id": "engine::observers::get", "payload": {"id": emit.id}})
    check("L7.detail", got)
    rejected = watcher.observe({"function_id": "cron::tick", "args": {"expression": "bad"}},
                               "t::emit")
    check("L7.rejected", state_of(rejected))
    check("L7.adds", [a["id"] for a in hooks_seen["added"]])
    check("L7.ids", [emit.id, emit2.id, rejected.id])

    owner_side = {o.id: o for o in cron._observe_state("cron::tick").observers()}
    owner_side[emit.id].emit({"n": 1})  # filtered out by the SDK
    owner_side[emit.id].emit({"n": 5})
    wait(lambda: rec.of("t::emit"), 5)
    time.sleep(0.3)
    check("L6.emit", rec.of("t::emit"))
    check("L6.emit2", rec.of("t::emit2"))

    call_obs = watcher.observe({"function_id": "cron::tick", "args": {"expression": "*/5"}},
                               "t::call", {"metadata": {"via": "call"}})
    state_of(call_obs)
    owner_side = {o.id: o for o in cron._observe_state("cron::tick").observers()}
    check("L9.result", owner_side[call_obs.id].call({"payload": 1}))
    check("L9.target", rec.of("t::call"))
    call_obs.dispose()
    wait(lambda: call_obs.id in hooks_seen["removed"], 5)
    check("L9.removed", call_obs.id in hooks_seen["removed"])
    check("L7.removed", call_obs.id in hooks_seen["removed"])

    # L10: the owner drops and comes back; one kept, one unobserved while it was away
    kept = watcher.observe({"function_id": "cron::tick", "args": {"expression": "kept"}}, "t::kept")
    gone = watcher.observe({"function_id": "cron::tick", "args": {"expression": "gone"}}, "t::gone")
    state_of(kept)
    state_of(gone)
    before = len([a for a in hooks_seen["added"] if a["id"] == kept.id])
    kept_obs = {o.id: o for o in cron._observe_state("cron::tick").observers()}[kept.id]
    drop(cron)
    gone.dispose()
    kept_obs.emit({"held": True})  # reported while away: held until the re-ack
    wait(lambda: rec.of("t::kept"), 15)
    time.sleep(0.5)
    check("L10.kept_activations", rec.of("t::kept"))
    check("L10.gone_removed", gone.id in hooks_seen["removed"])
    check("L10.kept_adds", len([a for a in hooks_seen["added"] if a["id"] == kept.id]) - before)
    check("L10.kept_args",
          {o.id: o.args for o in cron._observe_state("cron::tick").observers()}.get(kept.id))

    # R12: the observing worker drops and reconnects: its observer is active again
    again = watcher.observe({"function_id": "orders::place", "filters": {"input.r12": {"$eq": True}}},
                            "t::reconnect")
    state_of(again)
    drop(watcher)
    time.sleep(0.5)
    wait(lambda: watcher._observe_online(), 10)

    def rebound():
        got = shop.trigger({"function_id": "engine::observers::get", "payload": {"id": again.id}})
        seen = got["observer"]
        return seen if seen["state"] == "active" and seen.get("worker_id") == watcher._worker_id else None

    check("R12.engine", wait(rebound, 10))
    check("R12.state", state_of(again))
    shop.trigger({"function_id": "orders::place", "payload": {"r12": True}, "dispatch": "remote"})
    wait(lambda: rec.of("t::reconnect"), 10)
    time.sleep(0.5)
    check("R12.activations", len(rec.of("t::reconnect")))


main(body)
"""


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EngineProcess]:
    yield from engine_fixture(tmp_path_factory.mktemp("engine"), {"workers": []})


@pytest.fixture(scope="module")
def local(engine: EngineProcess, tmp_path_factory: pytest.TempPathFactory) -> Scenario:
    return Scenario(LOCAL, engine, tmp_path_factory.mktemp("local"), "local").run(90)


def test_l1_functionregistered_confirms_local_dispatch_with_the_observer_set(
    local: Scenario,
) -> None:
    assert local["L1.local_dispatch"] is True
    assert len(local["L1.observers"]) == 1
    assert local["L1.early"]["state"] == "active"


def test_l2_local_and_routed_calls_give_equal_envelopes(local: Scenario) -> None:
    first, second = local["L2.activations"]
    for act in (first, second):
        assert act["depth"] == 1 and act["metadata"] == {"m": 1}
        assert act["data"]["input"] == {"n": 7}  # routed input without _caller_worker_id

    def comparable(act: dict[str, Any]) -> dict[str, Any]:
        env = dict(act["data"])
        for key in ("activation_id", "invocation_id", "started_at_ms", "duration_ms"):
            env.pop(key)
        caller = dict(env["caller"])
        caller.pop("invocation_id", None)
        env["caller"] = caller
        return env

    assert comparable(first) == comparable(second)
    assert first["data"]["caller"]["worker_name"] == "shop"


def test_l3_unobserved_local_calls_activate_nothing(local: Scenario) -> None:
    assert local["L3.after_dispose"] == 2


def test_l4_every_one_of_200_rapid_local_calls_is_activated(local: Scenario) -> None:
    assert local["L4.state"]["state"] == "active"
    assert local["L4.inputs"] == list(range(200))


def test_local_invocation_stats_are_counted_in_engine_calls_stats(local: Scenario) -> None:
    row = local["stats.orders_place"]  # 202 local calls; the routed ones are 1 by then
    assert row is not None and row["count"] >= 202 and row["errors"] == 0


def test_l5_args_format_refuses_without_running_a_hook_and_passes_valid_args(
    local: Scenario,
) -> None:
    bad = local["L5.bad_args"]
    assert bad["state"] == "error" and bad["reason"]["code"] == "INVALID_ARGS"
    assert local["L5.hooks_after_bad_args"] == []
    assert local["L5.args"] == [{"expression": "* * * * *"}]


def test_l6_emit_activates_only_the_matched_observer(local: Scenario) -> None:
    (act,) = local["L6.emit"]
    assert act["data"]["function_id"] == "cron::tick"
    assert act["data"]["input"] == {"n": 5}
    assert local["L6.emit2"] == []


def test_l7_active_after_the_hook_normal_form_rejection_and_removal(local: Scenario) -> None:
    assert local["L7.emit"]["state"] == "active"
    assert local["L7.active_after_hook"] is True
    assert local["L7.filters"] == [{"$and": [{"input.n": {"$gte": 2}}]}]
    assert "input.n" in str(local["L7.detail"])
    rejected = local["L7.rejected"]
    assert rejected["state"] == "error"
    assert rejected["reason"]["code"] == "INVALID_CRON_EXPRESSION"
    assert local["L7.removed"] is True
    added = local["L7.adds"]
    assert all(added.count(oid) == 1 for oid in local["L7.ids"])  # each hook ran once


def test_l8_an_emitted_envelope_carries_the_owner_caller_and_the_sidecar(
    local: Scenario,
) -> None:
    (act,) = local["L6.emit"]
    assert act["data"]["caller"]["worker_name"] == "cron"
    assert "output" not in act["data"]
    assert act["metadata"] == {"sidecar": 1}


def test_l9_obs_call_reaches_the_stored_target_and_returns_its_result(
    local: Scenario,
) -> None:
    assert local["L9.result"] == {"answered": True}
    (act,) = local["L9.target"]
    assert act["data"] == {"payload": 1} and act["metadata"] == {"via": "call"}
    assert local["L9.removed"] is True


def test_l10_a_returning_owner_gets_the_kept_observers_and_held_reports(
    local: Scenario,
) -> None:
    (act,) = local["L10.kept_activations"]
    assert act["data"]["input"] == {"held": True}
    assert local["L10.gone_removed"] is True
    assert local["L10.kept_adds"] == 0
    assert local["L10.kept_args"] == {"expression": "kept"}


def test_r12_an_observer_survives_its_workers_reconnect(local: Scenario) -> None:
    assert local["R12.engine"]["state"] == "active"  # bound to the new connection
    assert local["R12.state"]["state"] == "active"
    assert local["R12.activations"] == 1
