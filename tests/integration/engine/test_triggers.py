"""Worker-provided trigger types: delivery to the provider, parking until it connects."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.support import EngineProcess, WorkerProcess, sdk_client, wait_for

PROVIDER = """
import asyncio, json, os, time
from iii import register_worker, InitOptions
from iii.triggers import TriggerHandler
w = register_worker(os.environ["III_URL"], InitOptions(worker_name="webhook-provider"))
out = os.environ["OUT"]
class Hooks(TriggerHandler):
    async def register_trigger(self, config):
        with open(out, "a") as fh:
            fh.write(json.dumps({"op": "register", "id": config.id,
                                 "function_id": config.function_id,
                                 "config": config.config}) + "\\n")
    async def unregister_trigger(self, config):
        with open(out, "a") as fh:
            fh.write(json.dumps({"op": "unregister", "id": config.id}) + "\\n")
w.register_trigger_type({"id": "webhook", "description": "Inbound webhooks"}, Hooks())
while True:
    time.sleep(1)
"""


def events(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_trigger_reaches_a_connected_provider(engine: EngineProcess, tmp_path: Path) -> None:
    out = tmp_path / "hooks.jsonl"
    provider = WorkerProcess(PROVIDER, tmp_path, engine.url, "provider", OUT=str(out))
    consumer = sdk_client(engine.url, "consumer")
    try:
        wait_for(
            lambda: any(
                t["id"] == "webhook"
                for t in consumer.trigger({"function_id": "engine::triggers::list", "payload": {}})[
                    "triggers"
                ]
            ),
            timeout=15,
        )
        consumer.register_function("hooks::on", lambda data: None)
        trigger = consumer.register_trigger(
            {"type": "webhook", "function_id": "hooks::on", "config": {"url": "/a"}}
        )
        got = wait_for(lambda: [e for e in events(out) if e["op"] == "register"])
        assert got[0]["function_id"] == "hooks::on"
        assert got[0]["config"] == {"url": "/a"}
        trigger.unregister()
        wait_for(lambda: [e for e in events(out) if e["op"] == "unregister"])
    finally:
        consumer.shutdown()
        provider.stop()


def test_trigger_registered_before_its_provider_is_delivered_later(
    engine: EngineProcess, tmp_path: Path
) -> None:
    out = tmp_path / "hooks.jsonl"
    consumer = sdk_client(engine.url, "consumer")
    provider = None
    try:
        consumer.register_function("hooks::early", lambda data: None)
        consumer.register_trigger(
            {"type": "webhook", "function_id": "hooks::early", "config": {"url": "/early"}}
        )
        provider = WorkerProcess(PROVIDER, tmp_path, engine.url, "provider", OUT=str(out))
        got = wait_for(lambda: [e for e in events(out) if e["op"] == "register"], timeout=15)
        assert got[0]["function_id"] == "hooks::early"
        assert got[0]["config"] == {"url": "/early"}
    finally:
        consumer.shutdown()
        if provider is not None:
            provider.stop()


def test_consumer_disconnect_unregisters_at_the_provider(
    engine: EngineProcess, tmp_path: Path
) -> None:
    out = tmp_path / "hooks.jsonl"
    provider = WorkerProcess(PROVIDER, tmp_path, engine.url, "provider", OUT=str(out))
    consumer = sdk_client(engine.url, "consumer")
    try:
        consumer.register_function("hooks::gone", lambda data: None)
        consumer.register_trigger({"type": "webhook", "function_id": "hooks::gone", "config": {}})
        registered = wait_for(lambda: [e for e in events(out) if e["op"] == "register"], 15)
        consumer.shutdown()
        gone = wait_for(lambda: [e for e in events(out) if e["op"] == "unregister"])
        assert [g["id"] for g in gone] == [registered[0]["id"]]
    finally:
        provider.stop()
