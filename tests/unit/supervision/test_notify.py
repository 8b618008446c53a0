"""sd_notify formatting and delivery to a real AF_UNIX datagram socket (path and abstract)."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio
import trio.testing

from supervisor.supervision.notify import Notifier, format_message, parse_address


def test_parse_address() -> None:
    assert parse_address("/run/notify") == "/run/notify"
    assert parse_address("@abc") == b"\0abc"
    assert parse_address("vsock:2:3") is None
    assert parse_address("") is None
    assert parse_address(None) is None


def test_format_message_flattens_newlines() -> None:
    assert format_message({"READY": 1, "STATUS": "a\nb"}) == b"READY=1\nSTATUS=a b\n"


@pytest.fixture(params=["path", "abstract"])
def receiver(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    if request.param == "path":
        value = str(tmp_path / "notify.sock")
        sock.bind(value)
    else:
        value = f"@iii-test-{uuid.uuid4()}"
        sock.bind(b"\0" + value[1:].encode())
    sock.settimeout(2)
    yield sock, value
    sock.close()


def test_messages_arrive(receiver: tuple[socket.socket, str]) -> None:
    sock, value = receiver
    n = Notifier.from_env({"NOTIFY_SOCKET": value})
    n.ready("ready: 2/2 workers")
    n.status("ready: 2/2 workers")  # unchanged: not sent again
    n.reloading()
    n.stopping()
    got = [sock.recv(4096).decode() for _ in range(3)]
    assert got[0] == "READY=1\nSTATUS=ready: 2/2 workers\n"
    assert got[1].startswith("RELOADING=1\nMONOTONIC_USEC=")
    assert got[2] == "STOPPING=1\nSTATUS=stopping\n"


def test_send_failure_is_not_fatal(tmp_path: Path) -> None:
    n = Notifier.from_env({"NOTIFY_SOCKET": str(tmp_path / "missing.sock")})
    assert n.send(READY=1) is False


def test_watchdog_interval_respects_watchdog_pid() -> None:
    env = {"NOTIFY_SOCKET": "/x", "WATCHDOG_USEC": "300000"}
    assert Notifier.from_env(env).watchdog_interval == pytest.approx(0.15)
    assert Notifier.from_env({**env, "WATCHDOG_PID": str(os.getpid())}).watchdog_interval
    assert Notifier.from_env({**env, "WATCHDOG_PID": "1"}).watchdog_interval is None
    assert Notifier.from_env({"NOTIFY_SOCKET": "/x"}).watchdog_interval is None


async def test_watchdog_pings_at_half_the_interval(
    autojump_clock: trio.testing.MockClock, receiver: tuple[socket.socket, str]
) -> None:
    sock, value = receiver
    sock.setblocking(False)
    n = Notifier.from_env({"NOTIFY_SOCKET": value, "WATCHDOG_USEC": "2000000"})
    healthy = [True]
    with trio.move_on_after(10.5):
        await n.watchdog_loop(lambda: healthy[0])
    pings = []
    while True:
        try:
            pings.append(sock.recv(4096))
        except BlockingIOError:
            break
    assert pings == [b"WATCHDOG=1\n"] * 10  # every 1 s over 10.5 s


async def test_watchdog_stops_when_unhealthy(
    autojump_clock: trio.testing.MockClock, receiver: tuple[socket.socket, str]
) -> None:
    sock, value = receiver
    sock.setblocking(False)
    n = Notifier.from_env({"NOTIFY_SOCKET": value, "WATCHDOG_USEC": "2000000"})
    with trio.move_on_after(5):
        await n.watchdog_loop(lambda: False)
    with pytest.raises(BlockingIOError):
        sock.recv(4096)
