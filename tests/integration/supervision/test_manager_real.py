"""The child manager in-process with real processes and a fake bus (§17.3 for a plain
process: liveness comes from a fake bus whose ping fails while the worker is SIGSTOPped)."""

from __future__ import annotations

import os
import signal
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import trio

from supervisor.config.model import (
    Backoff,
    EngineConfig,
    Health,
    SuperviseSpec,
    WorkerEntry,
    WorkerKind,
)
from supervisor.supervision.children import ChildManager
from supervisor.supervision.statedir import StateDir
from supervisor.supervision.states import WorkerState
from tests.integration.supervision.conftest import alive, marked_pids
from tests.unit.supervision.fakes import FakeBus, WorkerView


def proc_state(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    return data[data.rfind(b")") + 2 :][:1].decode()


class StoppedAwareBus(FakeBus):
    """Ping answers only while the pid behind the connection is not stopped (state T)."""

    async def ping(self, worker_id: str, timeout: float) -> bool:  # noqa: ASYNC109
        view = next((v for v in self.views if v.worker_id == worker_id), None)
        if view is None or view.pid is None or proc_state(view.pid) in (None, "T", "Z"):
            await trio.sleep(timeout)
            return False
        return True


@pytest.fixture
def marker() -> Iterator[str]:
    m = str(uuid.uuid4())
    yield m
    for pid in marked_pids(m):
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


@pytest.fixture
async def run_manager(tmp_path: Path, marker: str) -> AsyncIterator[object]:
    async with trio.open_nursery() as nursery:

        async def start(cfg: EngineConfig, bus: FakeBus) -> ChildManager:
            manager = ChildManager(
                cfg,
                bus,
                state_dir=StateDir(tmp_path / "state"),
                base_env={**os.environ, "III_TEST_RUN": marker},
            )
            await nursery.start(manager.run)
            return manager

        yield start
        nursery.cancel_scope.cancel()


async def until(manager: ChildManager, name: str, state: WorkerState, within: float = 15.0) -> None:
    with trio.fail_after(within):
        await manager.get(name).wait_for(lambda w: w.state is state)


async def test_stopped_worker_is_killed_for_health_and_restarted(
    run_manager: object, marker: str
) -> None:
    health = Health(interval=0.2, timeout=1.0, kill_grace=0.5)
    entry = WorkerEntry(
        name="probe",
        kind=WorkerKind.COMMAND,
        supervise=SuperviseSpec(
            command="sleep 1000",
            readiness="process",
            min_uptime=0.2,
            health=health,
            backoff=Backoff(initial=0.1, jitter=0.0),
        ),
    )
    bus = StoppedAwareBus()
    manager = await run_manager(EngineConfig(workers=(entry,)), bus)  # type: ignore[operator]
    await until(manager, "probe", WorkerState.READY)
    first = manager.get("probe").pid
    assert first is not None
    bus.announce(WorkerView("c-1", name="probe", pid=first))
    await trio.sleep(0.5)
    assert manager.get("probe").snapshot()["health"]["status"] == "ok"
    transitions: list[tuple[str, str]] = []
    with manager.subscribe() as events:
        os.kill(first, signal.SIGSTOP)
        with trio.fail_after(10):
            async for ev in events:
                if ev.get("event") == "transition":
                    transitions.append((ev["to"], ev["cause"]))
                    if ev["to"] == "ready":
                        break
    assert transitions[:4] == [
        ("stopping", "health_timeout"),
        ("backoff", "health_timeout"),
        ("starting", "backoff"),
        ("ready", "ready"),
    ]
    w = manager.get("probe").snapshot()
    assert w["pid"] != first
    assert w["last_exit"]["cause"] == "health_timeout"
    assert w["last_error"]["code"] == "HEALTH_TIMEOUT"
    assert w["restarts"] == 1
    assert not alive(first)  # SIGTERM + SIGCONT ended the stopped process
    assert "c-1" in bus.closed


async def test_exec_error_then_fixed_and_started(run_manager: object, tmp_path: Path) -> None:
    late = tmp_path / "late-worker"
    entry = WorkerEntry(
        name="ghost2",
        kind=WorkerKind.COMMAND,
        supervise=SuperviseSpec(command=str(late), readiness="process", min_uptime=0.2),
    )
    manager = await run_manager(EngineConfig(workers=(entry,)), FakeBus())  # type: ignore[operator]
    await until(manager, "ghost2", WorkerState.FAILED)
    late.write_text("#!/bin/sh\nexec sleep 1000\n")
    late.chmod(0o755)
    with trio.fail_after(15):
        await manager.start(["ghost2"], within=10)
    assert manager.get("ghost2").state is WorkerState.READY


async def test_worker_environment_and_files(run_manager: object, tmp_path: Path) -> None:
    out = tmp_path / "env.txt"
    entry = WorkerEntry(
        name="envy",
        kind=WorkerKind.COMMAND,
        config={"db": {"port": 5432}},
        supervise=SuperviseSpec(
            command=f"env > {out}; exec sleep 1000",
            readiness="process",
            min_uptime=0.2,
            env={"OPERATOR_SET": "1"},
        ),
    )
    manager = await run_manager(EngineConfig(workers=(entry,)), FakeBus())  # type: ignore[operator]
    await until(manager, "envy", WorkerState.READY)
    env = await trio.to_thread.run_sync(read_env_file, out)
    assert env["III_WORKER_NAME"] == "envy"
    assert env["III_URL"] == "ws://127.0.0.1:49134" == env["III_ENGINE_URL"]
    assert env["III_ENGINE_PID"] == str(os.getpid())
    assert env["III_LIFELINE_FD"].isdigit()
    assert env["DB_PORT"] == "5432" and env["OPERATOR_SET"] == "1"
    assert env["PYTHONUNBUFFERED"] == "1"
    assert "III_KEEPER_FD" not in env and "NOTIFY_SOCKET" not in env
    assert env["_config_mode"] == "0o600"
    assert env["_data_dir_exists"] == "yes"


def read_env_file(path: Path) -> dict[str, str]:
    env = dict(line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)
    env["_config_mode"] = oct(Path(env["III_CONFIG"]).stat().st_mode & 0o777)
    env["_data_dir_exists"] = "yes" if Path(env["III_DATA_DIR"]).is_dir() else "no"
    return env
