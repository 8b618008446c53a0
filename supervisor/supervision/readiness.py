"""When a spawned worker counts as ready: the four readiness modes (SUPERVISOR.md §7.4).

``bus``: its connection registered every ``ready_functions`` entry and its registrations
have been quiet for the settle time; ``fd``: it wrote a line to ``III_READY_FD``;
``notify``: it sent ``READY=1``; ``process``: it stayed up for ``min_uptime``. The bus mode
waits on bus events (``BusNotices``), never on a polling sleep.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Sequence

import trio

from supervisor.config.model import SuperviseSpec
from supervisor.supervision import procfs
from supervisor.supervision.buslike import BusNotices, WorkerViewLike
from supervisor.supervision.incarnation import Incarnation
from supervisor.supervision.notifyrecv import NotifyReceiver

__all__ = [
    "SETTLE",
    "SETTLE_ACTOR",
    "SETTLE_CAP",
    "registration_signature",
    "settle_time",
    "wait_ready",
    "wait_bus_ready",
    "serve_notify",
]

SETTLE = 0.2  # registrations quiet for this long → settled (§7.4)
# Our actors send their registrations in one burst right after announcing themselves over
# the local link (no network, no SDK replay order), so a short quiet period suffices.
SETTLE_ACTOR = 0.05
SETTLE_CAP = 2.0  # ... but never wait longer than this after registration
# Events drive the wait; this only bounds how long a wake-up the controller missed could
# hold a worker that has in fact registered everything.
RECHECK = 0.25

Connections = Callable[[], Sequence[WorkerViewLike]]


def _after(start: float, span: float) -> float:
    """The first time ``t`` with ``t - start >= span`` as floats compute it: waking at
    ``start + span`` itself may read as a hair short of ``span`` and wait once more."""
    t = start + span
    while t - start < span:
        t = math.nextafter(t, math.inf)
    return t


def settle_time(actor: bool) -> float:
    return SETTLE_ACTOR if actor else SETTLE


def registration_signature(views: Sequence[WorkerViewLike]) -> tuple[tuple[str, int], ...]:
    """Changes whenever a connection appears, goes or changes its registrations. Revisions,
    not the id tuples: those cost O(functions) to read, and this runs on every bus event."""
    return tuple(sorted((v.worker_id, v.revision) for v in views))


async def wait_ready(
    run: Incarnation,
    spec: SuperviseSpec,
    *,
    actor: bool,
    connections: Connections,
    notices: BusNotices,
) -> None:
    """Return once ``run`` is ready by ``spec.readiness``; the caller's start_timeout (a
    cancelled scope) bounds every mode."""
    mode = spec.readiness
    if mode == "bus":
        await wait_bus_ready(
            run,
            connections,
            notices,
            wanted=frozenset(spec.ready_functions),
            settle=settle_time(actor),
        )
    elif mode == "fd" and run.ready_fd is not None:
        await wait_ready_fd(run)
    elif mode == "notify" and run.notify is not None:
        await run.notify_ready.wait()
    else:  # "process"
        await trio.sleep(spec.min_uptime)


async def wait_bus_ready(
    run: Incarnation,
    connections: Connections,
    notices: BusNotices,
    *,
    wanted: Collection[str],
    settle: float,
) -> None:
    """Until the incarnation has a registered connection, its registrations have been quiet
    for ``settle`` s (or ``SETTLE_CAP`` s have passed since it first registered), and
    together its connections provide every function in ``wanted``."""
    while True:
        views = connections()
        if not views:
            await notices.wait(RECHECK)
            continue
        run.ever_connected = True
        first = trio.current_time()
        signature = registration_signature(views)
        quiet_since = first
        while True:
            now = trio.current_time()
            if now - quiet_since >= settle or now - first >= SETTLE_CAP:
                break
            await notices.wait_until(min(_after(quiet_since, settle), _after(first, SETTLE_CAP)))
            views = connections()
            now_signature = registration_signature(views)
            if now_signature != signature:
                signature, quiet_since = now_signature, trio.current_time()
        functions = {f for v in views for f in v.function_ids}
        if views and all(f in functions for f in wanted):
            return
        await notices.wait(RECHECK)


async def wait_ready_fd(run: Incarnation) -> None:
    """A line on the readiness pipe; EOF without one leaves the verdict to start_timeout."""
    assert run.ready_fd is not None
    stream = trio.lowlevel.FdStream(run.ready_fd)
    run.ready_fd = None
    async with stream:
        buf = b""
        while b"\n" not in buf:
            chunk = await stream.receive_some(4096)
            if not chunk:
                await trio.sleep_forever()  # closed without a newline: start_timeout decides
            buf += chunk


async def serve_notify(
    run: Incarnation, notify: NotifyReceiver, on_status: Callable[[], None]
) -> None:
    """Messages on the child's ``NOTIFY_SOCKET``, for the life of this incarnation: READY=1
    makes it ready, STATUS= is shown by ``status``, WATCHDOG=1 feeds the health check."""
    pgid = run.child.pgid

    def from_child(pid: int) -> bool:
        stat = procfs.read_stat(pid)
        return stat is not None and stat.pgrp == pgid

    def on_fields(fields: dict[str, str]) -> None:
        if fields.get("READY") == "1":
            run.notify_ready.set()
        if "STATUS" in fields:
            run.notify_status = fields["STATUS"][:200]
            on_status()
        if fields.get("WATCHDOG") == "1":
            run.watchdog_at = trio.current_time()

    with run.task_scope():
        await notify.serve(from_child, on_fields)
