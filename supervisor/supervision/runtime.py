"""The supervision half of ``up``: child manager, control socket, signals and sd_notify.

``app.run_up`` starts the engine (bus and listeners) and hands its bus to
``SupervisorRuntime.run``, which owns everything else until the process exits. ``prepare``
runs first, before any port is bound: state directory, single-instance lock, startup orphan
sweep and the control socket (SUPERVISOR.md §3.1, §9.4, §10.3, §13.1, §15). The control
socket is whatever ``app.py`` builds for it (the status server); this room only runs it.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import attrs
import structlog
import trio

from supervisor.config.durations import UnitError, parse_duration
from supervisor.config.model import EngineConfig
from supervisor.supervision.buslike import BusLike
from supervisor.supervision.children import ChildManager
from supervisor.supervision.logcapture import rfc3339
from supervisor.supervision.notify import Notifier
from supervisor.supervision.statedir import (
    SUN_PATH_MAX,
    AlreadyRunning,
    StateDir,
    resolve_socket_path,
    resolve_state_dir,
)
from supervisor.supervision.states import WorkerState

__all__ = [
    "SupervisionOptions",
    "SupervisorRuntime",
    "ControlSocket",
    "ConfigRejected",
    "AlreadyRunning",
    "EXIT_OK",
    "EXIT_FORCED",
    "EXIT_CRITICAL",
    "EXIT_INTERNAL",
    "EXIT_CANTCREAT",
]

log = structlog.get_logger(__name__)

EXIT_OK = 0
EXIT_FORCED = 1
EXIT_CRITICAL = 69
EXIT_INTERNAL = 70
EXIT_CANTCREAT = 73
FORCE_GRACE = 2.0  # after a second signal everything is SIGKILLed; this bounds the rest
NOTIFY_EVERY = 5.0


class ControlSocket(Protocol):
    """The operators' socket, as the runtime drives it: bound in ``prepare`` (so a second
    instance fails before binding a port), served as a system task, closed last."""

    @property
    def alive(self) -> bool: ...

    def bind(self) -> None: ...

    async def serve(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None: ...

    def close(self) -> None: ...


class ConfigRejected(Exception):
    """A reload whose new configuration is invalid; nothing was changed."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        self.message = (
            f"the new configuration is invalid ({len(self.problems)} problem(s)); nothing "
            "was changed:\n" + "\n".join(self.problems)
        )
        super().__init__(self.message)


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("iii-supervisor")
    except Exception:
        return "0.1.0"


@attrs.define
class SupervisionOptions:
    """Supervisor-wide settings: CLI flags > ``III_SUPERVISOR_*`` > ``iii-supervisor.yaml``."""

    config_path: Path | None = None
    state_dir: Path | None = None
    socket: Path | None = None
    socket_group: str | None = None
    socket_group_control: bool = False
    shutdown_timeout: float = 30.0
    orphan_grace: float = 3.0
    sweep_grace: float = 2.0
    only: tuple[str, ...] = ()
    no_install: bool = False

    @classmethod
    def resolve(
        cls,
        *,
        flags: Mapping[str, Any],
        settings: Mapping[str, Any] | None = None,
        environ: Mapping[str, str] | None = None,
        config_path: Path | None = None,
    ) -> SupervisionOptions:
        env = os.environ if environ is None else environ
        settings = settings or {}

        def pick(key: str, convert: Callable[[Any], Any] = lambda v: v) -> Any:
            if flags.get(key) is not None:
                return convert(flags[key])
            raw = env.get(f"III_SUPERVISOR_{key.upper()}")
            if raw not in (None, ""):
                return convert(raw)
            if settings.get(key) is not None:
                return convert(settings[key])
            return None

        out = cls(config_path=config_path)
        if (v := pick("state_dir", Path)) is not None:
            out.state_dir = v
        if (v := pick("socket", Path)) is not None:
            out.socket = v
        if (v := pick("socket_group", str)) is not None:
            out.socket_group = v
        if (v := pick("socket_group_control", _truthy)) is not None:
            out.socket_group_control = v
        if (v := pick("no_install", _truthy)) is not None:
            out.no_install = v
        for key in ("shutdown_timeout", "orphan_grace", "sweep_grace"):
            if (v := pick(key, _seconds)) is not None:
                setattr(out, key, v)
        if flags.get("only"):
            out.only = tuple(flags["only"])
        return out


