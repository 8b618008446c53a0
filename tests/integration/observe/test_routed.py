"""Routed observers with official iii-sdk 0.25.0 workers (OBSERVE.md §13.1, R1–R14).

One scenario process holds three workers — ``shop`` hosts ``orders::create``, ``client``
calls it (from a handler, so the SDK asserts ``caller.function_id``, and top level),
``watcher`` observes and hosts the targets — and records what each target received; each
test below asserts one behaviour of the checklist on that record.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.integration.observe.support import Scenario
from tests.support import EngineProcess, engine_fixture, free_port

ROUTED = r"""
def body():
    shop, client, watcher = worker("shop"), worker("client"), worker("watcher")
    rec = Recorder(watcher)

    def create(data):
        if data.get("fail"):
            raise RuntimeError("card declined")
        return {"ok": True, "n": data.get("n")}

    shop.register_function("orders::create", create)
    def run(data):  # forwards what its caller sent, without the engine's injection
        payload = {k: v for k, v in data.items() if k != "_caller_worker_id"}
        return client.trigger({"function_id": "orders::create", "payload": payload})

    client.register_function("client::run", run)
    for fid in ("t::match", "t::error", "t::complete", "t::gone", "t::once", "t::expire"):
        rec.target(fid)

    def loop(data, metadata=None):  # re-calls the observed source: a chain of activations
        ctx = watcher.current_invocation()
        rec.got.setdefault("t::loop", []).append({"depth": ctx.observe_depth})
        watcher.trigger({"function_id": "orders::create", "payload": {"tag": "R14"}})

    watcher.register_function("t::loop", loop)
    registered(watcher, "orders::create", "client::run", "t::match", "t::loop")
    check("R1.features", sorted(watcher._engine_features))

    def call(payload, via_handler=False):
        if via_handler:
            return watcher.trigger({"function_id": "client::run", "payload": payload})
        return client.trigger({"function_id": "orders::create", "payload": payload})

    # R2-R5: filters on input, output and the asserted caller; the envelope and the frame
    started = time.monotonic()
    match = watcher.observe(
        {
            "function_id": "orders::create",
            "filters": {
                "input.tag": {"$eq": "R3"},
                "input.n": {"$gte": 2},
                "output.ok": {"$eq": True},
                "caller.function_id": {"$eq": "client::run"},
            },
        },
        "t::match",
        {"metadata": {"team": "audit"}},
    )
    check("R2.state", state_of(match))
    check("R2.seconds", time.monotonic() - started)
    call({"tag": "R3", "n": 5}, via_handler=True)
    call({"tag": "R3", "n": 1}, via_handler=True)  # small input
    call({"tag": "R3", "n": 5})  # top level: no caller.function_id
    wait(lambda: rec.of("t::match"), 5)
    time.sleep(0.5)
    check("R3.activations", rec.of("t::match"))

    # R6: on error, capture error
    err = watcher.observe(
        {
            "function_id": "orders::create",
            "on": "error",
            "capture": ["error"],
            "filters": {"input.tag": {"$eq": "R6"}, "error.message": {"$prefix": "card"}},
        },
        "t::error",
    )
    state_of(err)
    call({"tag": "R6", "n": 3})
    try:
        call({"tag": "R6", "fail": True})
    except Exception as exc:
        check("R6.caller_error", str(exc))
    wait(lambda: rec.of("t::error"), 5)
    time.sleep(0.3)
    check("R6.activations", rec.of("t::error"))

    # R7: on complete, deliver input
    comp = watcher.observe(
        {
            "function_id": "orders::create",
            "on": "complete",
            "deliver": "input",
            "filters": {"input.tag": {"$eq": "R7"}},
        },
        "t::complete",
    )
    state_of(comp)
    call({"tag": "R7", "n": 1})
    try:
        call({"tag": "R7", "fail": True})
    except Exception:
        pass
    wait(lambda: len(rec.of("t::complete")) >= 2, 5)
    time.sleep(0.3)
    check("R7.activations", rec.of("t::complete"))

    # R8: a missing target keeps the observer pending until it registers
    late = watcher.observe(
        {"function_id": "orders::create", "filters": {"input.tag": {"$eq": "R8"}}}, "t::late"
    )
    wait(lambda: late._sent, 5)
    time.sleep(0.5)
    check("R8.before", {"state": late.state, "reason": late.reason})
    rec.target("t::late")
    check("R8.after", state_of(late))
    call({"tag": "R8"})
    wait(lambda: rec.of("t::late"), 5)
    time.sleep(0.3)
    check("R8.activations", len(rec.of("t::late")))

    # R9: refusals, each with the raised code as its reason
    refusals = {
        "SELF_TARGET": ({"function_id": "orders::create"}, "orders::create"),
        "INVALID_ARGS": ({"function_id": "orders::create", "args": {"a": 1}}, "t::match"),
        "INVALID_FILTER": (
            {"function_id": "orders::create", "filters": {"input.op": "insert"}},
            "t::match",
        ),
    }
    for code, (source, target) in refusals.items():
        h = watcher.observe(source, target)
        try:
            h.ready(10)
            check("R9." + code, {"raised": None, "state": h.state})
        except ObserveRejection as exc:
            check("R9." + code, {"raised": exc.code, "state": h.state, "reason": h.reason})

    # FORBIDDEN: a session on an RBAC listener that may not call the source
    outsider = worker("outsider", url=os.environ["RBAC_URL"])
    h = outsider.observe({"function_id": "orders::create"}, "public::sink")
    try:
        h.ready(10)
        check("R9.FORBIDDEN", {"raised": None, "state": h.state})
    except ObserveRejection as exc:
        check("R9.FORBIDDEN", {"raised": exc.code, "state": h.state, "reason": h.reason})

    # R10: no activation after unobserve
    gone = watcher.observe(
        {"function_id": "orders::create", "filters": {"input.tag": {"$eq": "R10"}}}, "t::gone"
    )
    state_of(gone)
    call({"tag": "R10"})
    wait(lambda: rec.of("t::gone"), 5)
    gone.dispose()
    time.sleep(0.3)
    call({"tag": "R10"})
    time.sleep(0.5)
    check("R10.activations", len(rec.of("t::gone")))

    # R11: max_fires 1
    once = watcher.observe(
        {"function_id": "orders::create", "filters": {"input.tag": {"$eq": "R11"}}},
        "t::once",
        {"max_fires": 1},
    )
    state_of(once)
    call({"tag": "R11"})
    call({"tag": "R11"})
    wait(lambda: once.state == "disposed", 5)
    time.sleep(0.3)
    check("R11.activations", len(rec.of("t::once")))
    check("R11.state", {"state": once.state, "reason": once.reason})

    # R13: expires_in_ms 300
    exp = watcher.observe(
        {"function_id": "orders::create", "filters": {"input.tag": {"$eq": "R13"}}},
        "t::expire",
        {"expires_in_ms": 300},
    )
    state_of(exp)
    time.sleep(0.5)
    call({"tag": "R13"})
    time.sleep(0.3)
    check("R13.activations", len(rec.of("t::expire")))
    check("R13.state", {"state": exp.state, "reason": exp.reason})

    # R14: the loop guard
    loop_obs = watcher.observe(
        {"function_id": "orders::create", "filters": {"input.tag": {"$eq": "R14"}}}, "t::loop"
    )
    state_of(loop_obs)
    call({"tag": "R14"})
    wait(lambda: len(rec.of("t::loop")) >= 8, 10)
    time.sleep(0.5)
    check("R14.depths", [r["depth"] for r in rec.of("t::loop")])
    got = watcher.trigger({"function_id": "engine::observers::get", "payload": {"id": loop_obs.id}})
    check("R14.detail", got)
    got = watcher.trigger({"function_id": "engine::observers::get", "payload": {"id": match.id}})
    check("R3.detail", got)


