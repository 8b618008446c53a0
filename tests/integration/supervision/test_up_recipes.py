"""SUPERVISOR.md §17 recipes against a real ``iii-supervisor up`` and its status socket.

Assertions are on order, counts, causes and lower bounds; upper bounds are only generous
polling deadlines.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from supervisor.status.client import ClientError, StatusClient
from tests.integration.supervision.conftest import (
    NotifyReceiver,
    Up,
    alive,
    command_worker,
    marked_pids,
    pgrp_of,
    wait_for,
)

UpFactory = Callable[..., Up]

FAST_BACKOFF = {"initial": "100ms", "multiplier": 2, "max": "400ms", "jitter": 0}


def test_crash_loop_backoff_intensity_failed(up_factory: UpFactory) -> None:
    """§17.1: exit 1 at once → backoff 100/200/400 ms → failed; steady is untouched."""
    up = up_factory(
        [
            command_worker(
                "crasher",
                "echo boom >&2; exit 1",
                backoff=FAST_BACKOFF,
                max_restarts=3,
                restart_window="30s",
            ),
            command_worker("steady", "sleep 1000"),
        ]
    )
    up.start()
    events: list[tuple[float, dict[str, Any]]] = []
    stop = threading.Event()

    def follow() -> None:
        with StatusClient(up.socket, timeout=20) as c:
            for ev in c.stream("events", {"names": ["crasher"]}, timeout=20):
                events.append((time.monotonic(), ev))
                if ev.get("to") == "failed" or stop.is_set():
                    return

    t = threading.Thread(target=follow, daemon=True)
    t.start()
    w = up.wait_state("crasher", "failed", timeout=10)
    t.join(5)
    stop.set()
    spawns = [ev for _, ev in events if ev.get("event") == "spawned"]
    assert w["spawns"] == 4 and w["restarts"] == 3
    assert w["last_error"]["code"] == "RESTART_INTENSITY"
    assert w["last_exit"]["code"] == 1 and w["last_exit"]["cause"] == "exited"
    assert "boom" in w["last_error"]["log_tail"]
    assert w["next_restart_at"] is None
    # gaps between one end and the next spawn, as observed on the event stream
    ends = [ts for ts, ev in events if ev.get("event") == "ended"]
    starts = [ts for ts, ev in events if ev.get("event") == "spawned"]
    if len(starts) == 4 and len(ends) == 4:  # the stream may have joined after the first spawn
        gaps = [b - a for a, b in zip(ends, starts[1:], strict=False)]
        for gap, low in zip(gaps, (0.1, 0.2, 0.4), strict=True):
            assert gap >= low * 0.95
    assert len(spawns) >= 3
    seq = [ev["to"] for _, ev in events if ev.get("event") == "transition"]
    assert seq[-1] == "failed" and "backoff" in seq
    steady = up.status("steady")
    assert steady["state"] == "ready" and steady["restarts"] == 0 and steady["spawns"] == 1
    assert up.request("ping")["pong"] is True
    assert up.status()["supervisor"]["state"] == "degraded"
    assert up.cli("status", "crasher").returncode == 3
    # restart clears failed and starts at once, then it fails again
    t0 = time.monotonic()
    up.request("restart", {"names": ["crasher"], "wait": False})
    wait_for(lambda: up.status("crasher")["spawns"] >= 5, 5)
    assert time.monotonic() - t0 < 5
    up.wait_state("crasher", "failed", timeout=10)
    # reset-failed: stopped, counters cleared, nothing spawned
    up.request("reset-failed", {"names": ["crasher"]})
    w = up.status("crasher")
    assert w["state"] == "stopped" and w["restarts_in_window"] == 0
    spawns_now = w["spawns"]
    time.sleep(0.5)
    assert up.status("crasher")["spawns"] == spawns_now


def test_start_command_not_found_and_spawn_error(up_factory: UpFactory, tmp_path: Path) -> None:
    """§17.6: 127 from the shell, ENOENT from a direct exec; neither is retried."""
    late = tmp_path / "bin" / "late-worker"
    up = up_factory(
        [
            command_worker("ghost", 'definitely-not-a-command --port "$PORT"'),
            command_worker("ghost2", str(late)),
            command_worker("ok", "sleep 1000"),
        ]
    )
    up.start()
    up.wait_state("ok", "ready")
    ghost = up.wait_state("ghost", "failed")
    assert ghost["restarts"] == 0 and ghost["spawns"] == 1
    assert ghost["last_error"]["code"] == "START_COMMAND_NOT_FOUND"
    assert "ghost" in ghost["last_error"]["message"]
    assert "definitely-not-a-command" in ghost["last_error"]["message"]
    assert any("not found" in line for line in ghost["last_error"]["log_tail"])
    ghost2 = up.wait_state("ghost2", "failed")
    assert ghost2["restarts"] == 0
    assert ghost2["last_exit"]["cause"] == "spawn_error"
    assert ghost2["last_error"]["code"] == "SPAWN_FAILED"
    assert (
        "ENOENT" in ghost2["last_error"]["message"] and str(late) in ghost2["last_error"]["message"]
    )
    assert up.status()["supervisor"]["state"] == "degraded"
    assert up.cli("status", "ghost").returncode == 3
    time.sleep(0.5)
    assert up.status("ghost")["spawns"] == 1
    # Then: the command appears; `start ghost2` makes it ready.
    late.parent.mkdir()
    late.write_text("#!/bin/sh\nexec sleep 1000\n")
    late.chmod(0o755)
    result = up.cli("start", "ghost2")
    assert result.returncode == 0, result.stderr
    assert up.status("ghost2")["state"] == "ready"


def test_sigkill_of_the_supervisor_leaves_no_process(up_factory: UpFactory) -> None:
    """§17.4: every worker tree, including a `setsid` escapee, is gone within 5 s."""
    up = up_factory(
        [
            command_worker("plain", "sleep 1000"),
            command_worker("tree", "sleep 1000 & sleep 1000 & setsid sleep 1000 & wait"),
        ]
    )
    up.start()
    for name in ("plain", "tree"):
        up.wait_state(name, "ready")
    doc = up.status()
    pgids = {w["pgid"] for w in doc["workers"] if w["pgid"]}
    before = marked_pids(up.marker)
    assert len(before) >= 1 + 2 + 1 + 4  # supervisor, 2 keepers, sleep, sh + 3 sleeps
    escaped = [p for p in before if pgrp_of(p) not in pgids and p != up.proc.pid]  # type: ignore[union-attr]
    assert escaped, "the setsid sleeper should have left the group"
    os.kill(up.proc.pid, signal.SIGKILL)  # type: ignore[union-attr]
    up.proc.wait(5)  # type: ignore[union-attr]

    # A process in the middle of exiting has already dropped its environment (so the marker
    # scan misses it) but is not yet a zombie: wait for both views to agree it is gone.
    def lingering() -> list[int]:
        in_groups = [pid for pid in before if alive(pid) and pgrp_of(pid) in pgids]
        return sorted(set(marked_pids(up.marker)) | set(in_groups))

    try:
        wait_for(lambda: not lingering(), 5.0)
    except TimeoutError:
        pytest.fail(f"still alive 5 s after the supervisor's SIGKILL: {lingering()}")
    # A new `up` on the same state directory and socket starts cleanly.
    again = Up(up.tmp, up.workers, label="again")
    again.marker = up.marker
    again.env["III_TEST_RUN"] = up.marker
    again.port = up.port
    again.start()
    try:
        again.wait_state("plain", "ready")
        swept = again.log_events("supervisor.orphans_swept")
        assert swept == [] or swept[0]["pids"] == []
    finally:
        assert again.cleanup() == []


def test_sigterm_ordered_stop(
    up_factory: UpFactory, tmp_path: Path, notify_socket: NotifyReceiver
) -> None:
    """§17.5 (without the SDK and store parts): dependents first, stubborn SIGKILLed after its
    stop_timeout, exit 0 within the deadline, socket removed, clean state.json."""
    stoplog = tmp_path / "stoplog"
    trap = "trap 'echo {n} stopped >> \"$STOPLOG\"; sleep 0.3; exit 0' TERM; while :; do sleep 0.1; done"
    up = up_factory(
        [
            command_worker("a", trap.format(n="a")),
            command_worker("b", trap.format(n="b"), depends_on=["a"]),
            command_worker("c", trap.format(n="c")),
            command_worker(
                "stubborn", "trap '' TERM; while :; do sleep 0.1; done", stop_timeout="1s"
            ),
        ],
        env={"STOPLOG": str(stoplog), "NOTIFY_SOCKET": str(notify_socket.path)},
        extra_args=["--shutdown-timeout", "15s"],
    )
    up.start()
    for name in ("a", "b", "c", "stubborn"):
        up.wait_state(name, "ready")
    t0 = time.monotonic()
    up.signal(signal.SIGTERM)
    code = up.wait_exit(20)
    elapsed = time.monotonic() - t0
    assert code == 0
    assert elapsed < 15 + 5
    lines = stoplog.read_text().split()
    order = [lines[i] for i in range(0, len(lines), 2)]
    assert order.index("b") < order.index("a")
    ended = {e["worker"]: e for e in up.log_events("worker.ended")}
    assert ended["stubborn"]["signal_name"] == "SIGKILL"
    stopping = {e["worker"]: e for e in up.log_events("worker.stopping")}
    stopped = {e["worker"]: e for e in up.log_events("worker.stopped")}
    assert stopped["stubborn"]["timestamp"] > stopping["stubborn"]["timestamp"]
    assert notify_socket.find("STOPPING=1")
    assert not up.socket.exists()
    state = json.loads((up.state_dir / "state.json").read_text())
    assert state["clean_shutdown"] is True
    wait_for(lambda: not marked_pids(up.marker), 5.0)


def test_second_sigterm_forces_exit_1(up_factory: UpFactory) -> None:
    up = up_factory(
        [
            command_worker(
                "stubborn", "trap '' TERM; while :; do sleep 0.1; done", stop_timeout="30s"
            )
        ],
        extra_args=["--shutdown-timeout", "60s"],
    )
    up.start()
    up.wait_state("stubborn", "ready")
    up.signal(signal.SIGTERM)
    time.sleep(0.2)
    t0 = time.monotonic()
    up.signal(signal.SIGTERM)
    assert up.wait_exit(10) == 1
    assert time.monotonic() - t0 < 2.5
    wait_for(lambda: not marked_pids(up.marker), 5.0)


def test_second_instance_exits_1_naming_the_pid(up_factory: UpFactory) -> None:
    up = up_factory([command_worker("w", "sleep 1000")])
    up.start()
    up.wait_state("w", "ready")
    pid_before = up.status("w")["pid"]
    second = Up(up.tmp, up.workers, label="second")
    second.port = up.port
    second.marker = up.marker
    second.env["III_TEST_RUN"] = up.marker
    second.start(wait=False)
    assert second.proc is not None
    assert second.proc.wait(15) == 1
    assert str(up.proc.pid) in second.log_text()  # type: ignore[union-attr]
    assert up.status("w")["pid"] == pid_before
    assert up.request("ping")["pong"]


def test_status_json_restart_and_logs(up_factory: UpFactory, tmp_path: Path) -> None:
    """status --json fields and exit codes, `restart NAME` touches only NAME, `logs NAME`."""
    script = tmp_path / "talker.py"
    script.write_text(
        "import sys, time\n"
        "print('hello from talker', flush=True)\n"
        "print('x' * 40000, flush=True)\n"
        "print('é' * 3 + ' done', file=sys.stderr, flush=True)\n"
        "time.sleep(1000)\n"
    )
    up = up_factory(
        [
            command_worker("talker", f"{os.sys.executable} {script}"),  # type: ignore[attr-defined]
            command_worker("other", "sleep 1000"),
            command_worker("off", "sleep 1000", autostart=False),
        ]
    )
    up.start(only=["talker", "other"])
    up.wait_state("talker", "ready")
    up.wait_state("other", "ready")
    result = up.cli("status", "--json", "talker", "other")
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    sup = doc["supervisor"]
    for key in ("version", "pid", "started_at", "uptime_s", "state", "state_dir", "bus", "counts"):
        assert key in sup
    w = doc["workers"][0]
    for key in (
        "name", "kind", "command", "working_dir", "state", "phase", "desired", "since",
        "health", "pid", "keeper_pid", "pgid", "started_at", "ready_at", "uptime_s",
        "restarts", "consecutive_failures", "restarts_in_window", "next_restart_at",
        "last_exit", "last_error", "resources", "policy", "log",
    ):  # fmt: skip
        assert key in w, key
    assert w["kind"] == "command" and w["state"] == "ready" and w["pid"] != w["keeper_pid"]
    assert w["pgid"] == w["keeper_pid"] == pgrp_of(w["pid"])
    assert w["policy"]["restart"] == "always"
    table = up.cli("status")
    assert "talker" in table.stdout and "READY" in table.stdout
    assert up.cli("status", "off").returncode == 3
    assert up.cli("status", "nope").returncode == 4
    # logs: last lines intact, the 40000-char line split at 16 KiB, marked truncated
    wait_for(
        lambda: any(
            "done" in r["line"] for r in up.request("logs", {"name": "talker", "tail": 10})["lines"]
        ),
        5,
    )
    lines = up.request("logs", {"name": "talker", "tail": 10})["lines"]
    texts = [r["line"] for r in lines if r["stream"] != "supervisor"]
    assert "hello from talker" in texts
    assert "ééé done" in texts
    long = [r for r in lines if r["line"].startswith("xxx")]
    assert "".join(r["line"] for r in long) == "x" * 40000
    assert [r.get("truncated", False) for r in long] == [True, True, False]
    cli_logs = up.cli("logs", "talker", "-n", "10")  # stdout and stderr interleave freely
    assert cli_logs.returncode == 0 and "ééé done" in cli_logs.stdout
    # restart NAME restarts just that worker
    t_pid, o_pid = up.status("talker")["pid"], up.status("other")["pid"]
    result = up.cli("restart", "talker")
    assert result.returncode == 0, result.stderr
    assert up.status("talker")["pid"] != t_pid
    assert up.status("other")["pid"] == o_pid
    assert up.status("talker")["last_exit"]["cause"] == "requested"
    assert not alive(t_pid)


def test_concurrent_restarts_cause_one_restart(up_factory: UpFactory) -> None:
    up = up_factory([command_worker("w", "sleep 1000")])
    up.start()
    up.wait_state("w", "ready")
    results: list[Any] = []

    def restart() -> None:
        results.append(up.request("restart", {"names": ["w"]}, timeout=20))

    threads = [threading.Thread(target=restart) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert len(results) == 2
    assert up.status("w")["spawns"] == 2


def test_notify_ready_only_after_workers_and_watchdog(
    up_factory: UpFactory, notify_socket: NotifyReceiver
) -> None:
    """§17.8 sd_notify: READY=1 after every autostart worker is ready, WATCHDOG=1 at half the
    interval, no child sees NOTIFY_SOCKET, SIGHUP gives RELOADING=1 then READY=1."""
    up = up_factory(
        [
            command_worker("quick", "sleep 1000"),
            command_worker("slow", "sleep 1000", min_uptime="1500ms"),
        ],
        env={"NOTIFY_SOCKET": str(notify_socket.path), "WATCHDOG_USEC": "300000"},
    )
    t0 = time.monotonic()
    up.start()
    ready = wait_for(lambda: notify_socket.find("READY=1"), 10)
    assert ready[0][0] - t0 >= 1.5
    assert up.status("slow")["state"] == "ready"
    assert "ready: 2/2 workers" in ready[0][1]
    time.sleep(2.0)
    pings = [t for t, m in notify_socket.find("WATCHDOG=1") if t > ready[0][0]]
    assert len(pings) >= 3
    gaps = [b - a for a, b in zip(pings, pings[1:], strict=False)]
    assert min(gaps) > 0.1  # about 150 ms apart, not a burst
    for w in [w for w in up.status()["workers"] if w["pid"]]:
        env = Path(f"/proc/{w['pid']}/environ").read_bytes().split(b"\0")
        assert not any(e.startswith(b"NOTIFY_SOCKET=") for e in env)
        assert not any(e.startswith(b"WATCHDOG_USEC=") for e in env)
    # reload through SIGHUP
    count = len(notify_socket.find("READY=1"))
    up.signal(signal.SIGHUP)
    wait_for(lambda: len(notify_socket.find("READY=1")) > count, 10)
    msgs = [m for _, m in notify_socket.drain()]
    reloading = next(i for i, m in enumerate(msgs) if "RELOADING=1" in m)
    assert "MONOTONIC_USEC=" in msgs[reloading]
    assert any("READY=1" in m for m in msgs[reloading + 1 :])


def test_watchdog_pid_of_another_process_sends_nothing(
    up_factory: UpFactory, notify_socket: NotifyReceiver
) -> None:
    up = up_factory(
        [command_worker("w", "sleep 1000")],
        env={
            "NOTIFY_SOCKET": str(notify_socket.path),
            "WATCHDOG_USEC": "300000",
            "WATCHDOG_PID": "1",
        },
    )
    up.start()
    wait_for(lambda: notify_socket.find("READY=1"), 10)
    time.sleep(1.0)
    assert notify_socket.find("WATCHDOG=1") == []


def test_critical_worker_failure_exits_69(up_factory: UpFactory) -> None:
    up = up_factory(
        [
            command_worker("core", "exit 3", critical=True, max_restarts=1, backoff=FAST_BACKOFF),
            command_worker("bystander", "sleep 1000"),
        ]
    )
    up.start(wait=False)
    assert up.proc is not None
    assert up.proc.wait(20) == 69
    wait_for(lambda: not marked_pids(up.marker), 5.0)


def test_invalid_reload_changes_nothing(up_factory: UpFactory) -> None:
    up = up_factory([command_worker("w", "sleep 1000")])
    up.start()
    pid = up.wait_state("w", "ready")["pid"]
    good = up.config_path.read_text()
    up.config_path.write_text(
        good.replace("command: sleep 1000", "command: sleep 1000\n    restart: sometimes")
    )
    with pytest.raises(ClientError) as info:
        up.request("reload", timeout=20)
    assert info.value.code == "CONFIG_INVALID"
    assert "supervise.restart" in info.value.message
    assert up.status("w")["pid"] == pid
    result = up.cli("reload")
    assert result.returncode == 1 and "supervise.restart" in result.stderr
    # a valid change is applied: the changed worker restarts with the new spec
    up.config_path.write_text(good.replace("sleep 1000", "sleep 999"))
    diff = up.request("reload", timeout=20)
    assert diff["changed"] == ["w"]
    new = up.wait_state("w", "ready")
    assert new["pid"] != pid and new["command"] == "sleep 999"


def test_status_socket_is_private(up_factory: UpFactory) -> None:
    up = up_factory([command_worker("w", "sleep 1000")])
    up.start()
    assert stat.S_IMODE(up.socket.stat().st_mode) == 0o600
    if os.geteuid() != 0:
        pytest.skip("needs root to try the socket as another uid")
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        code = 0
        try:
            os.setgid(65534)
            os.setuid(65534)
            try:
                with StatusClient(up.socket, timeout=2) as c:
                    c.request("ping")
                code = 1
            except OSError as exc:
                code = 0 if "Permission denied" in str(exc) else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.WEXITSTATUS(status) == 0


@pytest.mark.slow
def test_idle_worker_survives_30_seconds(up_factory: UpFactory) -> None:
    """The PR_SET_PDEATHSIG trap (§3.2): trio forks from a worker thread that is retired
    after ~10 s idle; nothing may tie a worker's life to that thread."""
    up = up_factory([command_worker("idle", "sleep 1000")])
    up.start()
    w = up.wait_state("idle", "ready")
    time.sleep(31)
    again = up.status("idle")
    assert again["state"] == "ready"
    assert again["pid"] == w["pid"] and alive(w["pid"])
    assert again["restarts"] == 0 and again["spawns"] == 1


