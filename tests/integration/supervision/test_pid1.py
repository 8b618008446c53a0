"""SUPERVISOR.md §17.8 "PID 1 reaping": ``up`` as PID 1 of a fresh PID namespace (as in a
container) with a worker that double-forks short-lived grandchildren: no zombie is left.

The keeper is a subreaper, so the orphaned grandchildren are reparented to it and reaped
there; nothing reaches PID 1. Skipped where ``unshare --pid`` is not permitted.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.support import REPO, free_port

DOUBLE_FORKER = r"""
import os, time
for _ in range(50):
    if os.fork() == 0:          # child
        if os.fork() == 0:      # grandchild: outlives its parent briefly, then exits
            time.sleep(0.05)
            os._exit(0)
        os._exit(0)             # child exits at once: the grandchild is orphaned
    os.wait()
print("forked", flush=True)
while True:
    time.sleep(1)
"""

SCAN = r"""
import os, time
time.sleep(2.5)
zombies = []
for pid in os.listdir("/proc"):
    if pid.isdigit():
        try:
            stat = open(f"/proc/{pid}/stat").read()
        except OSError:
            continue
        if stat[stat.rfind(")") + 2] == "Z":
            zombies.append(stat[: stat.rfind(")") + 1])
print("ZOMBIES", zombies, flush=True)
os.kill(1, 15)  # PID 1 is the supervisor: ask it to stop
while True:
    time.sleep(1)
"""


def test_no_zombies_with_the_supervisor_as_pid_1(tmp_path: Path) -> None:
    unshare = shutil.which("unshare")
    if (
        unshare is None
        or subprocess.run(
            [unshare, "--pid", "--fork", "--mount-proc", "true"], capture_output=True
        ).returncode
        != 0
    ):
        pytest.skip("unshare --pid is not permitted here")
    script = tmp_path / "forker.py"
    script.write_text(DOUBLE_FORKER)
    scan = tmp_path / "scan.py"
    scan.write_text(SCAN)
    config = {
        "workers": [
            {"name": "iii-worker-manager", "config": {"host": "127.0.0.1", "port": free_port()}},
            {
                "name": "forker",
                "supervise": {
                    "command": [sys.executable, str(script)],
                    "readiness": "process",
                    "min_uptime": "200ms",
                },
            },
            {
                "name": "scanner",
                "supervise": {
                    "command": [sys.executable, str(scan)],
                    "readiness": "process",
                    "min_uptime": "200ms",
                },
            },
        ]
    }
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    # PID 1 in the namespace is the supervisor itself (exec); the scanner is one of its
    # workers, and asks it to stop once it has looked.
    inner = (
        f"exec {sys.executable} -m supervisor.cli --log-format json up "
        f"-c {tmp_path / 'config.yaml'} --state-dir {tmp_path / 'state'} "
        f"--socket {tmp_path / 'ctl.sock'} > {tmp_path / 'up.log'} 2>&1"
    )
    started = time.monotonic()
    done = subprocess.run(
        # --kill-child: should this test time out, the namespace (all of it) dies with it
        [unshare, "--pid", "--fork", "--kill-child", "--mount-proc", "sh", "-c", inner],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert time.monotonic() - started < 60
    log = (tmp_path / "up.log").read_text()
    assert done.returncode == 0, log[-3000:]
    assert "forked" in log
    assert "ZOMBIES []" in log, log[-3000:]