main(body)
"""


RBAC_PORT = free_port()


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EngineProcess]:
    rbac = {"expose_functions": ['match("public::*")', 'match("engine::functions::list")']}
    listeners = [
        {"name": "iii-worker-manager", "config": {"host": "127.0.0.1", "port": free_port()}},
        {
            "name": "iii-worker-manager",
            "config": {"host": "127.0.0.1", "port": RBAC_PORT, "rbac": rbac},
        },
    ]
    yield from engine_fixture(tmp_path_factory.mktemp("engine"), {"workers": listeners})


@pytest.fixture(scope="module")
def routed(engine: EngineProcess, tmp_path_factory: pytest.TempPathFactory) -> Scenario:
    rbac_url = f"ws://127.0.0.1:{RBAC_PORT}"
    tmp = tmp_path_factory.mktemp("routed")
    return Scenario(ROUTED, engine, tmp, "routed", RBAC_URL=rbac_url).run()


def test_r1_workerregistered_lists_observe_and_local_dispatch(routed: Scenario) -> None:
    assert routed["R1.features"] == ["local-dispatch.v1", "observe.v1"]


def test_r2_an_observer_of_an_auto_function_turns_active_after_the_owner_acks(
    routed: Scenario,
) -> None:
    assert routed["R2.state"] == {"state": "active", "reason": None}
    assert routed["R2.seconds"] < 10


def test_r3_only_calls_satisfying_every_clause_activate_the_target_once(
    routed: Scenario,
) -> None:
    (act,) = routed["R3.activations"]
    assert act["data"]["input"] == {"tag": "R3", "n": 5}


def test_r4_the_envelope_carries_the_stamped_caller_and_the_metadata_sidecar(
    routed: Scenario,
) -> None:
    (act,) = routed["R3.activations"]
    env: dict[str, Any] = act["data"]
    assert list(env) == [
        "observer_id",
        "activation_id",
        "function_id",
        "namespace",
        "invocation_id",
        "status",
        "input",
        "output",
        "caller",
        "started_at_ms",
        "duration_ms",
    ]
    assert isinstance(env["activation_id"], str) and isinstance(env["invocation_id"], str)
    assert (env["function_id"], env["namespace"], env["status"]) == (
        "orders::create",
        "default",
        "success",
    )
    assert "_caller_worker_id" not in env["input"]
    assert env["output"] == {"ok": True, "n": 5}
    assert env["caller"]["worker_name"] == "client"
    assert env["caller"]["function_id"] == "client::run"
    assert isinstance(env["started_at_ms"], int) and isinstance(env["duration_ms"], int | float)
    assert act["metadata"] == {"team": "audit"}


def test_r5_the_activation_frame_carries_depth_caller_and_activation(routed: Scenario) -> None:
    (act,) = routed["R3.activations"]
    env = act["data"]
    assert act["depth"] == 1
    assert act["caller"] == {
        "worker_name": "iii-engine",
        "function_id": "orders::create",
        "invocation_id": env["invocation_id"],
    }
    assert act["activation"] == {
        "observer_id": env["observer_id"],
        "activation_id": env["activation_id"],
    }


def test_r6_on_error_fires_only_on_the_failing_call_and_filters_read_the_error(
    routed: Scenario,
) -> None:
    (act,) = routed["R6.activations"]
    env = act["data"]
    assert env["status"] == "error" and "input" not in env
    assert env["error"]["code"] == "invocation_failed"
    assert env["error"]["message"] == "card declined"


def test_r7_on_complete_with_deliver_input_gets_exactly_the_payload(routed: Scenario) -> None:
    datas = [a["data"] for a in routed["R7.activations"]]
    assert sorted(datas, key=str) == sorted(
        [{"tag": "R7", "n": 1}, {"tag": "R7", "fail": True}], key=str
    )


def test_r8_a_missing_target_keeps_the_observer_pending_until_it_registers(
    routed: Scenario,
) -> None:
    assert routed["R8.before"]["state"] == "pending"
    assert routed["R8.after"]["state"] == "active"
    assert routed["R8.activations"] == 1


@pytest.mark.parametrize("code", ["SELF_TARGET", "INVALID_ARGS", "INVALID_FILTER", "FORBIDDEN"])
def test_r9_refusals_end_in_error_with_the_raised_code(routed: Scenario, code: str) -> None:
    seen = routed[f"R9.{code}"]
    assert seen["raised"] == code and seen["state"] == "error"
    assert seen["reason"]["code"] == code


def test_r10_no_activation_after_unobserve(routed: Scenario) -> None:
    assert routed["R10.activations"] == 1


def test_r11_max_fires_one_gives_one_activation_then_disposed(routed: Scenario) -> None:
    assert routed["R11.activations"] == 1
    assert routed["R11.state"]["state"] == "disposed"
    assert routed["R11.state"]["reason"]["code"] == "MAX_FIRES"


def test_r13_an_expired_observer_is_disposed_and_not_activated(routed: Scenario) -> None:
    assert routed["R13.activations"] == 0
    assert routed["R13.state"]["state"] == "disposed"
    assert routed["R13.state"]["reason"]["code"] == "EXPIRED"


def test_r14_the_loop_guard_stops_at_depth_eight_and_counts(routed: Scenario) -> None:
    assert routed["R14.depths"] == [1, 2, 3, 4, 5, 6, 7, 8]
    detail = routed["R14.detail"]["observer"]
    assert detail["dropped"]["LOOP_GUARD"] >= 1 and detail["state"] == "active"


def test_observers_get_shows_the_filter_paths(routed: Scenario) -> None:
    text = str(routed["R3.detail"])
    assert "input.n" in text and "caller.function_id" in text
