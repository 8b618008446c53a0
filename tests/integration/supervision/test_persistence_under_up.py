"""Stored data across supervisor stops and crashes, with the actors spawned by ``up``.

Issue 4: file_based state survives a SIGTERM of the supervisor; with ``fsync: always`` every
acknowledged write survives a SIGKILL of the whole supervisor (the keepers take the actors
down through their lifeline); config.yaml wins over values set at runtime at the next boot,
and the discard is logged.
"""

from __future__ import annotations

import json
import os
import signal
import threading
from collections.abc import Callable
from functools import partial
from typing import Any

from iii import InvocationError

from tests.integration.supervision.conftest import Up, marked_pids, wait_for
from tests.support import sdk_client

UpFactory = Callable[..., Up]


def state_entry(**kv: Any) -> dict[str, Any]:
    return {
        "name": "iii-state",
        "config": {
            "adapter": {
                "name": "kv",
                "config": {"store_method": "file_based", "file_path": "state-db", **kv},
            },
        },
    }


def client_for(up: Up) -> Any:
    return sdk_client(f"ws://127.0.0.1:{up.port}", "persistence-test")


def set_value(client: Any, key: str, value: Any, timeout_ms: int = 30000) -> None:
    client.trigger(
        {
            "function_id": "state::set",
            "timeout_ms": timeout_ms,
            "payload": {"scope": "orders", "key": key, "value": value},
        }
    )


def test_file_based_values_survive_a_sigterm_of_the_supervisor(up_factory: UpFactory) -> None:
    up = up_factory([state_entry()]).start()
    up.wait_state("iii-state", "ready", 30)
    client = client_for(up)
    try:
        for i in range(100):
            set_value(client, f"o{i}", {"n": i})
    finally:
        client.shutdown()
    up.signal(signal.SIGTERM)
    assert up.wait_exit(30) == 0
    up.start()
    up.wait_state("iii-state", "ready", 30)
    client = client_for(up)
    try:
        values = client.trigger({"function_id": "state::list", "payload": {"scope": "orders"}})
        assert sorted(v["n"] for v in values) == list(range(100))
    finally:
        client.shutdown()


def test_fsync_always_keeps_acknowledged_writes_across_supervisor_sigkills(
    up_factory: UpFactory,
) -> None:
    up = up_factory([state_entry(fsync="always")])
    acknowledged: list[str] = []
    for round_no in range(5):
        up.start()
        up.wait_state("iii-state", "ready", 30)
        client = client_for(up)
        stop = threading.Event()

        def writer(n: int, client: Any, stop: threading.Event) -> None:
            i = 0
            while not stop.is_set():
                key = f"r{n}-{i}"
                try:
                    set_value(client, key, i, timeout_ms=1000)
                except Exception:
                    return
                acknowledged.append(key)
                i += 1

        thread = threading.Thread(target=writer, args=(round_no, client, stop))
        thread.start()
        wait_for(
            partial(lambda n: sum(k.startswith(f"r{n}-") for k in acknowledged) > 20, round_no),
            20,
        )
        assert up.proc is not None
        os.kill(up.proc.pid, signal.SIGKILL)  # the supervisor only: keepers do the rest
        up.proc.wait(10)
        stop.set()
        thread.join(10)
        client.shutdown()
        wait_for(lambda: not marked_pids(up.marker), 10)  # nothing of the tree survives
    up.start()
    up.wait_state("iii-state", "ready", 30)
    client = client_for(up)
    try:
        stored = client.trigger({"function_id": "state::list", "payload": {"scope": "orders"}})
        keys = client.trigger({"function_id": "state::list_groups", "payload": {}})
        assert "orders" in keys["groups"]
        missing = [
            k
            for k in acknowledged
            if client.trigger(
                {"function_id": "state::get", "payload": {"scope": "orders", "key": k}}
            )
            is None
        ]
        assert not missing, f"{len(missing)} acknowledged writes lost, e.g. {missing[:5]}"
        assert len(stored) >= len(acknowledged)
    finally:
        client.shutdown()


def test_config_yaml_wins_over_runtime_values_at_the_next_boot(up_factory: UpFactory) -> None:
    entry = state_entry()
    entry["config"]["max_value_bytes"] = 4096
    up = up_factory([{"name": "configuration"}, entry]).start()
    up.wait_state("iii-state", "ready", 30)
    up.wait_state("configuration", "ready", 30)
    client = client_for(up)
    try:
        current = client.trigger(
            {"function_id": "configuration::get", "payload": {"id": "iii-state"}}
        )["value"]
        runtime = {**current, "max_value_bytes": 32, "triggers_enabled": False}

        def set_runtime() -> bool:
            # iii-state registers its schema with the configuration actor shortly after
            # both are ready; until then a set is refused with SCHEMA_UNAVAILABLE.
            try:
                client.trigger(
                    {
                        "function_id": "configuration::set",
                        "payload": {"id": "iii-state", "value": runtime},
                    }
                )
            except InvocationError as exc:
                if exc.code != "SCHEMA_UNAVAILABLE":
                    raise
                return False
            return True

        wait_for(set_runtime, 15)
        live = client.trigger(
            {"function_id": "configuration::get", "payload": {"id": "iii-state"}}
        )["value"]
        assert live["max_value_bytes"] == 32  # applied live
    finally:
        client.shutdown()
    up.signal(signal.SIGTERM)
    assert up.wait_exit(30) == 0

    entry["config"]["max_value_bytes"] = 2048  # the operator edits config.yaml
    up.write_config([{"name": "configuration"}, entry])
    up.start()
    up.wait_state("configuration", "ready", 30)
    client = client_for(up)
    try:
        value = client.trigger(
            {"function_id": "configuration::get", "payload": {"id": "iii-state"}}
        )["value"]
        assert value["max_value_bytes"] == 2048  # config.yaml wins
        assert value["triggers_enabled"] is False  # a key config.yaml does not set is kept
    finally:
        client.shutdown()
    discards = [  # the actor's JSON records arrive as objects, at their own level
        rec["record"]
        for rec in up.log_events("worker.output")
        if "config.yaml wins" in rec.get("record", {}).get("event", "")
    ]
    assert discards, "the discarded runtime value was not logged"
    assert discards[-1]["level"] == "warning"
    assert any(
        rec.get("level") == "warning" and rec.get("record") == discards[-1]
        for rec in up.log_events("worker.output")
    )
    assert "max_value_bytes" in json.dumps(discards[-1])
