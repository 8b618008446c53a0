"""The supervisor's side of the keeper: spawn it, talk to it, signal its group, reap it.

``KeeperLauncher.launch`` starts ``python -I keeper.py`` as a process-group leader
(``process_group=0``; never ``preexec_fn``, which is unsafe once threads exist), hands it
the run request on its control socket and returns a ``KeeperChild`` once the keeper has
reported the worker's pid. The child's pipes, control socket and wait run as tasks in the
caller's nursery. ``ChildHandle`` is the narrow surface the controller uses, so unit tests
swap in a fake launcher and run whole crash loops on virtual time.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Protocol

import attrs
import structlog
import trio

from supervisor.supervision import procfs
from supervisor.supervision.logcapture import WorkerLog
from supervisor.supervision.restart import ExitStatus

__all__ = [
    "KEEPER_PATH",
    "SpawnRequest",
    "SpawnError",
    "ChildHandle",
    "Launcher",
    "KeeperChild",
    "KeeperLauncher",
]

log = structlog.get_logger(__name__)

KEEPER_PATH = str(Path(__file__).with_name("keeper.py"))
SPAWN_REPORT_TIMEOUT = 15.0  # keeper start (~30 ms) plus a fork/exec on a loaded host
PIPE_DRAIN_GRACE = 1.0  # after the keeper is gone, escaped holders of our pipes are ignored


@attrs.frozen
class SpawnRequest:
    name: str
    argv: tuple[str, ...] | None
    shell: str | None
    env: dict[str, str]
    cwd: str
    pass_fds: tuple[int, ...] = ()
    rlimits: dict[str, int] = attrs.field(factory=dict)
    nice: int | None = None  # setpriority(2) of the worker, set before it runs any code
    sweep_grace: float = 2.0
    orphan_grace: float = 3.0
    catch_signals: tuple[int, ...] = ()

    @property
    def display(self) -> str:
        if self.shell is not None:
            return self.shell
        return " ".join(self.argv or ())


class SpawnError(Exception):
    """Nothing runs: the keeper could not exec the command, or could not be started."""

    def __init__(
        self,
        message: str,
        *,
        errno_name: str | None = None,
        path: str | None = None,
        exit_status: ExitStatus | None = None,
    ) -> None:
        super().__init__(message)
        self.errno_name = errno_name
        self.path = path
        self.exit_status = exit_status


class ChildHandle(Protocol):
    """One incarnation of a worker, as the controller sees it."""

    keeper_pid: int | None
    pgid: int | None
    pid: int | None
    keeper_start_time: int | None
    worker_start_time: int | None
    spawned_at: float  # unix seconds
    ended: trio.Event
    status: ExitStatus | None

    def signal_group(self, sig: int) -> bool: ...

    async def kill(self) -> None: ...

    def group_alive(self) -> bool: ...

    async def sweep(self) -> None: ...


class Launcher(Protocol):
    async def launch(
        self, request: SpawnRequest, worker_log: WorkerLog, nursery: trio.Nursery
    ) -> ChildHandle: ...


class KeeperChild:
    def __init__(self, request: SpawnRequest, worker_log: WorkerLog) -> None:
        self.request = request
        self.worker_log = worker_log
        self.keeper_pid: int | None = None
        self.pgid: int | None = None
        self.pid: int | None = None
        self.keeper_start_time: int | None = None
        self.worker_start_time: int | None = None
        self.spawned_at = time.time()
        self.ended = trio.Event()
        self.status: ExitStatus | None = None
        self.reported: ExitStatus | None = None  # the keeper's authoritative `exited`
        self.exec_error: dict[str, Any] | None = None
        self._reported_event = trio.Event()
        self._spawn_settled = trio.Event()  # spawned, exec_failed or keeper gone
        self._ctl: trio.SocketStream | None = None
        self._proc: trio.Process | None = None

    # -- the run (a task in the controller's nursery) -------------------------------------

    async def run(
        self, *, task_status: trio.TaskStatus[KeeperChild] = trio.TASK_STATUS_IGNORED
    ) -> None:
        req = self.request
        sup_end, keeper_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        env = dict(req.env)
        env["III_KEEPER_FD"] = str(keeper_end.fileno())
        try:
            proc = await trio.lowlevel.open_process(
                [sys.executable, "-I", KEEPER_PATH],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=env,
                cwd=req.cwd,
                pass_fds=(keeper_end.fileno(), *req.pass_fds),
                process_group=0,
                close_fds=True,
            )
        except OSError as exc:
            sup_end.close()
            name = _errno_name(exc.errno)
            where = exc.filename or req.cwd
            raise SpawnError(
                f"could not start the keeper: {name}: {exc.strerror} ({where})",
                errno_name=name,
                path=str(where),
            ) from exc
        finally:
            keeper_end.close()
        self._proc = proc
        self.keeper_pid = proc.pid
        self.pgid = proc.pid
        self.spawned_at = time.time()
        self._ctl = trio.SocketStream(trio.socket.from_stdlib_socket(sup_end))
        run_msg: dict[str, Any] = {
            "op": "run",
            "supervisor_pid": os.getpid(),
            "pass_fds": list(req.pass_fds),
            "rlimits": req.rlimits,
            "nice": req.nice,
            "sweep_grace": req.sweep_grace,
            "orphan_grace": req.orphan_grace,
            "catch_signals": list(req.catch_signals),
        }
        if req.shell is not None:
            run_msg["shell"] = req.shell
        else:
            run_msg["argv"] = list(req.argv or ())
        error: SpawnError | None = None
        async with trio.open_nursery() as nursery:
            assert proc.stdout is not None and proc.stderr is not None
            pumps = trio.CancelScope()
            nursery.start_soon(self._pumps, proc.stdout, proc.stderr, pumps)
            nursery.start_soon(self._read_control)
            nursery.start_soon(self._wait, pumps)
            with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                await self._ctl.send_all(_line(run_msg))
            with trio.move_on_after(SPAWN_REPORT_TIMEOUT) as timeout:
                await self._spawn_settled.wait()
            if timeout.cancelled_caught:
                self.signal_group(signal.SIGKILL)
                await self.ended.wait()
                error = SpawnError("the keeper did not report within 15s; killed")
            elif self.pid is None:
                # exec_failed, or the keeper died before spawning: reap it, then report
                # (outside the nursery, so the caller sees a plain SpawnError).
                await self.ended.wait()
                err = self.exec_error or {}
                if err:
                    error = SpawnError(
                        f"{err.get('error', 'exec failed')}: {err.get('message', '')}: "
                        f"{err.get('path', '')}",
                        errno_name=err.get("error"),
                        path=err.get("path"),
                        exit_status=self.status,
                    )
                else:
                    error = SpawnError(
                        f"the keeper ended before starting the worker ({_describe(self.status)})",
                        exit_status=self.status,
                    )
            else:
                task_status.started(self)
        if error is not None:
            raise error

    async def _pumps(
        self,
        stdout: trio.abc.ReceiveStream,
        stderr: trio.abc.ReceiveStream,
        scope: trio.CancelScope,
    ) -> None:
        with scope:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self.worker_log.pump, stdout, "stdout", self._pid)
                nursery.start_soon(self.worker_log.pump, stderr, "stderr", self._pid)

    def _pid(self) -> int | None:
        return self.pid

    async def _read_control(self) -> None:
        assert self._ctl is not None
        buf = b""
        try:
            while True:
                try:
                    chunk = await self._ctl.receive_some(65536)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    break
                if not chunk:
                    break
                buf += chunk
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    try:
                        msg = json.loads(line)
                    except ValueError:
                        continue
                    if isinstance(msg, dict):
                        self._on_keeper_event(msg)
        finally:
            self._spawn_settled.set()
            self._reported_event.set()

    def _on_keeper_event(self, msg: dict[str, Any]) -> None:
        ev = msg.get("ev")
        if ev == "hello":
            self.keeper_start_time = msg.get("start_time")
        elif ev == "spawned":
            self.pid = int(msg["pid"])
            self.worker_start_time = msg.get("start_time")
            self._spawn_settled.set()
        elif ev == "exec_failed":
            self.exec_error = msg
            self._spawn_settled.set()
        elif ev == "exited":
            self.reported = ExitStatus(
                code=msg.get("code"), signal=msg.get("signal"), core=bool(msg.get("core"))
            )
            self._reported_event.set()
        elif ev == "log":
            self.worker_log.emit("stderr", f"[keeper] {msg.get('line', '')}", pid=self.keeper_pid)

    async def _wait(self, pumps: trio.CancelScope) -> None:
        assert self._proc is not None
        await self._proc.wait()
        # The keeper writes `exited` before it exits; the socket may still hold it.
        with trio.move_on_after(1.0):
            await self._reported_event.wait()
        rc = self._proc.returncode
        self.status = self.reported or (ExitStatus.from_returncode(rc) if rc is not None else None)
        if self._ctl is not None:
            with contextlib.suppress(Exception):
                await self._ctl.aclose()
        self.ended.set()
        # A survivor that escaped the tree may hold the pipes; do not wait for it forever.
        pumps.deadline = trio.current_time() + PIPE_DRAIN_GRACE

    # -- control --------------------------------------------------------------------------

    def signal_group(self, sig: int) -> bool:
        """``killpg`` the worker's group; after the keeper is reaped only if members remain
        (a pgid cannot be reused while any member is alive)."""
        if self.pgid is None:
            return False
        if self.ended.is_set() and not procfs.group_alive(self.pgid):
            return False
        return procfs.kill_group(self.pgid, sig)

    async def kill(self) -> None:
        """SIGKILL the whole tree: the keeper kills escaped descendants and the group and
        still reports the exit; ``killpg(SIGKILL)`` follows if it has not within 1 s."""
        if self.ended.is_set():
            return
        if self._ctl is not None:
            with contextlib.suppress(
                trio.BrokenResourceError, trio.ClosedResourceError, trio.BusyResourceError
            ):
                await self._ctl.send_all(_line({"op": "kill"}))
        with trio.move_on_after(1.0):
            await self.ended.wait()
        if not self.ended.is_set():
            self.signal_group(signal.SIGKILL)

    def kill_now(self) -> None:
        """Synchronous last resort (forced shutdown): SIGKILL the group."""
        self.signal_group(signal.SIGKILL)

    def group_alive(self) -> bool:
        return self.pgid is not None and procfs.group_alive(self.pgid)

    async def sweep(self) -> None:
        """§9.1 step 4: the keeper died without sweeping, or the group still has members."""
        if not self.group_alive():
            return
        assert self.pgid is not None
        log.warning("worker.sweep", worker=self.request.name, pgid=self.pgid)
        procfs.kill_group(self.pgid, signal.SIGTERM)
        procfs.kill_group(self.pgid, signal.SIGCONT)
        with trio.move_on_after(1.0):
            while self.group_alive():  # noqa: ASYNC110 - no event exists for "group empty"
                await trio.sleep(0.05)
        procfs.kill_group(self.pgid, signal.SIGKILL)


class KeeperLauncher:
    async def launch(
        self, request: SpawnRequest, worker_log: WorkerLog, nursery: trio.Nursery
    ) -> KeeperChild:
        child = KeeperChild(request, worker_log)
        return await nursery.start(child.run)


def _line(msg: dict[str, Any]) -> bytes:
    return json.dumps(msg, separators=(",", ":")).encode() + b"\n"


def _errno_name(num: int | None) -> str:
    import errno

    if num is None:
        return "EUNKNOWN"
    return errno.errorcode.get(num, str(num))


def _describe(status: ExitStatus | None) -> str:
    if status is None:
        return "unknown status"
    if status.signal is not None:
        return f"signal {status.signal}"
    return f"exit {status.code}"
