"""A worker's row for ``status`` (SUPERVISOR.md §12) and its record in the state file, as
pure functions of what the controller has observed: no bus, no /proc, no clock of their own.

The controller gathers the moving parts first (the connections attributed to the current
incarnation, a resource sample, the trio time) and hands them in.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

from supervisor.config.model import WorkerEntry, WorkerKind
from supervisor.supervision.buslike import WorkerViewLike
from supervisor.supervision.childenv import command_display
from supervisor.supervision.health import HealthRecord
from supervisor.supervision.incarnation import Incarnation
from supervisor.supervision.logcapture import rfc3339
from supervisor.supervision.restart import RestartPolicy
from supervisor.supervision.states import Phase, WorkerState

__all__ = ["ObservedWorker", "KIND_NAMES", "MAX_FUNCTIONS", "worker_snapshot", "state_record"]

KIND_NAMES = {
    WorkerKind.ACTOR: "builtin",
    WorkerKind.MANIFEST: "manifest",
    WorkerKind.COMMAND: "command",
}
MAX_FUNCTIONS = 200  # a status row lists at most this many function ids, then a count


class LogFacts(Protocol):
    @property
    def file_path(self) -> Path | None: ...
    @property
    def dropped(self) -> int: ...


class ObservedWorker(Protocol):
    """What the snapshot reads of a worker controller."""

    @property
    def name(self) -> str: ...
    @property
    def entry(self) -> WorkerEntry: ...
    @property
    def state(self) -> WorkerState: ...
    @property
    def phase(self) -> Phase | None: ...
    @property
    def desired(self) -> str: ...
    @property
    def since(self) -> float: ...
    @property
    def spawns(self) -> int: ...
    @property
    def last_exit(self) -> dict[str, Any] | None: ...
    @property
    def last_error(self) -> dict[str, Any] | None: ...
    @property
    def next_restart_at(self) -> float | None: ...
    @property
    def warnings(self) -> list[str]: ...
    @property
    def run(self) -> Incarnation | None: ...
    @property
    def policy(self) -> RestartPolicy: ...
    @property
    def health(self) -> HealthRecord: ...
    @property
    def log(self) -> LogFacts: ...


def _bus_row(worker: ObservedWorker, views: Sequence[WorkerViewLike]) -> dict[str, Any] | None:
    run = worker.run
    if views:
        functions = sorted({f for v in views for f in v.function_ids})
        first = views[0]
        bus: dict[str, Any] = {
            "connected": True,
            "connection_id": first.worker_id,
            "namespace": first.namespace,
            "registered_name": first.name,
            "functions": functions[:MAX_FUNCTIONS],
            "triggers": sum(len(v.trigger_ids) for v in views),
            "trigger_types": sorted({t for v in views for t in v.trigger_type_ids}),
        }
        if len(functions) > MAX_FUNCTIONS:
            bus["functions_truncated"] = len(functions) - MAX_FUNCTIONS
        return bus
    if run is not None and (worker.entry.supervise.readiness == "bus" or run.ever_connected):
        return {"connected": False, "functions": [], "triggers": 0, "trigger_types": []}
    return None


def worker_snapshot(
    worker: ObservedWorker,
    views: Sequence[WorkerViewLike],
    *,
    now: float,
    autostart: bool,
    working_dir: str,
) -> dict[str, Any]:
    """The status row. ``views`` are the current incarnation's registered connections,
    ``now`` the trio time (uptime, restart window), ``autostart`` the manager's verdict."""
    run = worker.run
    child = run.child if run else None
    spec = worker.entry.supervise
    health = worker.health
    resources = health.resources or {}
    uptime = None
    if run is not None:
        uptime = round(
            now - (run.ready_mono if run.ready_mono is not None else run.started_mono), 3
        )
    health_row = None
    if worker.state is WorkerState.READY and health.status is not None:
        health_row = {
            "status": health.status.value,
            "last_ok_at": rfc3339(health.last_ok) if health.last_ok else None,
            "rtt_ms": health.rtt_ms,
            "missed": health.missed,
        }
    manifest = worker.entry.manifest
    policy = worker.policy
    return {
        "name": worker.name,
        "kind": KIND_NAMES.get(worker.entry.kind, worker.entry.kind.value),
        "source": str(manifest.path) if manifest else None,
        "command": command_display(worker.entry),
        "working_dir": working_dir,
        "state": worker.state.value,
        "phase": worker.phase.value if worker.phase else None,
        "desired": worker.desired,
        "since": rfc3339(worker.since),
        "health": health_row,
        "pid": child.pid if child else None,
        "keeper_pid": child.keeper_pid if child else None,
        "pgid": child.pgid if child else None,
        "processes": resources.get("processes"),
        "started_at": rfc3339(child.spawned_at) if child else None,
        "ready_at": rfc3339(run.ready_at) if run and run.ready_at else None,
        "uptime_s": uptime,
        "restarts": policy.total_restarts,
        "spawns": worker.spawns,
        "consecutive_failures": policy.consecutive_failures(now),
        "restarts_in_window": policy.restarts_in_window(now),
        "next_restart_at": rfc3339(worker.next_restart_at)
        if worker.next_restart_at and worker.state is WorkerState.BACKOFF
        else None,
        "last_exit": worker.last_exit,
        "last_error": worker.last_error,
        "notify_status": run.notify_status if run is not None else None,
        "bus": _bus_row(worker, views),
        "resources": {k: resources.get(k) for k in ("rss_bytes", "cpu_percent", "cpu_seconds")},
        "policy": {
            "restart": spec.restart.value,
            "max_restarts": spec.max_restarts,
            "restart_window_s": spec.restart_window,
            "stop_timeout_s": spec.stop_timeout,
            "critical": spec.critical,
            "readiness": spec.readiness,
            "autostart": autostart,
            "depends_on": list(spec.depends_on),
        },
        "log": {
            "file": str(worker.log.file_path) if worker.log.file_path else None,
            "dropped": worker.log.dropped,
        },
        "warnings": list(worker.warnings),
    }


def state_record(state: WorkerState, run: Incarnation | None) -> dict[str, Any]:
    """What the state file keeps of a worker, so that the next boot can find its group."""
    child = run.child if run else None
    return {
        "keeper_pid": child.keeper_pid if child else None,
        "keeper_start_time": child.keeper_start_time if child else None,
        "pgid": child.pgid if child else None,
        "pid": child.pid if child else None,
        "start_time": child.worker_start_time if child else None,
        "state": state.value,
        "started_at": rfc3339(child.spawned_at) if child else None,
    }
