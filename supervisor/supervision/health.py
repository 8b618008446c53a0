"""Health of a ready worker (SUPERVISOR.md §8): bus pings, the reconnect grace, the notify
watchdog, the memory limit, and the resource samples that ``status`` shows.

``watch_health`` runs for one incarnation from readiness to its end and returns the cause
once the worker must be killed; everything it observes goes into a ``HealthRecord``.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import attrs
import structlog
import trio

from supervisor.config.model import SuperviseSpec
from supervisor.supervision import procfs
from supervisor.supervision.buslike import WorkerViewLike
from supervisor.supervision.incarnation import Incarnation
from supervisor.supervision.states import EndCause, HealthStatus

__all__ = ["HealthRecord", "watch_health", "sample_resources"]

log = structlog.get_logger(__name__)

Ping = Callable[[str, float], Awaitable[bool]]


@attrs.define
class HealthRecord:
    """What the health check last saw of the current incarnation (None: not known yet)."""

    status: HealthStatus | None = None
    last_ok: float | None = None  # unix
    rtt_ms: float | None = None
    missed: int = 0
    bus_connected: bool | None = None
    resources: dict[str, Any] | None = None

    def reset(self) -> None:
        """A new incarnation, or none: nothing is known of it yet."""
        self.status = None
        self.bus_connected = None
        self.resources = None


def sample_resources(
    proc_table: procfs.ProcessTable, run: Incarnation, previous: dict[str, Any] | None
) -> dict[str, Any] | None:
    """The group's memory, CPU and process count now; CPU % is measured against the
    previous sample of this incarnation. ``previous`` is kept when the group is unknown."""
    child = run.child
    if child.pgid is None:
        return previous
    usage = proc_table.usage(child.pgid, root=child.keeper_pid)
    if usage is None:
        return {"rss_bytes": None, "cpu_percent": None, "cpu_seconds": None, "processes": None}
    now = time.monotonic()
    cpu_pct = None
    if run.cpu_sample is not None and now > run.cpu_sample[0]:
        cpu_pct = round(
            100.0 * (usage.cpu_seconds - run.cpu_sample[1]) / (now - run.cpu_sample[0]), 1
        )
        cpu_pct = max(0.0, cpu_pct)
    run.cpu_sample = (now, usage.cpu_seconds)
    return {
        "rss_bytes": usage.rss_bytes,
        "cpu_percent": cpu_pct,
        "cpu_seconds": round(usage.cpu_seconds, 2),
        "processes": usage.processes,
    }


async def watch_health(
    run: Incarnation,
    spec: SuperviseSpec,
    record: HealthRecord,
    *,
    name: str,
    connections: Callable[[], Sequence[WorkerViewLike]],
    ping: Ping,
    proc_table: Callable[[], procfs.ProcessTable],
    on_change: Callable[[], None],
) -> EndCause:
    """Check every ``health.interval`` until the worker must be killed; return why."""
    h = spec.health
    interval = max(0.01, h.interval)

    def set_status(status: HealthStatus) -> None:
        if status is not record.status:
            record.status = status
            on_change()

    last_ok = trio.current_time()
    lost_since: float | None = None
    over_limit = 0
    while True:
        await trio.sleep(interval)
        record.resources = sample_resources(proc_table(), run, record.resources)
        limit = spec.limits.memory
        rss = (record.resources or {}).get("rss_bytes")
        if limit and rss is not None and rss > limit:
            over_limit += 1
            if over_limit >= 2:
                return EndCause.MEMORY_LIMIT
        else:
            over_limit = 0
        views = connections()
        now = trio.current_time()
        if not views:
            if spec.readiness == "bus" or run.ever_connected:
                if lost_since is None:
                    lost_since = now
                    record.bus_connected = False
                    log.warning("worker.bus_disconnected", worker=name, pid=run.child.pid)
                    on_change()
                if now - lost_since >= spec.reconnect_grace:
                    set_status(HealthStatus.UNRESPONSIVE)
                    return EndCause.HEALTH_TIMEOUT
            if run.watchdog_at is not None and now - run.watchdog_at >= h.timeout:
                # §8.3: a notify child that pinged WATCHDOG=1 once must keep doing so.
                set_status(HealthStatus.UNRESPONSIVE)
                log.warning("worker.watchdog_missed", worker=name, pid=run.child.pid)
                return EndCause.HEALTH_TIMEOUT
            last_ok = now  # otherwise liveness of a plain process is the keeper's
            continue
        run.ever_connected = True
        if lost_since is not None:
            lost_since = None
            last_ok = now
            record.bus_connected = True
            on_change()
        budget = max(0.01, last_ok + h.timeout - now)
        t0 = trio.current_time()
        ok = await ping(views[0].worker_id, budget)
        now = trio.current_time()
        if ok:
            last_ok = now
            record.last_ok = time.time()
            record.rtt_ms = round((now - t0) * 1000, 2)
            record.missed = 0
            set_status(HealthStatus.OK)
            continue
        record.missed += 1
        if now - last_ok >= h.timeout:
            set_status(HealthStatus.UNRESPONSIVE)
            log.warning("worker.unresponsive", worker=name, pid=run.child.pid, missed=record.missed)
            return EndCause.HEALTH_TIMEOUT
        set_status(HealthStatus.LATE)
