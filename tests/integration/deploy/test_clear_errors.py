"""What a person sees: readable console logs on a terminal (a worker's JSON record as one line),
``--log-level``/``--log-format`` before or after the verb, and each problem of a bad
``reload`` printed once."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import signal
import subprocess
import time
from pathlib import Path

import yaml

from tests.support import BIN, free_port

CLI = str(BIN / "iii-supervisor")
RECORD = {"event": "cache warmed", "level": "warning", "entries": 3, "timestamp": "x"}
# A command worker that logs one JSON record (as structlog users do) and one plain line.
ECHO = f"echo '{json.dumps(RECORD)}' >&2; echo plain line here; exec sleep 1000"


def project(tmp: Path, supervise: dict[str, object] | None = None) -> Path:
    config = tmp / "config.yaml"
    workers = [
        {"name": "iii-worker-manager", "config": {"host": "127.0.0.1", "port": free_port()}},
        {"name": "echo", "supervise": supervise or {"command": ECHO, "readiness": "process"}},
    ]
    config.write_text(yaml.safe_dump({"workers": workers}))
    return config


def env_for(tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("III_")}
    env.pop("NOTIFY_SOCKET", None)
    env.update(III_SUPERVISOR_STATE_DIR=str(tmp / "state"), III_SUPERVISOR_SOCKET=str(tmp / "s"))
    return env


def read_until(fd: int, needle: str, timeout: float = 20.0) -> str:
    seen = b""
    deadline = time.monotonic() + timeout
    while needle.encode() not in seen and time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.2)
        if ready:
            try:
                seen += os.read(fd, 65536)
            except OSError:  # the other side closed
                break
    return seen.decode(errors="replace").replace("\r\n", "\n")


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)


def test_console_on_a_tty_shows_a_workers_record_as_one_line(tmp_path: Path) -> None:
    config = project(tmp_path)
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [CLI, "up", "-c", str(config), "--log-level", "warning"],  # after the verb
        cwd=tmp_path,
        env=env_for(tmp_path),
        stdin=subprocess.DEVNULL,
        stdout=slave,
        stderr=slave,
        start_new_session=True,
    )
    os.close(slave)
    try:
        out = read_until(master, "cache warmed")
    finally:
        stop(proc)
        os.close(master)
    plain = re.sub(r"\x1b\[[0-9;]*m", "", out)  # colours: it is a terminal
    lines = [line for line in plain.splitlines() if "cache warmed" in line]
    assert len(lines) == 1, plain
    assert "[echo] cache warmed" in lines[0] and "entries=3" in lines[0], lines[0]
    assert "warning" in lines[0]
    assert "record=" not in plain and '{"event"' not in plain, plain
    # --log-level warning after the verb: no info lines.
    assert "supervisor.prepared" not in plain and "plain line here" not in plain, plain


def test_log_options_before_the_verb_and_console_without_a_tty(tmp_path: Path) -> None:
    config = project(tmp_path)
    log = tmp_path / "up.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [CLI, "--log-format", "console", "--log-level", "info", "up", "-c", str(config)],
            cwd=tmp_path,
            env=env_for(tmp_path),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 20
        while "plain line here" not in log.read_text() and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        stop(proc)
    text = log.read_text()
    assert "[echo] plain line here" in text, text
    assert "[echo] cache warmed" in text
    assert not any(line.startswith("{") for line in text.splitlines()), text


def test_a_bad_reload_prints_each_problem_once(tmp_path: Path) -> None:
    config = project(tmp_path)
    env = env_for(tmp_path)
    proc = subprocess.Popen(
        [CLI, "up", "-c", str(config), "--log-format", "json"],
        cwd=tmp_path,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 20
        while subprocess.run([CLI, "status"], env=env, capture_output=True).returncode != 0:
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.2)
        project(tmp_path, {"command": ECHO, "restrat": "always", "stop_timeout": 5})
        done = subprocess.run([CLI, "reload"], env=env, capture_output=True, text=True)
        assert done.returncode == 1, done.stdout + done.stderr
        problems = [
            "supervise.restrat: unknown key (did you mean supervise.restart?)",
            "supervise.stop_timeout: duration needs a unit",
        ]
        for problem in problems:
            assert done.stderr.count(problem) == 1, done.stderr
        assert "nothing was changed" in done.stderr
    finally:
        stop(proc)
