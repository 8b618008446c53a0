"""What a worker controller's inbox carries, and what an operator command answers.

Everything that changes a worker arrives as one of these and is handled in order, one at a
time, by the controller that owns the worker (``supervisor.supervision.controller``).
"""

from __future__ import annotations

from typing import Any

import attrs
import trio

from supervisor.supervision.install import InstallOutcome
from supervisor.supervision.spawn import ChildHandle
from supervisor.supervision.states import EndCause

__all__ = [
    "CommandResult",
    "Command",
    "ChildEnded",
    "ChildReady",
    "Unhealthy",
    "TimerFired",
    "InstallDone",
    "DependenciesChanged",
    "Message",
]


@attrs.define(eq=False)
class CommandResult:
    name: str
    changed: bool
    state: str
    pid: int | None
    error: str | None = None

    def to_wire(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "changed": self.changed,
            "state": self.state,
            "pid": self.pid,
        }
        if self.error:
            out["error"] = self.error
        return out


@attrs.define(eq=False)
class Command:
    """An operator's order; ``done`` is set once ``result`` is filled in."""

    kind: str  # start | stop | restart | reset_failed | signal | forget | replace
    arg: Any = None
    done: trio.Event = attrs.field(factory=trio.Event)
    result: CommandResult | None = None


@attrs.frozen(eq=False)
class ChildEnded:
    child: ChildHandle


@attrs.frozen(eq=False)
class ChildReady:
    child: ChildHandle


@attrs.frozen(eq=False)
class Unhealthy:
    child: ChildHandle
    cause: EndCause


@attrs.frozen(eq=False)
class TimerFired:
    kind: str  # backoff | start_timeout | stable
    token: int  # a fired timer that was re-armed or cancelled since is ignored


@attrs.frozen(eq=False)
class InstallDone:
    outcome: InstallOutcome
    digest: str


@attrs.frozen(eq=False)
class DependenciesChanged:
    pass


Message = (
    Command | ChildEnded | ChildReady | Unhealthy | TimerFired | InstallDone | DependenciesChanged
)
