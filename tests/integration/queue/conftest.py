"""An engine running the iii-queue actor under supervision (as config.yaml would list it), an
SDK client in the test process, and the helpers the queue tests share."""

from __future__ import annotations

import shutil
import subprocess
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Final

import pytest
from iii import TriggerAction

from tests.support import EngineProcess, find_process, require_service, sdk_client, wait_for

READY: Final = "engine::queue::enqueue"
CALLER_KEY: Final = "_caller_worker_id"


def function_ids(client: Any) -> set[str]:
    result = client.trigger({"function_id": "engine::functions::list", "payload": {}})
    return {f["function_id"] for f in result["functions"]}


def call(client: Any, function_id: str, payload: Any, timeout_ms: int = 10_000) -> Any:
    return client.trigger(
        {"function_id": function_id, "payload": payload, "timeout_ms": timeout_ms}
    )


def enqueue(client: Any, function_id: str, payload: Any, queue: str = "default") -> Any:
    return client.trigger(
        {
            "function_id": function_id,
            "payload": payload,
            "action": TriggerAction.Enqueue(queue=queue),
        }
    )


class Recorder:
    """An SDK handler that records what it gets and fails as its ``fail`` says."""

    def __init__(self, fail: Callable[[Any, int], bool] | None = None) -> None:
        self.calls: list[Any] = []
        self.seen: Counter[Any] = Counter()
        self._fail = fail
        self._lock = threading.Lock()

    def key(self, data: Any) -> Any:
        return data.get("n") if isinstance(data, dict) else repr(data)

    def __call__(self, data: Any) -> Any:
        with self._lock:
            self.calls.append(data)
            key = self.key(data)
            self.seen[key] += 1
            attempt = self.seen[key]
        if self._fail is not None and self._fail(data, attempt):
            raise RuntimeError(f"failing {key} on attempt {attempt}")
        return {"ok": True}

    def wait_keys(self, count: int, timeout: float = 30.0) -> None:
        wait_for(lambda: len(self.seen) >= count, timeout)

    def settle(self, quiet: float = 0.5) -> int:
        deadline = time.monotonic() + 15.0
        seen = -1
        while len(self.calls) != seen and time.monotonic() < deadline:
            seen = len(self.calls)
            time.sleep(quiet)
        return len(self.calls)


class QueueDeployment:
    def __init__(self, engine: EngineProcess) -> None:
        self.engine = engine
        self.client = sdk_client(engine.url, "queue-test-client")

    @property
    def url(self) -> str:
        return self.engine.url

    def wait_ready(self, timeout: float = 30.0) -> None:
        wait_for(lambda: READY in function_ids(self.client), timeout, interval=0.1)

    def actor_pid(self) -> int:
        assert self.engine.proc is not None
        return find_process(self.engine.proc.pid, "actors.queue")

    def register(self, function_id: str, handler: Any) -> None:
        self.client.register_function(function_id, handler)
        wait_for(lambda: function_id in function_ids(self.client), 10.0)

    def close(self) -> None:
        try:
            self.client.shutdown()
        finally:
            self.engine.stop()


@pytest.fixture
def queue_engine(tmp_path: Path) -> Iterator[Callable[..., QueueDeployment]]:
    """``queue_engine({...iii-queue block...})`` → an engine with the queue actor ready."""
    made: list[QueueDeployment] = []

    def make(
        block: dict[str, Any] | None, *, supervise: dict[str, Any] | None = None
    ) -> QueueDeployment:
        tmp = tmp_path / f"engine{len(made)}"
        tmp.mkdir()
        entry: dict[str, Any] = {"name": "iii-queue", "config": block or {}}
        if supervise:
            entry["supervise"] = supervise
        engine = EngineProcess({"workers": [entry]}, tmp).start()
        deployment = QueueDeployment(engine)
        made.append(deployment)
        deployment.wait_ready()
        return deployment

    yield make
    for deployment in made:
        deployment.close()


def file_block(path: Path, **queue: Any) -> dict[str, Any]:
    return {
        "adapter": {
            "name": "builtin",
            "config": {"store_method": "file_based", "file_path": str(path)},
        },
        "queue_configs": {"default": queue} if queue else {},
    }


# -- RabbitMQ: a vhost of its own per test ------------------------------------------------------


def rabbitmqctl(*args: str, timeout: float = 60.0) -> str:
    out = subprocess.run(
        ["rabbitmqctl", *args], capture_output=True, text=True, timeout=timeout, check=True
    )
    return out.stdout


@pytest.fixture
def vhost() -> Iterator[str]:
    """A vhost per test: queues declared classic by one test never clash with quorum ones.
    Tests ask for it before ``queue_engine``, so the engine stops before the vhost goes."""
    require_service("rabbitmq", 5672)
    if shutil.which("rabbitmqctl") is None:
        pytest.skip("rabbitmqctl is not installed (needed for a test vhost)")
    name = f"iii-test-{uuid.uuid4().hex[:8]}"
    rabbitmqctl("add_vhost", name)
    rabbitmqctl("set_permissions", "-p", name, "guest", ".*", ".*", ".*")
    try:
        yield name
    finally:
        rabbitmqctl("delete_vhost", name)


def rabbit_block(vhost: str, queues: dict[str, Any], **adapter: Any) -> dict[str, Any]:
    return {
        "adapter": {
            "name": "rabbitmq",
            "config": {"amqp_url": f"amqp://guest:guest@127.0.0.1:5672/{vhost}", **adapter},
        },
        "queue_configs": queues,
    }
