"""The README's "first function in five minutes", run word for word against ``up``.

Each step of the guide (``tests/integration/guide/readme.py`` reads them from README.md)
runs in bash in a fresh folder, in order: the venv and ``pip install``, the files, ``up`` in
the background, the curls and the CLI verbs, whose output must match the README's. The only
changes are the ports (free ones instead of 49134 and 3111, so parallel runs do not
collide) and a private state directory. The Node part runs where ``node`` and ``npm`` exist.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.guide import readme
from tests.support import BIN, free_port

STEP_TIMEOUT = 240.0  # pip/npm install on a cold cache
READY_TIMEOUT = 60.0
EVENTUALLY = 20.0


class GuideRun:
    """One reader following the guide: a shell in ``cwd``, ``up`` in the background."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.cwd = home
        self.ports = {"49134": str(free_port()), "3111": str(free_port())}
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("III_")},
            "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
            "III_SUPERVISOR_STATE_DIR": str(home / "state"),
        }
        for key in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "VIRTUAL_ENV"):
            self.env.pop(key, None)
        self.up: subprocess.Popen[bytes] | None = None
        self.up_log = home / "up.log"
        self.last: subprocess.CompletedProcess[str] | None = None

    def localize(self, text: str) -> str:
        for default, port in self.ports.items():
            text = re.sub(rf"\b{default}\b", port, text)
        return text

    def shell(self, script: str) -> subprocess.CompletedProcess[str]:
        where = self.home / ".cwd"
        done = subprocess.run(
            ["bash", "-e", "-c", f"{script}\npwd > {where}"],
            cwd=self.cwd,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=STEP_TIMEOUT,
            stdin=subprocess.DEVNULL,
        )
        if done.returncode == 0:
            self.cwd = Path(where.read_text().strip())
        return done

    def context(self) -> str:
        tail = self.up_log.read_text(errors="replace")[-3000:] if self.up_log.exists() else ""
        return f"\n--- up log (tail) ---\n{tail}"

    def run(self, steps: tuple[readme.Step, ...]) -> None:
        for index, step in enumerate(steps):
            following = steps[index + 1] if index + 1 < len(steps) else None
            expected = following if following and following.kind == "output" else None
            if step.kind == "file":
                assert step.arg, f"README.md:{step.line}: guide:file needs a name"
                (self.cwd / step.arg).write_text(self.localize(step.text))
            elif step.kind == "background":
                self.start_up(step)
            elif step.kind == "run":
                self.run_commands(step, expected)

    def run_commands(self, step: readme.Step, expected: readme.Step | None) -> None:
        script = self.localize(step.text)
        deadline = time.monotonic() + (EVENTUALLY if step.arg == "eventually" else 0.0)
        while True:
            done = self.last = self.shell(script)
            ok = done.returncode == 0 and (
                expected is None or readme.matches(expected, done.stdout)
            )
            if ok or time.monotonic() > deadline:
                break
            time.sleep(0.25)
        assert done.returncode == 0, (
            f"README.md:{step.line}: `{step.text.strip()}` exited {done.returncode}\n"
            f"{done.stdout}{done.stderr}{self.context()}"
        )
        if expected is not None:
            assert readme.matches(expected, done.stdout), (
                f"README.md:{expected.line}: `{step.text.strip()}` printed\n{done.stdout}\n"
                f"the README shows\n{expected.text}{self.context()}"
            )

    def start_up(self, step: readme.Step) -> None:
        assert self.up is None, f"README.md:{step.line}: a second background command"
        with open(self.up_log, "ab") as log:
            self.up = subprocess.Popen(
                ["bash", "-c", "exec " + self.localize(step.text).strip()],
                cwd=self.cwd,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        # A reader looks at the terminal until the workers are up; `status` exits 0 then.
        deadline = time.monotonic() + READY_TIMEOUT
        while True:
            if self.up.poll() is not None:
                raise AssertionError(f"`up` exited {self.up.returncode}{self.context()}")
            probe = subprocess.run(
                [str(BIN / "iii-supervisor"), "status"],
                cwd=self.cwd,
                env=self.env,
                capture_output=True,
                text=True,
                timeout=10,
            )
            if probe.returncode == 0:
                return
            if " FAILED " in probe.stdout or time.monotonic() > deadline:
                raise AssertionError(f"not ready:\n{probe.stdout}{self.context()}")
            time.sleep(0.25)

    def finish(self) -> int | None:
        """The guide ends with `shutdown`: `up` must then exit by itself, cleanly."""
        if self.up is None:
            return None
        try:
            return self.up.wait(30)
        except subprocess.TimeoutExpired:
            return None
        finally:
            if self.up.poll() is None:
                os.killpg(self.up.pid, signal.SIGKILL)
                self.up.wait(5)


@pytest.fixture
def reader(tmp_path: Path) -> Iterator[GuideRun]:
    run = GuideRun(tmp_path)
    yield run
    if run.up is not None and run.up.poll() is None:
        os.killpg(run.up.pid, signal.SIGKILL)
        run.up.wait(5)


def test_python_guide_runs_as_written(reader: GuideRun) -> None:
    guide = readme.load()
    reader.run(guide.python)
    assert reader.finish() == 0, f"`up` did not stop cleanly after `shutdown`{reader.context()}"


def test_node_guide_runs_as_written(reader: GuideRun) -> None:
    if not shutil.which("node") or not shutil.which("npm"):
        pytest.skip("node/npm are not installed: the README's Node part needs them")
    guide = readme.load()
    reader.run(guide.node)
    assert reader.finish() == 0, f"`up` did not stop cleanly after `shutdown`{reader.context()}"
