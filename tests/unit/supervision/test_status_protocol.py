"""Status socket framing (sans-io) and a real socket served with a fake control."""

from __future__ import annotations

import json
import socket
import stat
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import trio

from supervisor.status.client import ClientError, StatusClient
from supervisor.status.protocol import (
    MAX_REQUEST,
    LineReader,
    ProtocolError,
    RequestTooLarge,
    parse_duration,
    parse_request,
)
from supervisor.status.server import SocketInUse, StatusServer


def test_line_reader_splits_and_caps() -> None:
    r = LineReader()
    assert r.feed(b'{"cmd":"a"}\n{"cm') == [b'{"cmd":"a"}']
    assert r.feed(b'd":"b"}\r\n') == [b'{"cmd":"b"}\r']
    with pytest.raises(RequestTooLarge):
        LineReader().feed(b"x" * (MAX_REQUEST + 1))
    with pytest.raises(RequestTooLarge):
        LineReader().feed(b"x" * (MAX_REQUEST + 1) + b"\n")
    assert LineReader().feed(b"x" * MAX_REQUEST + b"\n")  # exactly the cap is fine


def test_parse_request() -> None:
    req = parse_request(b'  {"id": 7, "cmd": "status", "args": {"names": ["a"]}}\r')
    assert req is not None and (req.id, req.cmd, req.args) == (7, "status", {"names": ["a"]})
    assert parse_request(b"   ") is None
    for bad in (b"garbage", b"[1,2]", b'{"id":1}', b'{"cmd":"x","args":[1]}'):
        with pytest.raises(ProtocolError) as info:
            parse_request(bad)
        assert info.value.code == "BAD_REQUEST"
    with pytest.raises(ProtocolError) as info:
        parse_request(b'{"id": "q", "cmd": 3}')
    assert info.value.request_id == "q"


def test_parse_duration() -> None:
    assert parse_duration("30s") == 30.0
    assert parse_duration("500ms") == 0.5
    assert parse_duration("2m") == 120.0
    assert parse_duration(1.5) == 1.5
    assert parse_duration(None) is None
    with pytest.raises(ProtocolError):
        parse_duration("soon")


class FakeManager:
    def __init__(self) -> None:
        self.history: list[dict[str, Any]] = []
        self.controllers: dict[str, Any] = {}


class FakeControl:
    version = "0.0.test"
    pid = 4242

    def __init__(self) -> None:
        self.manager = FakeManager()
        self.shutdowns = 0
        self.remote_asked = False

    @property
    def shutting_down(self) -> bool:
        return self.shutdowns > 0

    def uptime(self) -> float:
        return 1.5

    def status_document(
        self, names: Sequence[str] | None, *, remote_rows: bool = False
    ) -> dict[str, Any]:
        self.remote_asked = remote_rows
        doc: dict[str, Any] = {"supervisor": {"pid": self.pid}, "workers": []}
        if remote_rows:
            doc["remote"] = []
        return doc

    async def reload(self) -> dict[str, Any]:
        raise ProtocolError("CONFIG_INVALID", "bad", details={"errors": ["x: bad"]})

    def request_shutdown(self, within: float | None = None) -> list[str]:
        self.shutdowns += 1
        return ["a"]

    def check(self, path: str | None) -> dict[str, Any]:
        return {"valid": True, "errors": [], "warnings": []}


@pytest.fixture
async def served(tmp_path: Path, nursery: trio.Nursery) -> tuple[Path, FakeControl]:
    path = tmp_path / "run" / "control.sock"
    control = FakeControl()
    server = StatusServer(path, control)  # type: ignore[arg-type]
    server.bind()
    await nursery.start(server.serve)
    return path, control


def _raw(path: Path) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(5)
    s.connect(str(path))
    return s


def _lines(s: socket.socket, n: int) -> list[dict[str, Any]]:
    buf = b""
    while buf.count(b"\n") < n:
        chunk = s.recv(65536)
        if not chunk:
            break
        buf += chunk
    return [json.loads(x) for x in buf.splitlines()[:n]]


