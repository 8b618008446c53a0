"""Harness for the supervision recipes of SUPERVISOR.md §17: a real ``iii-supervisor up`` in
its own session, a unique ``III_TEST_RUN`` marker inherited by every descendant, the status
socket, and a teardown that fails the test that leaked a process.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from supervisor.status.client import ClientError, StatusClient
from tests.support import NotifyReceiver, free_port

REPO = Path(__file__).resolve().parents[3]
CLI = [sys.executable, "-m", "supervisor.cli"]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "slow: takes 30 s or more (the pdeathsig trap guard)")


def marked_pids(marker: str) -> list[int]:
    """Every live process whose environment carries ``III_TEST_RUN=<marker>``."""
    needle = f"III_TEST_RUN={marker}".encode()
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/environ", "rb") as f:
                env = f.read()
            with open(f"/proc/{name}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        if needle in env.split(b"\0") and stat[stat.rfind(b")") + 2 :][:1] != b"Z":
            found.append(int(name))
    return sorted(found)


def pgrp_of(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    return int(data[data.rfind(b")") + 2 :].split()[2])


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return False
    return data[data.rfind(b")") + 2 :][:1] != b"Z"


def wait_for(predicate: Callable[[], Any], timeout: float = 10.0, interval: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"condition not met within {timeout}s")
        time.sleep(interval)


def command_worker(name: str, command: str, **supervise: Any) -> dict[str, Any]:
    supervise.setdefault("readiness", "process")
    supervise.setdefault("min_uptime", "200ms")
    return {"name": name, "supervise": {"command": command, **supervise}}


class Up:
    """``iii-supervisor up`` for one test: its own config, state dir, socket, bus port."""

    def __init__(
        self,
        tmp: Path,
        workers: list[dict[str, Any]],
        *,
        env: dict[str, str] | None = None,
        extra_args: list[str] | None = None,
        label: str = "up",
    ) -> None:
        self.tmp = tmp
        self.marker = str(uuid.uuid4())
        self.workers = workers
        self.names = [w["name"] for w in workers]
        self.port = free_port()
        self.config_path = tmp / "config.yaml"
        self.state_dir = tmp / "state"
        self.socket = tmp / "ctl.sock"
        self.log_path = tmp / f"{label}.log"
        self.env = {
            **os.environ,
            "III_TEST_RUN": self.marker,
            "PYTHONPATH": str(REPO),
            **(env or {}),
        }
        for key in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"):
            if key not in (env or {}):
                self.env.pop(key, None)
        self.extra_args = extra_args or []
        self.proc: subprocess.Popen[bytes] | None = None
        self.write_config(workers)

    def write_config(self, workers: list[dict[str, Any]]) -> None:
        cfg = {
            "workers": [
                {"name": "iii-worker-manager", "config": {"host": "127.0.0.1", "port": self.port}},
                *workers,
            ]
        }
        self.config_path.write_text(yaml.safe_dump(cfg, sort_keys=False))

    @property
    def where(self) -> list[str]:
        return [
            "--socket",
            str(self.socket),
            "--state-dir",
            str(self.state_dir),
            "-c",
            str(self.config_path),
        ]

    def start(self, *, wait: bool = True, only: list[str] | None = None) -> Up:
        log = open(self.log_path, "ab")  # noqa: SIM115 - closed with the process
        only = self.names if only is None else only
        args = [*CLI, "--log-format", "json", "up", *self.where, *self.extra_args]
        if only:
            args += ["--only", *only]
        self.proc = subprocess.Popen(
            args,
            cwd=self.tmp,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # the test runner's own group stays out of reach
        )
        log.close()
        if wait:
            wait_for(self._answers, 20.0)
        return self

    def _answers(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(f"up exited with {self.proc.returncode}:\n{self.log_text()[-3000:]}")
        try:
            self.request("ping")
            return True
        except (OSError, ClientError):
            return False

    # -- talking to it ------------------------------------------------------------------------

    def request(self, cmd: str, args: dict[str, Any] | None = None, timeout: float = 5.0) -> Any:
        with StatusClient(self.socket, timeout=timeout) as c:
            return c.request(cmd, args)

    def status(self, name: str | None = None) -> Any:
        doc = self.request("status", {"names": [name]} if name else None)
        return doc["workers"][0] if name else doc

    def wait_state(self, name: str, state: str, timeout: float = 15.0) -> dict[str, Any]:
        def check() -> dict[str, Any] | None:
            w = self.status(name)
            return w if w["state"] == state else None

        try:
            return wait_for(check, timeout)
        except TimeoutError:
            raise AssertionError(
                f"{name} did not reach {state}: {json.dumps(self.status(name), indent=1)}"
            ) from None

    def cli(self, *args: str, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*CLI, args[0], *self.where, *args[1:]],
            cwd=self.tmp,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_events(self, event: str | None = None) -> list[dict[str, Any]]:
        out = []
        for line in self.log_text().splitlines():
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if isinstance(rec, dict) and (event is None or rec.get("event") == event):
                out.append(rec)
        return out

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def wait_exit(self, timeout: float) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)

    # -- teardown -----------------------------------------------------------------------------

    def cleanup(self) -> list[int]:
        """Shutdown, then SIGKILL the supervisor, then wait up to 5 s for the marker scan
        to come back empty; returns (and kills) whatever leaked."""
        if self.proc is not None and self.proc.poll() is None:
            try:
                self.request("shutdown", timeout=2.0)
                self.proc.wait(15)
            except (OSError, ClientError, subprocess.TimeoutExpired):
                pass
            if self.proc.poll() is None:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        try:
            wait_for(lambda: not marked_pids(self.marker), 5.0)
            return []
        except TimeoutError:
            leaked = marked_pids(self.marker)
            for pid in leaked:
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
            return leaked


@pytest.fixture
def up_factory(tmp_path: Path) -> Iterator[Callable[..., Up]]:
    made: list[Up] = []

    def make(workers: list[dict[str, Any]], **kw: Any) -> Up:
        sub = tmp_path / f"run{len(made)}"
        sub.mkdir()
        u = Up(sub, workers, **kw)
        made.append(u)
        return u

    yield make
    leaks = {u.marker: u.cleanup() for u in made}
    leaked = {m: p for m, p in leaks.items() if p}
    assert not leaked, f"processes leaked past teardown: {leaked}"


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[NotifyReceiver]:
    r = NotifyReceiver(tmp_path / "notify.sock")
    yield r
    r.close()
