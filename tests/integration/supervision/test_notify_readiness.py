"""``readiness: notify`` (SUPERVISOR.md §7.4, §8.3): the supervisor acts as systemd for a child.

A real ``up`` runs a Python child that speaks sd_notify by hand (a datagram to
``$NOTIFY_SOCKET``), the way any systemd-aware program does.
"""

from __future__ import annotations

import os
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.integration.supervision.conftest import Up, wait_for

UpFactory = Callable[..., Up]

CHILD = r"""
import os, socket, sys, time
addr = os.environ["NOTIFY_SOCKET"]
target = "\0" + addr[1:] if addr.startswith("@") else addr
sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
def say(text):
    sock.sendto(text.encode(), target)
time.sleep(float(sys.argv[1]))          # start-up work
say("STATUS=warming caches")
time.sleep(0.5)
say("READY=1\nSTATUS=serving")
pings = int(sys.argv[2])                # then the watchdog, for a while
for _ in range(pings):
    say("WATCHDOG=1")
    time.sleep(0.1)
time.sleep(1000)                        # wedged: no more WATCHDOG=1
"""


def notify_worker(
    name: str, script: Path, delay: float, pings: int, **extra: Any
) -> dict[str, Any]:
    return {
        "name": name,
        "supervise": {
            "command": [sys.executable, str(script), str(delay), str(pings)],
            "readiness": "notify",
            "start_timeout": "20s",
            **extra,
        },
    }


def child_env(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    return dict(item.split("=", 1) for item in raw.decode().split("\0") if "=" in item)


def test_ready_only_after_ready_1_and_status_is_shown(
    up_factory: UpFactory, tmp_path: Path
) -> None:
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    up = up_factory([notify_worker("svc", script, delay=1.0, pings=10_000)])
    up.start()
    early = wait_for(lambda: (w := up.status("svc"))["pid"] and w, 10.0)
    assert early["state"] == "starting"  # alive, but it has not said READY=1
    env = child_env(early["pid"])
    assert env["NOTIFY_SOCKET"].startswith(("/", "@"))
    assert int(env["WATCHDOG_USEC"]) > 0
    warming = wait_for(lambda: (w := up.status("svc"))["notify_status"] and w, 10.0)
    assert warming["notify_status"] == "warming caches" and warming["state"] == "starting"
    ready = up.wait_state("svc", "ready")
    assert ready["notify_status"] == "serving"
    assert ready["spawns"] == 1


def test_datagrams_from_outside_the_group_are_ignored(
    up_factory: UpFactory, tmp_path: Path
) -> None:
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    up = up_factory([notify_worker("slow", script, delay=30.0, pings=0)])
    up.start()
    pid = wait_for(lambda: up.status("slow")["pid"], 10.0)
    address = child_env(pid)["NOTIFY_SOCKET"]
    target = "\0" + address[1:] if address.startswith("@") else address
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:  # this test is no child
        sock.sendto(b"READY=1\nSTATUS=forged", target)
    time.sleep(1.0)
    w = up.status("slow")
    assert w["state"] == "starting" and w["notify_status"] is None
    assert '"notify.rejected"' in up.log_text()


def test_missing_watchdog_pings_kill_and_restart(up_factory: UpFactory, tmp_path: Path) -> None:
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    up = up_factory(
        [
            notify_worker(
                "wedge",
                script,
                delay=0.1,
                pings=5,
                health={"interval": "200ms", "timeout": "1s", "kill_grace": "200ms"},
                backoff={"initial": "100ms"},
            )
        ]
    )
    up.start()
    up.wait_state("wedge", "ready")
    after = wait_for(lambda: (w := up.status("wedge"))["restarts"] >= 1 and w, 15.0)
    assert after["last_exit"]["cause"] == "health_timeout"
    assert '"worker.watchdog_missed"' in up.log_text()


def test_notify_socket_is_removed_after_the_child(up_factory: UpFactory, tmp_path: Path) -> None:
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    up = up_factory([notify_worker("gone", script, delay=0.1, pings=10_000)])
    up.start()
    ready = up.wait_state("gone", "ready")
    address = child_env(ready["pid"])["NOTIFY_SOCKET"]
    assert up.cli("stop", "gone").returncode == 0
    up.wait_state("gone", "stopped")
    if address.startswith("/"):
        assert not os.path.exists(address)