async def test_socket_mode_and_hello(served: tuple[Path, FakeControl]) -> None:
    path, _ = served
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700

    def talk() -> Any:
        with StatusClient(path) as c:
            return c.request("hello"), c.request("ping")

    hello, ping = await trio.to_thread.run_sync(talk)
    assert hello["protocol"] == 1 and hello["pid"] == 4242
    assert {"status", "restart", "logs", "events", "shutdown"} <= set(hello["commands"])
    assert ping == {"pong": True, "uptime_s": 1.5}


async def test_garbage_then_a_good_request_on_one_connection(
    served: tuple[Path, FakeControl],
) -> None:
    path, _ = served

    def talk() -> list[dict[str, Any]]:
        s = _raw(path)
        s.sendall(b'this is not json\n{"id": 2, "cmd": "ping"}\n{"id": 3, "cmd": "frobnicate"}\n')
        out = _lines(s, 3)
        s.close()
        return out

    bad, good, unknown = await trio.to_thread.run_sync(talk)
    assert bad["ok"] is False and bad["error"]["code"] == "BAD_REQUEST"
    assert good == {"id": 2, "ok": True, "result": {"pong": True, "uptime_s": 1.5}}
    assert unknown["error"]["code"] == "UNKNOWN_COMMAND"


async def test_oversized_request_is_refused_and_closed(served: tuple[Path, FakeControl]) -> None:
    path, _ = served

    def talk() -> tuple[dict[str, Any], bytes]:
        s = _raw(path)
        try:
            s.sendall(b"x" * (70 * 1024))
        except OSError:
            pass
        reply = _lines(s, 1)[0]
        rest = s.recv(100)  # closed by the server
        s.close()
        return reply, rest

    reply, rest = await trio.to_thread.run_sync(talk)
    assert reply["error"]["code"] == "REQUEST_TOO_LARGE"
    assert rest == b""


async def test_errors_carry_details_and_shutdown_blocks_mutations(
    served: tuple[Path, FakeControl],
) -> None:
    path, control = served

    def talk() -> tuple[Any, Any, Any]:
        with StatusClient(path) as c:
            with pytest.raises(ClientError) as reload_err:
                c.request("reload")
            stopping = c.request("shutdown")
            with pytest.raises(ClientError) as later:
                c.request("restart", {"names": ["a"]})
            return reload_err.value, stopping, later.value

    reload_err, stopping, later = await trio.to_thread.run_sync(talk)
    assert reload_err.code == "CONFIG_INVALID" and reload_err.details == {"errors": ["x: bad"]}
    assert stopping == {"stopping": ["a"]}
    assert later.code == "SHUTTING_DOWN"


async def test_non_owner_peer_gets_read_only(
    served: tuple[Path, FakeControl], monkeypatch: pytest.MonkeyPatch
) -> None:
    path, _ = served
    import supervisor.status.server as server_mod

    monkeypatch.setattr(server_mod, "_peer", lambda stream: server_mod.Peer(1, 65534, 65534))

    def talk() -> tuple[Any, Any]:
        with StatusClient(path) as c:
            status = c.request("status")
            with pytest.raises(ClientError) as denied:
                c.request("restart", {"names": ["a"]})
            return status, denied.value

    status, denied = await trio.to_thread.run_sync(talk)
    assert status["supervisor"]["pid"] == 4242
    assert denied.code == "PERMISSION_DENIED"


async def test_status_remote_flag_reaches_the_document(served: tuple[Path, FakeControl]) -> None:
    path, control = served

    def talk() -> tuple[Any, Any]:
        with StatusClient(path) as c:
            return c.request("status"), c.request("status", {"remote": True})

    plain, remote = await trio.to_thread.run_sync(talk)
    assert "remote" not in plain and remote["remote"] == []
    assert control.remote_asked is True


async def test_second_server_on_a_live_socket_is_refused(served: tuple[Path, FakeControl]) -> None:
    path, _ = served
    other = StatusServer(path, FakeControl())  # type: ignore[arg-type]
    with pytest.raises(SocketInUse) as info:
        await trio.to_thread.run_sync(other.bind)
    assert info.value.pid == 4242


def test_stale_socket_is_replaced(tmp_path: Path) -> None:
    path = tmp_path / "stale.sock"
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(str(path))
    s.close()  # the file stays, nobody listens
    server = StatusServer(path, FakeControl())  # type: ignore[arg-type]
    server.bind()
    server.close()
    assert not path.exists()