def remote_row(view: Any) -> dict[str, Any]:
    """A connected worker we do not supervise: read-only, no pid, no policy (§12)."""
    return {
        "name": view.name,
        "namespace": view.namespace,
        "peer": view.peer,
        "connected_since": rfc3339(view.connected_at),
        "functions": sorted(view.function_ids),
        "triggers": len(view.trigger_ids),
    }


def _truthy(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() in ("1", "true", "yes", "on")


def _seconds(value: Any) -> float:
    """A number of seconds, or a duration with a unit (``30s``, ``500ms``, ``1m30s``)."""
    if isinstance(value, int | float):
        return float(value)
    text = str(value).strip()
    try:
        return float(text)
    except ValueError:
        pass
    try:
        return parse_duration(text)
    except UnitError as exc:
        raise ValueError(f"{text!r}: {exc}") from None


class SupervisorRuntime:
    def __init__(
        self,
        cfg: EngineConfig,
        options: SupervisionOptions | None = None,
        *,
        environ: Mapping[str, str] | None = None,
        control_socket: Callable[[SupervisorRuntime], ControlSocket] | None = None,
    ) -> None:
        self.cfg = cfg
        self.options = options or SupervisionOptions(config_path=cfg.source)
        self.config_path = self.options.config_path or cfg.source
        self.environ = dict(os.environ if environ is None else environ)
        self.version = _version()
        self.pid = os.getpid()
        self.started_at = time.time()
        self._started_mono = time.monotonic()
        self.state_dir = StateDir(
            resolve_state_dir(self.options.state_dir, self.config_path, self.environ)
        )
        self.socket_path = resolve_socket_path(
            self.options.socket, self.state_dir.path, self.config_path, self.environ
        )
        self.notifier = Notifier.from_env(self.environ)
        self.control_socket = control_socket(self) if control_socket is not None else None
        self._manager: ChildManager | None = None  # set by run()
        self.exit_code = EXIT_OK
        self.phase = "starting"  # starting | running | reloading | stopping
        self.ports: list[int] = []
        self._shutdown = trio.Event()
        self._changed = trio.Event()
        self._shutdown_scope: trio.CancelScope | None = None
        self._shutdown_within: float | None = None
        self._reload_lock = trio.Lock()
        self._prepared = False
        # The bus's RED metrics (engine::calls::stats), set by app.py: the status document's
        # "calls" (status --json, status --functions).
        self.call_stats: Callable[[], dict[str, Any]] | None = None

    # -- before the engine binds anything -----------------------------------------------------

    def prepare(self) -> list[int]:
        """Lock the state directory, sweep leftovers of a crashed run, bind the status
        socket. Raises ``AlreadyRunning``/``SocketInUse`` (exit 1) or ``OSError`` (73)."""
        if len(os.fsencode(str(self.socket_path))) > SUN_PATH_MAX:
            raise OSError(
                f"status socket path {self.socket_path} is longer than {SUN_PATH_MAX} bytes; "
                "choose a shorter one with --socket"
            )
        self.state_dir.prepare()
        self.state_dir.lock()
        try:
            swept = self.state_dir.sweep_orphans(grace=2.0)
            if self.control_socket is not None:
                self.control_socket.bind()
        except BaseException:
            self.state_dir.unlock()
            raise
        self._prepared = True
        log.info(
            "supervisor.prepared",
            state_dir=str(self.state_dir.path),
            socket=str(self.socket_path),
            orphans_swept=swept,
        )
        return swept

    def close(self) -> None:
        """Remove the socket, record a clean shutdown, release the lock."""
        if not self._prepared:
            return
        if self.control_socket is not None:
            self.control_socket.close()
        if self._manager is not None:
            self._manager.write_final_state()
        self.state_dir.unlock()
        self.notifier.close()
        self._prepared = False

    # -- the supervised life ------------------------------------------------------------------

    async def run(
        self,
        bus: BusLike,
        signals: AsyncIterator[int] | None = None,
        *,
        ports: Sequence[int] = (),
    ) -> int:
        """Supervise until shutdown; returns the process exit code (Appendix B)."""
        if not self._prepared:
            self.prepare()
        self.ports = list(ports)
        engine_port = self.ports[0] if self.ports else self.cfg.engine_port
        self._manager = ChildManager(
            self.cfg,
            bus,
            state_dir=self.state_dir,
            engine_port=engine_port,
            config_path=self.config_path,
            on_critical=self._on_critical,
            on_change=self._on_change,
            only=self.options.only or None,
            base_env=self.environ,
            orphan_grace=self.options.orphan_grace,
            sweep_grace=self.options.sweep_grace,
            no_install=self.options.no_install,
        )
        manager = self._manager
        async with trio.open_nursery() as nursery:
            await nursery.start(self._system, "child manager", manager.run)
            if self.control_socket is not None:
                await nursery.start(self._system, "status server", self.control_socket.serve)
            if signals is not None:
                nursery.start_soon(self._system, "signal handler", self._signal_loop, signals)
            nursery.start_soon(self._notify_loop)
            nursery.start_soon(self.notifier.watchdog_loop, self._healthy)
            log.info(
                "supervisor.running",
                workers=sorted(manager.controllers),
                socket=str(self.socket_path),
            )
            await self._shutdown.wait()
            await self._stop_everything(nursery)
            nursery.cancel_scope.cancel()
        log.info("supervisor.stopped", exit_code=self.exit_code)
        return self.exit_code

    async def _stop_everything(self, nursery: trio.Nursery) -> None:
        assert self._manager is not None
        self.phase = "stopping"
        self.notifier.stopping()
        within = self._shutdown_within or self.options.shutdown_timeout
        deadline = trio.current_time() + within
        nursery.start_soon(self._extend_stop_timeout, deadline)
        log.info("supervisor.stopping", timeout_s=within)
        with trio.CancelScope() as scope:
            self._shutdown_scope = scope
            if self._manager.forced:
                scope.deadline = trio.current_time() + FORCE_GRACE
            await self._manager.shutdown(within=within)
        if scope.cancelled_caught:
            self._manager.force_kill_all()

    async def _extend_stop_timeout(self, deadline: float) -> None:
        while True:
            self.notifier.extend_timeout(max(0.0, deadline - trio.current_time()) + 5.0)
            await trio.sleep(NOTIFY_EVERY)

    async def _system(
        self,
        name: str,
        fn: Callable[..., Any],
        *args: Any,
        task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """A system task: if it crashes, stop the workers and exit 70 (§3.1)."""
        try:
            if args:
                task_status.started()
                await fn(*args)
            else:
                await fn(task_status=task_status)
        except Exception:
            log.exception("supervisor.system_task_crashed", task=name)
            self.exit_code = EXIT_INTERNAL
            self._shutdown.set()

    def request_shutdown(self, within: float | None = None) -> list[str]:
        names = sorted(self._manager.controllers) if self._manager else []
        if not self._shutdown.is_set():
            self._shutdown_within = within
            self._shutdown.set()
        return names

    def force(self) -> None:
        log.warning("supervisor.forced", hint="second signal: SIGKILL to every worker group")
        self.exit_code = EXIT_FORCED
        if self._manager is not None:
            self._manager.force()
        if self._shutdown_scope is not None:
            self._shutdown_scope.deadline = min(
                self._shutdown_scope.deadline, trio.current_time() + FORCE_GRACE
            )
        self._shutdown.set()

    async def _signal_loop(self, signals: AsyncIterator[int]) -> None:
        async for signum in signals:
            name = signal.Signals(signum).name
            if signum in (signal.SIGTERM, signal.SIGINT):
                if self._shutdown.is_set():
                    self.force()
                else:
                    log.info("supervisor.signal", signal=name, action="shutdown")
                    self.request_shutdown()
            elif signum == signal.SIGHUP:
                log.info("supervisor.signal", signal=name, action="reload")
                try:
                    diff = await self.reload()
                    log.info("supervisor.reloaded", **diff)
                except ConfigRejected as exc:
                    log.error(
                        "supervisor.reload_failed",
                        error=exc.message,
                        details={"errors": exc.problems},
                    )
            elif signum == signal.SIGUSR1:
                log.info("supervisor.signal", signal=name, action="reopen logs")
                if self._manager is not None:
                    self._manager.reopen_logs()

    def _on_critical(self, name: str) -> None:
        if self.exit_code == EXIT_OK:
            self.exit_code = EXIT_CRITICAL
        self.notifier.status(f"critical worker {name} failed")
        self.request_shutdown()

    def _on_change(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    def _healthy(self) -> bool:
        """The watchdog's self-check (§15.1): the status server runs, no shutdown is stuck
        before it began, and no worker controller is wedged in one step."""
        socket_down = self.control_socket is not None and not self.control_socket.alive
        if socket_down or (self._shutdown.is_set() and self.phase != "stopping"):
            return False
        wedged = self._manager.wedged_controllers() if self._manager is not None else []
        if wedged:
            log.error("supervisor.controllers_wedged", workers=wedged)
            return False
        return True

    async def _notify_loop(self) -> None:
        """READY=1 once every autostart worker is ready or at rest (bounded by the longest
        start_timeout), STATUS= on changes (at most once a second)."""
        manager = self._manager
        assert manager is not None
        budget = max(
            (c.spec.start_timeout for c in manager.controllers.values() if c.desired == "running"),
            default=0.0,
        )
        deadline = trio.current_time() + budget + 1.0
        next_extend = trio.current_time()
        while not manager.startup_complete() and trio.current_time() < deadline:
            if self._shutdown.is_set():
                return
            now = trio.current_time()
            if now >= next_extend:
                self.notifier.extend_timeout(max(0.0, deadline - now) + 10.0)
                self.notifier.status(f"starting: {manager.summary()}")
                next_extend = now + NOTIFY_EVERY
            with trio.move_on_after(min(1.0, max(0.01, deadline - now))):
                await self._changed.wait()
        if self._shutdown.is_set():
            return
        self.phase = "running"
        self.notifier.ready(manager.summary())
        log.info("supervisor.ready", summary=manager.summary())
        while not self._shutdown.is_set():
            await self._changed.wait()
            await trio.sleep(1.0)
            if self.phase in ("running", "reloading") and not self._shutdown.is_set():
                self.notifier.status(manager.summary())

    # -- Control (status socket) --------------------------------------------------------------

    @property
    def manager(self) -> ChildManager:
        """The child manager; it exists once ``run`` has begun, and the control socket is
        only served from then on."""
        if self._manager is None:
            raise RuntimeError("the supervisor is not running yet")
        return self._manager

    @property
    def shutting_down(self) -> bool:
        return self._shutdown.is_set()

    def uptime(self) -> float:
        return time.monotonic() - self._started_mono

    def supervisor_state(self) -> str:
        if self._shutdown.is_set():
            return "stopping"
        if self.phase in ("starting", "reloading"):
            return self.phase
        manager = self._manager
        if manager is not None and any(
            c.state is WorkerState.FAILED and manager.autostarts(c.entry)
            for c in manager.controllers.values()
        ):
            return "degraded"
        return "running"

    def status_document(
        self, names: Sequence[str] | None, *, remote_rows: bool = False
    ) -> dict[str, Any]:
        assert self._manager is not None
        workers = self._manager.snapshot(names)
        views = self._manager.bus_views()
        ours = {wid for c in self._manager.controllers.values() if c.run for wid in c.run.conn_ids}
        remote = [v for v in views if v.worker_id not in ours and v.label is None]
        return {
            "supervisor": {
                "version": self.version,
                "pid": self.pid,
                "started_at": rfc3339(self.started_at),
                "uptime_s": round(self.uptime(), 3),
                "state": self.supervisor_state(),
                "config_path": str(self.config_path) if self.config_path else None,
                "state_dir": str(self.state_dir.path),
                "socket": str(self.socket_path),
                "bus": {
                    "listen": [
                        f"ws://{lc.host}:{port}"
                        for lc, port in zip(self.cfg.listeners, self.ports, strict=False)
                    ],
                    "connections": len(views),
                    "remote_workers": len(remote),
                },
                "counts": self._manager.counts(),
                "summary": self._manager.summary(),
            },
            "workers": workers,
            **({"remote": [remote_row(v) for v in remote]} if remote_rows else {}),
            **({"calls": self.call_stats()} if self.call_stats is not None else {}),
        }

    async def reload(self) -> dict[str, Any]:
        from supervisor.config.loader import ConfigError, load

        assert self._manager is not None
        async with self._reload_lock:
            previous = self.phase
            self.phase = "reloading"
            self.notifier.reloading()
            try:
                try:
                    loaded = await trio.to_thread.run_sync(
                        lambda: load(self.config_path, env=self.environ)
                    )
                except ConfigError as exc:
                    raise ConfigRejected([str(p) for p in exc.problems]) from None
                diff = await self._manager.apply(loaded.engine)
                self.cfg = loaded.engine
                return diff
            finally:
                self.phase = "running" if previous == "reloading" else previous
                if self.phase == "starting":
                    self.phase = "running" if self._manager.startup_complete() else "starting"
                self.notifier.ready(self._manager.summary())

    def check(self, path: str | None) -> dict[str, Any]:
        from supervisor.config.loader import check_config

        target = Path(path) if path else self.config_path
        return check_config(target, env=self.environ).to_json()
