"""Engines with built-in actors (state, pubsub, configuration) as real processes.

``deploy`` is the one place that decides how actors run. The actors under test are started
here as ``python -m actors.<module>`` connected through ``III_URL``, with their config block in a
JSON file named by ``III_CONFIG`` and their own ``III_DATA_DIR`` (what the supervisor passes),
so tests can kill and restart them at will and hand the configuration actor its ``entries``
block (which the supervisor does not compute yet). The engine's own spawn of the mandatory
``configuration`` worker is switched off (``autostart: false``) so it cannot collide with ours,
and so is ``iii-observability``'s (it would register its entry in the configuration actor).
Switching to engine-spawned actors means listing them in ``ENGINE_CONFIG`` instead.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Final

import pytest

from tests.support import REPO, EngineProcess, sdk_client, wait_for

MODULES: Final = {"iii-state": "state", "iii-pubsub": "pubsub", "configuration": "configuration"}
READY_FUNCTION: Final = {
    "iii-state": "state::list_groups",
    "iii-pubsub": "publish",
    "configuration": "configuration::list",
}
CALLER_KEY: Final = "_caller_worker_id"
ENGINE_CONFIG: Final = {
    "workers": [
        {"name": "configuration", "supervise": {"autostart": False}},
        # Mandatory too, and it keeps its settings in the configuration worker: its entry would
        # appear among the entries these tests list.
        {"name": "iii-observability", "supervise": {"autostart": False}},
    ],
}


def strip_caller(value: Any) -> Any:
    """The engine adds ``_caller_worker_id`` to object payloads of worker-originated calls,
    actors' trigger fires included (see the report on the bus); compare without it."""
    if isinstance(value, dict):
        return {k: v for k, v in value.items() if k != CALLER_KEY}
    return value


def function_ids(client: Any) -> set[str]:
    result = client.trigger({"function_id": "engine::functions::list", "payload": {}})
    return {f["function_id"] for f in result["functions"]}


def call(client: Any, function_id: str, payload: Any, timeout_ms: int = 10_000) -> Any:
    return client.trigger(
        {"function_id": function_id, "payload": payload, "timeout_ms": timeout_ms}
    )


class ActorProcess:
    """One built-in actor as its own OS process, attached to an engine by ``III_URL``."""

    def __init__(
        self,
        name: str,
        engine: EngineProcess,
        config: dict[str, Any] | None,
        tmp: Path,
        env: dict[str, str] | None = None,
    ) -> None:
        self.name = name
        self.module = f"actors.{MODULES[name]}"
        self.engine = engine
        self.tmp = tmp
        self.config_path = tmp / f"{name}.config.json"
        self.data_dir = tmp / f"{name}-data"
        self.log_path = tmp / f"{name}.log"
        self.extra_env = env or {}
        self.proc: subprocess.Popen[bytes] | None = None
        self.set_config(config)

    def set_config(self, config: dict[str, Any] | None) -> None:
        self.config_path.write_text(json.dumps(config or {}))

    def start(self) -> ActorProcess:
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", self.module],
                cwd=REPO,
                env={
                    **os.environ,
                    "III_URL": self.engine.url,
                    "III_WORKER_NAME": self.name,
                    "III_CONFIG": str(self.config_path),
                    "III_DATA_DIR": str(self.data_dir),
                    "PYTHONUNBUFFERED": "1",
                    **self.extra_env,
                },
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        return self

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return self.proc.returncode

    def kill(self) -> None:
        self.stop(signal.SIGKILL)

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_events(self) -> list[dict[str, Any]]:
        out = []
        for line in self.log_text().splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict):
                out.append(record)
        return out


class Deployment:
    """An engine, its actors, and an SDK client for the test."""

    def __init__(self, engine: EngineProcess, tmp: Path) -> None:
        self.engine = engine
        self.tmp = tmp
        self.actors: dict[str, ActorProcess] = {}
        self.client = sdk_client(engine.url, "test-client")

    @property
    def url(self) -> str:
        return self.engine.url

    def add(
        self, name: str, config: dict[str, Any] | None, env: dict[str, str] | None = None
    ) -> ActorProcess:
        actor = ActorProcess(name, self.engine, config, self.tmp, env).start()
        self.actors[name] = actor
        self.wait_ready(name)
        return actor

    def wait_ready(self, name: str, timeout: float = 20.0) -> None:
        actor = self.actors[name]
        fid = READY_FUNCTION[name]

        def ready() -> bool:
            if not actor.alive:
                raise AssertionError(
                    f"{name} exited ({actor.proc and actor.proc.returncode}):\n"
                    f"{actor.log_text()[-3000:]}"
                )
            return fid in function_ids(self.client)

        wait_for(ready, timeout)

    def wait_gone(self, name: str, timeout: float = 10.0) -> None:
        fid = READY_FUNCTION[name]
        wait_for(lambda: fid not in function_ids(self.client), timeout)

    def restart(self, name: str, sig: int = signal.SIGTERM) -> ActorProcess:
        """Stop the actor with ``sig``, wait until the engine dropped it, start it again."""
        actor = self.actors[name]
        actor.stop(sig)
        self.wait_gone(name)
        actor.start()
        self.wait_ready(name)
        return actor

    def close(self) -> None:
        try:
            self.client.shutdown()
        finally:
            for actor in self.actors.values():
                actor.stop()
            self.engine.stop()


@pytest.fixture
def deploy(tmp_path: Path) -> Iterator[Callable[..., Deployment]]:
    """``deploy({"iii-state": {...config block...}, ...})`` → a running ``Deployment``."""
    made: list[Deployment] = []

    def make(
        workers: dict[str, dict[str, Any] | None],
        *,
        env: dict[str, dict[str, str]] | None = None,
    ) -> Deployment:
        tmp = tmp_path / f"engine{len(made)}"
        tmp.mkdir()
        engine = EngineProcess(ENGINE_CONFIG, tmp).start()
        deployment = Deployment(engine, tmp)
        made.append(deployment)
        for name, config in workers.items():
            deployment.add(name, config, (env or {}).get(name))
        return deployment

    yield make
    for deployment in made:
        deployment.close()


class Inbox:
    """Collects what an SDK-registered function receives."""

    def __init__(self) -> None:
        self.items: list[Any] = []

    def __call__(self, data: Any) -> Any:
        self.items.append(data)
        return None

    def wait(self, count: int, timeout: float = 10.0) -> list[Any]:
        wait_for(lambda: len(self.items) >= count, timeout)
        return self.items[:count]

    def settle(self, quiet: float = 0.3) -> list[Any]:
        """Wait until nothing new arrives for ``quiet`` seconds (bounded), then return all."""
        deadline = time.monotonic() + 10.0
        seen = -1
        while len(self.items) != seen and time.monotonic() < deadline:
            seen = len(self.items)
            time.sleep(quiet)
        return list(self.items)
