"""Data channels through the engine: 5 MiB in order, end-of-stream, bad ids (§11)."""

from __future__ import annotations

import asyncio
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
import websockets
from iii import TriggerAction
from iii.helpers import create_channel
from websockets.sync.client import connect

from tests.integration.engine.conftest import wait_functions
from tests.support import EngineProcess, WorkerProcess

SIZE = 5 * 1024 * 1024

PRODUCER = """
import asyncio, hashlib, os, time
from iii import register_worker, InitOptions
w = register_worker(os.environ["III_URL"], InitOptions(worker_name="producer"))
SIZE = int(os.environ["SIZE"])
async def produce(data):
    writer = data["writer"]
    block = bytes(range(256)) * 256          # 64 KiB of a known pattern
    sent = 0
    n = 0
    while sent < SIZE:
        chunk = bytes([n % 251]) + block[1:]
        chunk = chunk[: SIZE - sent]
        await writer.write(chunk)
        sent += len(chunk)
        n += 1
    await writer.close_async()
w.register_function("stream::produce", produce)
while True:
    time.sleep(1)
"""


def expected_digest() -> str:
    block = bytes(range(256)) * 256
    h = hashlib.sha256()
    sent = n = 0
    while sent < SIZE:
        chunk = (bytes([n % 251]) + block[1:])[: SIZE - sent]
        h.update(chunk)
        sent += len(chunk)
        n += 1
    return h.hexdigest()


def test_five_mib_arrive_intact_in_order_and_end_of_stream_is_seen(
    engine: EngineProcess, tmp_path: Path, client: Any
) -> None:
    producer = WorkerProcess(PRODUCER, tmp_path, engine.url, "producer", SIZE=str(SIZE))
    try:
        wait_functions(client, "stream::produce")
        channel = create_channel(client, buffer_size=8)
        client.trigger(
            {
                "function_id": "stream::produce",
                "payload": {"writer": channel.writer_ref.model_dump()},
                "action": TriggerAction.Void(),
            }
        )
        # read_all returns only when the engine closes the reader: that is end-of-stream
        data = asyncio.run(asyncio.wait_for(channel.reader.read_all(), 30))
        assert len(data) == SIZE
        assert hashlib.sha256(data).hexdigest() == expected_digest()
    finally:
        producer.stop()


def test_text_and_binary_items_keep_their_kind_and_order(
    engine: EngineProcess, client: Any
) -> None:
    refs = client.trigger({"function_id": "engine::channels::create", "payload": {}})
    w, r = refs["writer"], refs["reader"]
    base = f"{engine.url}/ws/channels/{w['channel_id']}?key={w['access_key']}"
    with connect(base + "&dir=write") as writer:
        writer.send("hello")
        writer.send(b"\x00\x01")
        writer.send(json.dumps({"done": True}))
    with connect(base.replace("dir=write", "") + "&dir=read") as reader:
        items = [reader.recv(timeout=5) for _ in range(3)]
        with pytest.raises(websockets.ConnectionClosedOK):
            reader.recv(timeout=5)
    assert items == ["hello", b"\x00\x01", '{"done": true}']
    assert r["channel_id"] == w["channel_id"]


def test_unknown_channel_or_wrong_key_is_404(engine: EngineProcess, client: Any) -> None:
    refs = client.trigger({"function_id": "engine::channels::create", "payload": {}})
    cid = refs["reader"]["channel_id"]
    for url in (
        f"{engine.url}/ws/channels/{cid}?key=wrong&dir=read",
        f"{engine.url}/ws/channels/00000000-0000-0000-0000-000000000000?key=x&dir=read",
    ):
        with pytest.raises(websockets.InvalidStatus) as info:
            connect(url)
        assert info.value.response.status_code == 404
    with pytest.raises(websockets.InvalidStatus) as info:
        connect(f"{engine.url}/ws/channels/{cid}?key={refs['reader']['access_key']}&dir=sideways")
    assert info.value.response.status_code == 400


def test_each_side_can_be_taken_once(engine: EngineProcess, client: Any) -> None:
    refs = client.trigger({"function_id": "engine::channels::create", "payload": {}})
    r = refs["reader"]
    url = f"{engine.url}/ws/channels/{r['channel_id']}?key={r['access_key']}&dir=read"
    with connect(url):
        with connect(url) as second, pytest.raises(websockets.ConnectionClosed):
            second.recv(timeout=5)


def test_unknown_paths_are_404(engine: EngineProcess) -> None:
    with pytest.raises(websockets.InvalidStatus) as info:
        connect(f"{engine.url}/nope")
    assert info.value.response.status_code == 404
