"""Engines running the iii-stream built-in as ``iii-supervisor up`` spawns it (its row in the
built-in registry), an SDK client for each, and raw WebSocket clients of port 3112."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Final

import pytest
from websockets.sync.client import ClientConnection, connect

from tests.support import EngineProcess, free_port, sdk_client, wait_for

REDIS_URL: Final = "redis://127.0.0.1:6379"
ADAPTERS: Final[dict[str, dict[str, Any]]] = {
    "memory": {"name": "kv", "config": {"store_method": "in_memory"}},
    "file_based": {"name": "kv", "config": {"store_method": "file_based", "file_path": "streams"}},
    "redis": {"name": "redis", "config": {"redis_url": REDIS_URL}},
}


def call(client: Any, function_id: str, payload: Any, timeout_ms: int = 10_000) -> Any:
    return client.trigger(
        {"function_id": function_id, "payload": payload, "timeout_ms": timeout_ms}
    )


def function_ids(client: Any) -> set[str]:
    result = client.trigger({"function_id": "engine::functions::list", "payload": {}})
    return {f["function_id"] for f in result["functions"]}


class StreamEngine:
    """One supervisor with iii-stream, the SDK client of the test, and the stream port."""

    def __init__(self, engine: EngineProcess, stream_port: int) -> None:
        self.engine = engine
        self.stream_port = stream_port
        self.client = sdk_client(engine.url, "stream-test")
        wait_for(lambda: "stream::list_all" in function_ids(self.client), 30.0, interval=0.1)

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.stream_port}/"

    def ws(self, **kwargs: Any) -> ClientConnection:
        return connect(self.ws_url, open_timeout=10, **kwargs)

    def close(self) -> None:
        try:
            self.client.shutdown()
        finally:
            self.engine.stop()


@pytest.fixture
def stream_engine(tmp_path: Path) -> Iterator[Callable[..., StreamEngine]]:
    """``stream_engine(config_block_overrides)`` → a running engine with iii-stream."""
    made: list[StreamEngine] = []

    def make(**block: Any) -> StreamEngine:
        tmp = tmp_path / f"engine{len(made)}"
        tmp.mkdir()
        port = free_port()
        config = {"host": "127.0.0.1", "port": port, **block}
        engine = EngineProcess({"workers": [{"name": "iii-stream", "config": config}]}, tmp)
        engine.start()
        try:
            made.append(StreamEngine(engine, port))
        except BaseException:
            print(engine.log_text()[-5000:])
            engine.stop()
            raise
        return made[-1]

    yield make
    for item in made:
        item.close()


def receive_json(ws: ClientConnection, timeout: float = 10.0) -> Any:
    return json.loads(ws.recv(timeout=timeout))


def join(ws: ClientConnection, sub: str, stream: str, group: str, item: str | None = None) -> None:
    data = {"subscriptionId": sub, "streamName": stream, "groupId": group}
    if item is not None:
        data["id"] = item
    ws.send(json.dumps({"type": "join", "data": data}))


def events_until(ws: ClientConnection, count: int, timeout: float = 10.0) -> list[Any]:
    deadline = time.monotonic() + timeout
    out: list[Any] = []
    while len(out) < count:
        out.append(receive_json(ws, max(0.01, deadline - time.monotonic())))
    return out
