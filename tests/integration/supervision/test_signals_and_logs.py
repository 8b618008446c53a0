"""`iii-supervisor signal NAME SIG` reaches the worker; SIGUSR1 makes the supervisor reopen
worker log files after an external logrotate moved them (SUPERVISOR.md §17.8, §15.3)."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from pathlib import Path

from tests.integration.supervision.conftest import Up, command_worker, wait_for

UpFactory = Callable[..., Up]

CHATTY = "trap 'echo got-hup' HUP; while :; do echo tick; sleep 0.1; done"


def log_file(up: Up, name: str) -> Path:
    return Path(up.status(name)["log"]["file"])


def test_signal_command_reaches_the_worker(up_factory: UpFactory) -> None:
    up = up_factory([command_worker("chatty", CHATTY)]).start()
    up.wait_state("chatty", "ready")
    done = up.cli("signal", "chatty", "HUP")
    assert done.returncode == 0, done.stderr
    wait_for(lambda: "got-hup" in log_file(up, "chatty").read_text(errors="replace"), 10)
    assert up.status("chatty")["state"] == "ready"  # a HUP is not a crash


def test_sigusr1_reopens_log_files_moved_away(up_factory: UpFactory) -> None:
    up = up_factory([command_worker("chatty", CHATTY)]).start()
    up.wait_state("chatty", "ready")
    path = log_file(up, "chatty")
    wait_for(lambda: path.exists() and "tick" in path.read_text(errors="replace"), 10)
    rotated = path.with_name(path.name + ".rotated")
    path.rename(rotated)
    time.sleep(0.3)
    size_after_move = rotated.stat().st_size
    up.signal(signal.SIGUSR1)
    wait_for(lambda: path.exists() and "tick" in path.read_text(errors="replace"), 10)
    time.sleep(0.5)
    # the moved file stops growing once the supervisor has reopened
    grown = rotated.stat().st_size - size_after_move
    assert grown < 4096, grown
