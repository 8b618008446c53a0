"""SUPERVISOR.md §17.4 variants 1–2 and the drain and ordering parts of §17.5."""

from __future__ import annotations

import os
import random
import signal
import sys
import threading
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from tests.integration.supervision.conftest import (
    Up,
    command_worker,
    marked_pids,
    wait_for,
)
from tests.support import sdk_client

UpFactory = Callable[..., Up]

PROBE = """
import os, time
from iii import register_worker
w = register_worker()
def slow(data):
    time.sleep(float(data.get("s", 0.5)))
    return {"slept": data.get("s", 0.5)}
w.register_function(os.environ["PROBE_ID"], slow)
while True:
    time.sleep(1)
"""


def test_sigkill_at_random_points_during_startup_never_leaves_a_process(
    up_factory: UpFactory,
) -> None:
    """§17.4 variant 1: 10 SIGKILLs 0–500 ms after launch, bounded to 60 s in total."""
    workers = [
        command_worker("plain", "sleep 1000"),
        command_worker("tree", "sleep 1000 & setsid sleep 1000 & wait"),
    ]
    rng = random.Random(17)
    started = time.monotonic()
    for _ in range(10):
        up = up_factory(workers)
        up.start(wait=False)
        time.sleep(rng.uniform(0, 0.5))
        assert up.proc is not None
        os.kill(up.proc.pid, signal.SIGKILL)
        up.proc.wait(5)
        wait_for(partial(lambda u: not marked_pids(u.marker), up), 6.0)
    assert time.monotonic() - started < 60


def test_leftovers_of_a_cgroup_wide_kill_are_swept_by_the_next_up(
    up_factory: UpFactory,
) -> None:
    """§17.4 variant 2: supervisor and every keeper killed at once; the next up sweeps."""
    up = up_factory([command_worker("plain", "sleep 1000"), command_worker("other", "sleep 1000")])
    up.start()
    doc = {w["name"]: w for w in (up.wait_state(n, "ready") for n in ("plain", "other"))}
    keepers = [w["keeper_pid"] for w in doc.values()]
    workers = [w["pid"] for w in doc.values()]
    assert up.proc is not None
    for pid in [up.proc.pid, *keepers]:
        os.kill(pid, signal.SIGKILL)
    up.proc.wait(5)
    time.sleep(0.5)
    survivors = [p for p in workers if os.path.exists(f"/proc/{p}")]
    assert survivors, "without supervisor and keepers the workers survive (no cgroup here)"
    again = Up(up.tmp, up.workers, label="again")
    again.marker = up.marker
    again.env["III_TEST_RUN"] = up.marker
    again.port = up.port
    again.start()
    try:
        swept = again.log_events("supervisor.orphans_swept")
        assert swept and set(survivors) <= set(swept[0]["pids"]), swept
        wait_for(lambda: all(not os.path.exists(f"/proc/{p}") or _zombie(p) for p in survivors), 5)
        again.wait_state("plain", "ready")
    finally:
        assert again.cleanup() == []


def _zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            data = fh.read()
    except OSError:
        return True
    return data[data.rfind(b")") + 2 :][:1] == b"Z"


def test_sigterm_drains_an_in_flight_call_and_stops_builtins_last(
    up_factory: UpFactory, tmp_path: Path
) -> None:
    """§17.5: the in-flight call returns (drain), dependents stop first, state stops last."""
    script = tmp_path / "probe.py"
    script.write_text(PROBE)

    def probe(name: str, **supervise: Any) -> dict[str, Any]:
        return {
            "name": name,
            "supervise": {
                "command": [sys.executable, str(script)],
                "env": {"PROBE_ID": f"{name}::slow"},
                **supervise,
            },
        }

    up = up_factory(
        [
            {
                "name": "iii-state",
                "config": {
                    "adapter": {
                        "name": "kv",
                        "config": {"store_method": "file_based", "file_path": "state-db"},
                    }
                },
            },
            probe("a"),
            probe("b", depends_on=["a"]),
        ]
    ).start()
    for name in ("iii-state", "a", "b"):
        up.wait_state(name, "ready", 30)
    client = sdk_client(f"ws://127.0.0.1:{up.port}", "drain-caller")
    try:
        for i in range(200):
            client.trigger(
                {
                    "function_id": "state::set",
                    "payload": {"scope": "keys", "key": f"k{i}", "value": i},
                }
            )
        outcome: dict[str, Any] = {}

        def slow_call() -> None:
            try:
                outcome["result"] = client.trigger(
                    {"function_id": "a::slow", "payload": {"s": 0.8}, "timeout_ms": 10000}
                )
            except Exception as exc:  # noqa: BLE001 - recorded for the assertion
                outcome["error"] = exc

        caller = threading.Thread(target=slow_call)
        caller.start()
        time.sleep(0.3)
        up.signal(signal.SIGTERM)
        caller.join(15)
        assert outcome.get("result") == {"slept": 0.8}, outcome
        assert up.wait_exit(20) == 0
    finally:
        client.shutdown()
    stopped = [e["worker"] for e in up.log_events("worker.stopped")]
    assert stopped.index("b") < stopped.index("a") < stopped.index("iii-state"), stopped

    up.start()
    up.wait_state("iii-state", "ready", 30)
    client = sdk_client(f"ws://127.0.0.1:{up.port}", "drain-caller")
    try:
        values = client.trigger({"function_id": "state::list", "payload": {"scope": "keys"}})
        assert sorted(values) == list(range(200))
    finally:
        client.shutdown()
