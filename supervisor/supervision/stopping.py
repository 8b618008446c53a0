"""The mechanics of stopping one child (SUPERVISOR.md §9.1): drain its bus connections, then
the stop signal, the grace, SIGKILL, and the sweep of whatever is left in its group.

The controller decides when to stop and what the end means; these functions only carry it out.
"""

from __future__ import annotations

import math
import signal
from collections.abc import Callable, Collection

import structlog
import trio

from supervisor.supervision.buslike import BusLike, BusNotices
from supervisor.supervision.spawn import ChildHandle
from supervisor.supervision.states import Phase

__all__ = ["drain", "terminate", "KILL_WAIT"]

log = structlog.get_logger(__name__)

KILL_WAIT = 5.0  # after SIGKILL: the keeper reports the end well within this


async def drain(
    bus: BusLike,
    notices: BusNotices,
    worker_ids: Collection[str],
    child: ChildHandle,
    timeout: float,
) -> None:
    """Mark the connections draining (new calls to them fail at once) and wait until the bus
    reports each drained or gone, the child ends by itself, or ``timeout`` s pass."""
    notices.expect_quiet(worker_ids)  # first: the bus may report an idle one at once

    async def wake_on_end() -> None:
        await child.ended.wait()
        notices.wake()

    try:
        for worker_id in worker_ids:
            bus.set_draining(worker_id)
        with trio.move_on_after(timeout):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(wake_on_end)
                while notices.not_quiet and not child.ended.is_set():
                    await notices.wait(math.inf)  # bounded by the drain timeout above
                nursery.cancel_scope.cancel()
    finally:
        notices.expect_quiet(())


async def terminate(
    child: ChildHandle,
    stop_signal: int,
    grace: float,
    *,
    name: str,
    on_phase: Callable[[Phase], None],
) -> None:
    """``stop_signal`` (and SIGCONT) to the group, SIGKILL after ``grace`` s, then the sweep."""
    if not child.ended.is_set():
        on_phase(Phase.TERMINATING)
        child.signal_group(stop_signal)
        child.signal_group(signal.SIGCONT)  # a stopped process acts on nothing until continued
        with trio.move_on_after(grace):
            await child.ended.wait()
    if not child.ended.is_set():
        on_phase(Phase.KILLING)
        log.warning("worker.killing", worker=name, pid=child.pid, after_s=grace)
        await child.kill()
        with trio.move_on_after(KILL_WAIT):
            await child.ended.wait()
    await child.sweep()
