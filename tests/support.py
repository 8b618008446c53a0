"""Shared test helpers: free ports, a real ``iii-supervisor up`` subprocess, SDK workers
in their own OS processes, and the service checks behind III_REQUIRE_SERVICES."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
# The official SDK 0.25 lives in its own venv (made by `make test`): a process imports one
# version, so 0.25 workers are subprocesses run with this interpreter.
SDK025_PYTHON = REPO / ".venv-sdk025" / "bin" / "python"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.2):
            return True
    except OSError:
        return False


def wait_port(port: int, timeout: float = 15.0, proc: subprocess.Popen[Any] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if port_open(port):
            return
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before port {port} opened")
        time.sleep(0.05)
    raise TimeoutError(f"port {port} did not open within {timeout}s")


def require_service(name: str, port: int) -> None:
    """Skip when a service is down, unless III_REQUIRE_SERVICES=1 makes that a failure."""
    if port_open(port):
        return
    msg = f"{name} is not reachable on 127.0.0.1:{port}"
    if os.environ.get("III_REQUIRE_SERVICES") == "1":
        pytest.fail(msg + " (III_REQUIRE_SERVICES=1)")
    pytest.skip(msg)


class EngineProcess:
    """``iii-supervisor up --config <file>`` as a real subprocess."""

    def __init__(self, config: dict[str, Any], tmp: Path, env: dict[str, str] | None = None):
        self.tmp = tmp
        self.port = free_port()
        self.config = config
        workers = list(config.get("workers", []))
        if not any(w.get("name") == "iii-worker-manager" for w in workers):
            workers.insert(
                0,
                {"name": "iii-worker-manager", "config": {"host": "127.0.0.1", "port": self.port}},
            )
        else:
            for w in workers:
                if w.get("name") == "iii-worker-manager":
                    self.port = w["config"]["port"]
                    break
        self.config = {**config, "workers": workers}
        self.config_path = tmp / "config.yaml"
        self.config_path.write_text(yaml.safe_dump(self.config, sort_keys=False))
        self.state_dir = tmp / "state"
        self.log_path = tmp / "engine.log"
        self.env = {
            **os.environ,
            "III_SUPERVISOR_STATE_DIR": str(self.state_dir),
            "III_LOG_LEVEL": "debug",
            **(env or {}),
        }
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def start(self, timeout: float = 20.0) -> EngineProcess:
        self._log = open(self.log_path, "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [
                str(BIN / "iii-supervisor"),
                "--log-format",
                "json",
                "up",
                "--config",
                str(self.config_path),
            ],
            cwd=self.tmp,
            env=self.env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        wait_port(self.port, timeout, self.proc)
        return self

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._log.close()
        return self.proc.returncode

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")


class WorkerProcess:
    """A Python script (using the official iii SDK) run as its own OS process."""

    def __init__(
        self,
        source: str,
        tmp: Path,
        url: str,
        name: str = "worker",
        python: Path | str | None = None,
        **env: str,
    ):
        self.path = tmp / f"{name}-{time.monotonic_ns()}.py"
        self.path.write_text(textwrap.dedent(source))
        self.log_path = self.path.with_suffix(".log")
        self._log = open(self.log_path, "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [str(python or sys.executable), str(self.path)],
            env={**os.environ, "III_URL": url, "OTEL_ENABLED": "false", **env},
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=tmp,
        )

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._log.close()

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")


def require_sdk025() -> Path:
    """The 0.25 interpreter; skips (or fails under III_REQUIRE_SERVICES) when it is missing."""
    if SDK025_PYTHON.exists():
        return SDK025_PYTHON
    msg = f"{SDK025_PYTHON} missing: run `make test` (or `make .venv-sdk025/.installed`)"
    if os.environ.get("III_REQUIRE_SERVICES"):
        pytest.fail(msg)
    pytest.skip(msg)


def wait_for(predicate: Any, timeout: float = 10.0, interval: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"condition not met within {timeout}s")
        time.sleep(interval)


def sdk_client(url: str, name: str = "test-client") -> Any:
    """An official SDK client in this test process (telemetry off)."""
    from iii import InitOptions, register_worker

    return register_worker(url, InitOptions(worker_name=name, otel={"enabled": False}))


def engine_fixture(
    tmp_path: Path, config: dict[str, Any] | None = None, env: dict[str, str] | None = None
) -> Iterator[EngineProcess]:
    """A fixture body: ``yield from engine_fixture(tmp, config)`` runs an engine around it."""
    eng = EngineProcess(config or {"workers": []}, tmp_path, env=env).start()
    try:
        yield eng
    finally:
        eng.stop()


def client_fixture(url: str, name: str = "test-client") -> Iterator[Any]:
    """A fixture body: ``yield from client_fixture(url, name)`` connects an SDK client around
    it and shuts it down after."""
    client = sdk_client(url, name)
    try:
        yield client
    finally:
        client.shutdown()


def find_process(root: int, needle: str, timeout: float = 10.0) -> int:
    """The pid of a descendant of ``root`` whose command line contains ``needle``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        parents: dict[int, int] = {}
        cmdlines: dict[int, str] = {}
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                parents[int(entry.name)] = int(stat[1])
                cmdlines[int(entry.name)] = (
                    (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
                )
            except OSError:
                continue
        for pid, cmd in cmdlines.items():
            if needle not in cmd:
                continue
            p = pid
            while p > 1:
                p = parents.get(p, 1)
                if p == root:
                    return pid
        time.sleep(0.1)
    raise RuntimeError(f"no process matching {needle!r} under {root}")


class NotifyReceiver:
    """A fake ``$NOTIFY_SOCKET``: a thread records every datagram with its arrival time."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.1)
        self.messages: list[tuple[float, str]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._receive, daemon=True)
        self._thread.start()

    def _receive(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                self.messages.append((time.monotonic(), data.decode()))

    def drain(self) -> list[tuple[float, str]]:
        with self._lock:
            return list(self.messages)

    def find(self, needle: str) -> list[tuple[float, str]]:
        return [(t, m) for t, m in self.drain() if needle in m]

    def wait(self, field: str, after: int = 0, timeout: float = 20.0) -> int:
        """The index of the first message from ``after`` on with the line ``field``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for index, (_, message) in enumerate(self.drain()[after:], after):
                if field in message.splitlines():
                    return index
            time.sleep(0.02)
        raise AssertionError(f"no {field} after message {after}: {self.drain()}")

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()
