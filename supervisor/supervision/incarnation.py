"""One incarnation of a worker (a spawn, until its end is handled), and the rule that says
which bus connections belong to it (SUPERVISOR.md §7.4).

The controller keeps one ``Incarnation`` per running child: the tasks that watch it, its
readiness channels (pipe, notify socket), its actor link, and the connections attributed to it.
"""

from __future__ import annotations

from collections.abc import Iterable

import attrs
import trio

from supervisor.supervision import procfs
from supervisor.supervision.buslike import WorkerViewLike
from supervisor.supervision.notifyrecv import NotifyReceiver
from supervisor.supervision.spawn import ChildHandle

__all__ = ["ConnectionAttribution", "Incarnation"]


@attrs.define(eq=False)
class ConnectionAttribution:
    """Decides once per connection whether it is this incarnation's, and remembers it.

    An actor's connection carries the worker's name as its label (the local link); any
    other connection is ours when its pid is the child, in the child's process group, or a
    descendant of its keeper — or, with no pid at all, when it registered under our name.
    """

    name: str
    actor: bool
    child: ChildHandle
    proc_table: procfs.ProcessTable
    decided: dict[str, bool] = attrs.field(factory=dict)
    ids: set[str] = attrs.field(factory=set)  # every connection attributed so far

    def connections(
        self, views: Iterable[WorkerViewLike], *, registered: bool = True
    ) -> list[WorkerViewLike]:
        out = []
        for view in views:
            if registered and not view.registered:
                continue
            mine = self.decided.get(view.worker_id)
            if mine is None:
                mine = self.decided[view.worker_id] = self.owns(view)
                if mine:
                    self.ids.add(view.worker_id)
            if mine:
                out.append(view)
        return out

    def owns(self, view: WorkerViewLike) -> bool:
        child = self.child
        if self.actor and view.label is not None:
            return view.label == self.name
        if view.label is not None:
            return False
        if view.pid is not None:
            if view.pid == child.pid:
                return True
            st = procfs.read_stat(int(view.pid))
            if st is not None and child.pgid is not None and st.pgrp == child.pgid:
                return True
            if child.keeper_pid is not None:
                return int(view.pid) in self.proc_table.descendants(child.keeper_pid, force=True)
            return False
        return view.name == self.name

    def to_evict(self, views: Iterable[WorkerViewLike]) -> set[str]:
        """Every connection of this incarnation, including ones not yet attributed (an
        actor's link under our label, a connection from the child's own pid)."""
        ids = set(self.ids)
        for view in views:
            if view.worker_id in ids:
                continue
            if self.actor and view.label == self.name:
                ids.add(view.worker_id)
            elif view.label is None and view.pid is not None and view.pid == self.child.pid:
                ids.add(view.worker_id)
        return ids


@attrs.define(eq=False)
class Incarnation:
    """Controller-side bookkeeping for one child incarnation."""

    child: ChildHandle
    number: int  # spawn count, 1-based
    started_mono: float
    attribution: ConnectionAttribution
    scopes: list[trio.CancelScope] = attrs.field(factory=list)  # readiness + health tasks
    handled: bool = False
    ready_at: float | None = None  # unix
    ready_mono: float | None = None
    ready_fd: int | None = None
    notify: NotifyReceiver | None = None  # readiness: notify (§7.4)
    notify_ready: trio.Event = attrs.field(factory=trio.Event)
    notify_status: str | None = None
    watchdog_at: float | None = None  # trio time of the last WATCHDOG=1
    ever_connected: bool = False
    link_scope: trio.CancelScope | None = None  # actors: the bus local link
    cpu_sample: tuple[float, float] | None = None  # (monotonic, cpu seconds)
    tasks_cancelled: bool = False

    @property
    def conn_ids(self) -> set[str]:
        """The bus connections attributed to this incarnation so far."""
        return self.attribution.ids

    def connections(self, views: Iterable[WorkerViewLike]) -> list[WorkerViewLike]:
        return self.attribution.connections(views)

    def task_scope(self) -> trio.CancelScope:
        scope = trio.CancelScope()
        if self.tasks_cancelled:
            scope.cancel()
        self.scopes.append(scope)
        return scope

    def cancel_tasks(self) -> None:
        self.tasks_cancelled = True
        for scope in self.scopes:
            scope.cancel()