def test_logs_follow_streams_new_lines(up_factory: UpFactory) -> None:
    up = up_factory(
        [command_worker("ticker", "i=0; while :; do i=$((i+1)); echo tick $i; sleep 0.1; done")]
    )
    up.start()
    up.wait_state("ticker", "ready")
    seen: list[str] = []
    with StatusClient(up.socket, timeout=10) as c:
        for ev in c.stream("logs", {"name": "ticker", "tail": 1, "follow": True}, timeout=10):
            seen.append(ev["line"])
            if len(seen) >= 6:
                break
    numbers = [int(s.split()[1]) for s in seen if s.startswith("tick ")]
    assert len(numbers) >= 5 and numbers == sorted(numbers)
    assert up.request("ping")["pong"]  # the server noticed the client leaving


def test_check_cli_reports_and_exits(up_factory: UpFactory) -> None:
    up = up_factory([command_worker("w", "sleep 1000")])
    ok = up.cli("check", "--json")
    assert ok.returncode == 0 and json.loads(ok.stdout)["valid"] is True
    up.config_path.write_text(
        up.config_path.read_text().replace(
            "command: sleep 1000", "command: sleep 1000\n    stop_timeout: 30"
        )
    )
    bad = up.cli("check", "--json")
    report = json.loads(bad.stdout)
    assert bad.returncode == 1 and report["valid"] is False
    assert any("stop_timeout" in e["path"] for e in report["errors"])
    up.start(wait=False)
    assert up.proc is not None and up.proc.wait(15) == 78
    assert not up.socket.exists()


def test_bus_port_in_use_exits_73(up_factory: UpFactory) -> None:
    import socket as socketlib

    up = up_factory([command_worker("w", "sleep 1000")])
    holder = socketlib.socket()
    holder.setsockopt(socketlib.SOL_SOCKET, socketlib.SO_REUSEADDR, 1)
    holder.bind(("127.0.0.1", up.port))
    holder.listen(1)
    try:
        up.start(wait=False)
        assert up.proc is not None and up.proc.wait(15) == 73
    finally:
        holder.close()
    assert not up.socket.exists()
    assert not marked_pids(up.marker)
