"""The status row and the state-file record as pure functions of a controller's observations:
no bus, no processes, no clock (SUPERVISOR.md §12)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import attrs
import pytest

from supervisor.config.model import WorkerEntry
from supervisor.supervision.health import HealthRecord
from supervisor.supervision.incarnation import ConnectionAttribution, Incarnation
from supervisor.supervision.logcapture import rfc3339
from supervisor.supervision.procfs import ProcessTable
from supervisor.supervision.restart import RestartPolicy
from supervisor.supervision.snapshot import MAX_FUNCTIONS, state_record, worker_snapshot
from supervisor.supervision.spawn import SpawnRequest
from supervisor.supervision.states import HealthStatus, Phase, WorkerState
from tests.unit.supervision.fakes import Behaviour, FakeChild, WorkerView, command_worker


@attrs.define
class Log:
    file_path: Path | None = None
    dropped: int = 0


@attrs.define
class Observed:
    """Just the facts a controller keeps, filled in by hand."""

    entry: WorkerEntry
    policy: RestartPolicy
    state: WorkerState = WorkerState.STOPPED
    phase: Phase | None = None
    desired: str = "stopped"
    since: float = 1_700_000_000.0
    spawns: int = 0
    last_exit: dict[str, Any] | None = None
    last_error: dict[str, Any] | None = None
    next_restart_at: float | None = None
    warnings: list[str] = attrs.field(factory=list)
    run: Incarnation | None = None
    health: HealthRecord = attrs.field(factory=HealthRecord)
    log: Log = attrs.field(factory=Log)

    @property
    def name(self) -> str:
        return self.entry.name


def _observed(**supervise: Any) -> Observed:
    entry = command_worker("api", **supervise)
    return Observed(entry, RestartPolicy(entry.supervise))


def _incarnation(started_mono: float) -> Incarnation:
    request = SpawnRequest(name="api", argv=("run-api",), shell=None, env={}, cwd="/")
    child = FakeChild(request, Behaviour())
    child.spawned_at = 1_700_000_100.0
    attribution = ConnectionAttribution("api", False, child, ProcessTable())
    return Incarnation(child=child, number=1, started_mono=started_mono, attribution=attribution)


def test_a_stopped_worker_has_no_process_no_bus_and_no_health() -> None:
    worker = _observed()
    row = worker_snapshot(worker, [], now=50.0, autostart=True, working_dir="/srv")
    assert row["name"] == "api" and row["kind"] == "command" and row["command"] == "run-api"
    assert row["state"] == "stopped" and row["phase"] is None and row["desired"] == "stopped"
    assert row["since"] == rfc3339(1_700_000_000.0)
    assert (row["pid"], row["pgid"], row["keeper_pid"], row["started_at"]) == (None,) * 4
    assert row["uptime_s"] is None and row["bus"] is None and row["health"] is None
    assert row["resources"] == {"rss_bytes": None, "cpu_percent": None, "cpu_seconds": None}
    assert row["policy"]["autostart"] is True and row["working_dir"] == "/srv"
    assert row["policy"]["readiness"] == "process"


async def test_a_ready_worker_with_two_connections() -> None:
    worker = _observed(readiness="bus")
    run = _incarnation(started_mono=100.0)
    run.ready_mono, run.ready_at = 101.5, 1_700_000_101.5
    worker.run, worker.state, worker.desired, worker.spawns = run, WorkerState.READY, "running", 1
    worker.health = HealthRecord(
        status=HealthStatus.OK,
        last_ok=1_700_000_110.0,
        rtt_ms=1.25,
        resources={"rss_bytes": 1024, "cpu_percent": 2.0, "cpu_seconds": 0.5, "processes": 3},
    )
    functions = tuple(f"api::f{i:03}" for i in range(MAX_FUNCTIONS + 50))
    views = [
        WorkerView("c-1", name="api-sdk", namespace="shop", pid=run.child.pid,
                   function_ids=functions[:150], trigger_ids=("t1", "t2"),
                   trigger_type_ids=("http",)),
        WorkerView("c-2", pid=run.child.pid, function_ids=functions[100:],
                   trigger_ids=("t3",), trigger_type_ids=("cron", "http")),
    ]  # fmt: skip
    row = worker_snapshot(worker, views, now=111.5, autostart=True, working_dir="/srv")
    assert row["pid"] == run.child.pid and row["pgid"] == run.child.pgid
    assert row["started_at"] == rfc3339(1_700_000_100.0)
    assert row["ready_at"] == rfc3339(1_700_000_101.5)
    assert row["uptime_s"] == pytest.approx(10.0)  # since ready, not since spawned
    assert row["processes"] == 3
    assert row["resources"] == {"rss_bytes": 1024, "cpu_percent": 2.0, "cpu_seconds": 0.5}
    assert row["health"] == {
        "status": "ok",
        "last_ok_at": rfc3339(1_700_000_110.0),
        "rtt_ms": 1.25,
        "missed": 0,
    }
    bus = row["bus"]
    assert bus["connected"] is True and bus["connection_id"] == "c-1"
    assert bus["namespace"] == "shop" and bus["registered_name"] == "api-sdk"
    assert bus["functions"] == list(functions[:MAX_FUNCTIONS])  # the union, sorted, capped
    assert bus["functions_truncated"] == 50
    assert bus["triggers"] == 3 and bus["trigger_types"] == ["cron", "http"]


async def test_a_bus_worker_that_lost_its_connection_reads_disconnected() -> None:
    worker = _observed(readiness="bus")
    worker.run, worker.state = _incarnation(started_mono=100.0), WorkerState.STARTING
    worker.phase = Phase.REGISTERING
    row = worker_snapshot(worker, [], now=103.0, autostart=False, working_dir="/srv")
    assert row["bus"] == {"connected": False, "functions": [], "triggers": 0, "trigger_types": []}
    assert row["uptime_s"] == pytest.approx(3.0)  # not ready yet: since spawned
    assert row["phase"] == "registering" and row["health"] is None


async def test_health_shows_only_while_ready_and_next_restart_only_in_backoff() -> None:
    worker = _observed()
    worker.health = HealthRecord(status=HealthStatus.LATE, missed=2)
    worker.next_restart_at = 1_700_000_200.0
    worker.state = WorkerState.BACKOFF
    row = worker_snapshot(worker, [], now=0.0, autostart=True, working_dir="/")
    assert row["health"] is None
    assert row["next_restart_at"] == rfc3339(1_700_000_200.0)
    worker.state = WorkerState.FAILED
    assert (
        worker_snapshot(worker, [], now=0.0, autostart=True, working_dir="/")["next_restart_at"]
        is None
    )


async def test_state_record_names_the_group_to_find_after_a_crash() -> None:
    run = _incarnation(started_mono=0.0)
    record = state_record(WorkerState.READY, run)
    child = run.child
    assert record == {
        "keeper_pid": child.keeper_pid,
        "keeper_start_time": child.keeper_start_time,
        "pgid": child.pgid,
        "pid": child.pid,
        "start_time": child.worker_start_time,
        "state": "ready",
        "started_at": rfc3339(1_700_000_100.0),
    }
    assert state_record(WorkerState.STOPPED, None)["pid"] is None
