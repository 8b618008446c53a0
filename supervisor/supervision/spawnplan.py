"""What a worker is spawned with (SUPERVISOR.md §7.1): argv or shell line, environment,
working directory, inherited fds (lifeline, actor link, readiness pipe) and limits.

``SpawnPlan`` turns a ``WorkerEntry`` into a ``SpawnRequest`` for the launcher; it holds the
supervisor-wide facts every child gets (engine URL, config path, state directory, lifeline).
"""

from __future__ import annotations

import os
import signal
import socket
from collections.abc import Callable, Mapping
from pathlib import Path

from supervisor.config.model import WorkerEntry, WorkerKind
from supervisor.supervision.childenv import build_env, resolve_command, working_dir
from supervisor.supervision.notifyrecv import NotifyReceiver
from supervisor.supervision.spawn import SpawnRequest
from supervisor.supervision.statedir import StateDir

__all__ = ["SpawnPlan", "PACKAGE_ROOT"]

PACKAGE_ROOT = str(Path(__file__).resolve().parent.parent.parent)


class SpawnPlan:
    def __init__(
        self,
        *,
        engine_port: int,
        config_path: Path | None,
        state_dir: StateDir | None,
        base_env: Mapping[str, str],
        lifeline_fd: int,
        sweep_grace: float,
        orphan_grace: float,
    ) -> None:
        self.engine_port = engine_port
        self.config_path = config_path
        self.config_dir = Path(config_path).resolve().parent if config_path else None
        self.state_dir = state_dir
        self.base_env = dict(base_env)
        self.lifeline_fd = lifeline_fd
        self.sweep_grace = sweep_grace
        self.orphan_grace = orphan_grace

    def worker(
        self, entry: WorkerEntry, spawn: int, cleanup: list[Callable[[], None]]
    ) -> tuple[SpawnRequest, socket.socket | None, int | None, NotifyReceiver | None]:
        """The request for spawn number ``spawn``, with the supervisor's end of the actor
        link, of the readiness pipe, and the notify socket. Child-side fds are closed by
        ``cleanup`` after the spawn."""
        spec = entry.supervise
        argv, shell = resolve_command(entry)
        reserved = self._reserved_env(entry)
        pass_fds = [self.lifeline_fd]
        link: socket.socket | None = None
        if entry.kind is WorkerKind.ACTOR:
            link, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
            reserved["III_BUS_FD"] = str(theirs.fileno())
            pass_fds.append(theirs.fileno())
            cleanup.append(theirs.close)
        ready_r: int | None = None
        if spec.readiness == "fd":
            ready_r, ready_w = os.pipe()
            reserved["III_READY_FD"] = str(ready_w)
            pass_fds.append(ready_w)
            cleanup.append(lambda: os.close(ready_w))
        notify: NotifyReceiver | None = None
        if spec.readiness == "notify":
            directory = self.state_dir.path / "notify" if self.state_dir is not None else None
            notify = NotifyReceiver(directory, entry.name, str(spawn))
            reserved["NOTIFY_SOCKET"] = notify.address
            reserved["WATCHDOG_USEC"] = str(int(spec.health.timeout * 1_000_000))
        try:
            request = self._request(entry, argv, shell, reserved, pass_fds)
        except BaseException:
            if notify is not None:
                notify.close()
            raise
        return request, link, ready_r, notify

    def install(self, entry: WorkerEntry, command: str) -> SpawnRequest:
        """The install script as a spawn: the worker's env and cwd, no link, no readiness."""
        reserved = self._reserved_env(entry)
        return self._request(entry, None, command, reserved, [self.lifeline_fd])

    def _reserved_env(self, entry: WorkerEntry) -> dict[str, str]:
        """The variables every child of this worker gets from us (§7.1)."""
        url = f"ws://127.0.0.1:{self.engine_port}"
        reserved = {
            "III_URL": url,
            "III_ENGINE_URL": url,
            "III_WORKER_NAME": entry.name,
            "III_ENGINE_PID": str(os.getpid()),
            "III_LIFELINE_FD": str(self.lifeline_fd),
        }
        if self.config_path:
            reserved["III_CONFIG_PATH"] = str(self.config_path)
        if self.state_dir is not None:
            reserved["III_CONFIG"] = str(
                self.state_dir.write_worker_config(entry.name, entry.config)
            )
            self.state_dir.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            reserved["III_DATA_DIR"] = str(self.state_dir.data_dir)
        return reserved

    def _request(
        self,
        entry: WorkerEntry,
        argv: tuple[str, ...] | None,
        shell: str | None,
        reserved: dict[str, str],
        pass_fds: list[int],
    ) -> SpawnRequest:
        spec = entry.supervise
        env = build_env(entry, base=self.base_env, reserved=reserved)
        if entry.kind is WorkerKind.ACTOR:
            # Actors are our own packages: make them importable from a source checkout too.
            env["PYTHONPATH"] = os.pathsep.join(
                p for p in (PACKAGE_ROOT, env.get("PYTHONPATH", "")) if p
            )
        rlimits = {"nofile": spec.limits.nofile} if spec.limits.nofile else {}
        catch = tuple(
            s
            for s in (spec.stop_signal,)
            if s not in (signal.SIGKILL, signal.SIGSTOP, signal.SIGCONT)
        )
        return SpawnRequest(
            name=entry.name,
            argv=argv,
            shell=shell,
            env=env,
            cwd=working_dir(entry, self.config_dir),
            pass_fds=tuple(pass_fds),
            rlimits=rlimits,
            nice=spec.nice,
            sweep_grace=self.sweep_grace,
            orphan_grace=self.orphan_grace,
            catch_signals=catch,
        )
