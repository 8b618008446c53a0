"""The state directory: its location, the single-instance lock, ``state.json``, worker files.

Locations follow SUPERVISOR.md §4.4 and §13.1 (``--state-dir`` → ``III_SUPERVISOR_STATE_DIR``
→ the config's ``state_dir`` → systemd's ``$STATE_DIRECTORY`` → XDG / ``/var/lib``; the status
socket likewise), so that the CLI, given the same config or run from the same project, finds the
server without flags (docs/cli.md#finding-the-supervisor). ``state.json`` is written atomically
and is only ever used for the startup orphan sweep (§10.3): we adopt nothing.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import signal
import stat
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import structlog

from supervisor.supervision import procfs

__all__ = [
    "AlreadyRunning",
    "StateDir",
    "anchored",
    "client_candidates",
    "configured_locations",
    "project_slug",
    "resolve_state_dir",
    "resolve_socket_path",
    "socket_candidates",
    "socket_problem",
    "SUN_PATH_MAX",
]

log = structlog.get_logger(__name__)

STATE_VERSION = 1
SUN_PATH_MAX = 107
SYSTEMD_SOCKET = Path("/run/iii-supervisor/control.sock")
SETTINGS_FILE = "iii-supervisor.yaml"  # the loader's SUPERVISOR_YAML, next to config.yaml
# The loader's ``${NAME}`` / ``${NAME:default}`` (WORKERS.md §1.3). Repeated here because the
# config room costs the CLI ~150 ms to import, and `status`/`health` are exec probes (§14).
_PLACEHOLDER = re.compile(r"\$\{([^}:]+)(?::([^}]*))?\}")


class AlreadyRunning(RuntimeError):
    def __init__(self, path: Path, pid: int | None) -> None:
        who = f"pid {pid}" if pid else "another process"
        super().__init__(
            f"another iii-supervisor ({who}) is already running with state directory {path}"
        )
        self.path = path
        self.pid = pid


def project_dir(config_path: Path | None) -> Path:
    if config_path is None:
        return Path.cwd().resolve()
    return Path(config_path).resolve().parent


def project_slug(config_path: Path | None) -> str:
    """``<dir name>-<8 hex of sha256(canonical dir)>``: readable, and unique per project."""
    d = project_dir(config_path)
    digest = hashlib.sha256(str(d).encode()).hexdigest()[:8]
    name = d.name or "root"
    return f"{name}-{digest}"


def resolve_state_dir(
    explicit: str | os.PathLike[str] | None,
    config_path: Path | None,
    environ: Mapping[str, str] | None = None,
) -> Path:
    env = os.environ if environ is None else environ
    if explicit:
        return Path(explicit)
    if env.get("III_SUPERVISOR_STATE_DIR"):
        return Path(env["III_SUPERVISOR_STATE_DIR"])
    if env.get("STATE_DIRECTORY"):
        # systemd may pass several, colon-separated; ours is the first.
        return Path(env["STATE_DIRECTORY"].split(":")[0])
    slug = project_slug(config_path)
    if os.geteuid() == 0:
        return Path("/var/lib/iii-supervisor") / slug
    base = env.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "iii-supervisor" / slug


def socket_candidates(
    explicit: str | os.PathLike[str] | None,
    state_dir: Path,
    config_path: Path | None,
    environ: Mapping[str, str] | None = None,
    *,
    client: bool = False,
) -> list[Path]:
    """Status socket paths in priority order (§13.1); the server binds the first.

    An explicit path (``--socket``, ``III_SUPERVISOR_SOCKET``, the config's ``socket``) is the
    only candidate. The client also tries the shipped unit's ``/run/iii-supervisor/control.sock``
    — last, unlike §13.1, so that a project's own supervisor wins over a system one.
    """
    env = os.environ if environ is None else environ
    if explicit:
        return [Path(explicit)]
    if env.get("III_SUPERVISOR_SOCKET"):
        return [Path(env["III_SUPERVISOR_SOCKET"])]
    out: list[Path] = []
    if env.get("RUNTIME_DIRECTORY"):
        out.append(Path(env["RUNTIME_DIRECTORY"].split(":")[0]) / "control.sock")
    slug = project_slug(config_path)
    if env.get("XDG_RUNTIME_DIR"):
        out.append(Path(env["XDG_RUNTIME_DIR"]) / "iii-supervisor" / f"{slug}.sock")
    elif os.geteuid() == 0:
        out.append(Path("/run/iii-supervisor") / f"{slug}.sock")
    out.append(state_dir / "control.sock")
    if client and SYSTEMD_SOCKET not in out:
        out.append(SYSTEMD_SOCKET)
    return out


def socket_problem(path: Path) -> str | None:
    """Why ``path`` cannot be a status socket to connect to, or None when it may be one.

    Never raises: a directory we may not search (``/run/iii-supervisor`` of a root supervisor,
    seen by a user) is a reason, not an error.
    """
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return "no such socket"
    except PermissionError:
        return "permission denied"
    except OSError as exc:
        return exc.strerror or str(exc)
    return None if stat.S_ISSOCK(mode) else "not a socket"


def configured_locations(
    config_path: Path | None, environ: Mapping[str, str] | None = None
) -> dict[str, str]:
    """``socket`` and ``state_dir`` as a config sets them: its ``supervisor:`` block, over
    ``iii-supervisor.yaml`` next to it (the loader's order). For the CLI, which must find a
    running ``up`` without loading the whole config; a file it cannot read or parse sets
    nothing (``up`` and ``check`` report those)."""
    if config_path is None:
        return {}
    env = os.environ if environ is None else environ
    found: dict[str, str] = {}
    for path, block in ((config_path.parent / SETTINGS_FILE, None), (config_path, "supervisor")):
        data = _read_yaml(path, env)
        if block is not None:
            data = data.get(block) if isinstance(data, dict) else None
        if isinstance(data, dict):
            for key in ("socket", "state_dir"):
                if isinstance(data.get(key), str) and data[key]:
                    found[key] = data[key]
    return found


def anchored(settings: Mapping[str, Any], config_path: Path | None) -> dict[str, Any]:
    """Relative ``socket``/``state_dir`` settings are relative to the config's folder, so that
    ``up`` and a client run from elsewhere agree on them."""
    out = dict(settings)
    for key in ("socket", "state_dir"):
        value = out.get(key)
        if isinstance(value, str) and config_path is not None and not Path(value).is_absolute():
            out[key] = str(Path(config_path).parent / value)
    return out


def client_candidates(
    config_path: Path | None,
    socket: str | os.PathLike[str] | None = None,
    state_dir: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> list[Path]:
    """The sockets a client tries for ``up`` with this config, flags first, as ``up`` resolves
    them: flag, then ``III_SUPERVISOR_*``, then the config's settings, then the defaults."""
    env = os.environ if environ is None else environ
    settings = anchored(configured_locations(config_path, env), config_path)
    if socket is None and not env.get("III_SUPERVISOR_SOCKET"):
        socket = settings.get("socket")
    if state_dir is None and not env.get("III_SUPERVISOR_STATE_DIR"):
        state_dir = settings.get("state_dir")
    resolved = resolve_state_dir(state_dir, config_path, env)
    return socket_candidates(socket, resolved, config_path, env, client=True)


def _read_yaml(path: Path, env: Mapping[str, str]) -> Any:
    import yaml  # only when there is a config to read: exec probes usually have none

    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None

    def substitute(m: re.Match[str]) -> str:
        value = env.get(m.group(1))
        if value is None:
            value = m.group(2)
        return m.group(0) if value is None else value

    try:
        return yaml.safe_load(_PLACEHOLDER.sub(substitute, text))
    except yaml.YAMLError:
        return None


def resolve_socket_path(
    explicit: str | os.PathLike[str] | None,
    state_dir: Path,
    config_path: Path | None,
    environ: Mapping[str, str] | None = None,
) -> Path:
    return socket_candidates(explicit, state_dir, config_path, environ)[0]


class StateDir:
    def __init__(self, path: Path, *, logs_dir: Path | None = None) -> None:
        self.path = Path(path)
        env_logs = os.environ.get("LOGS_DIRECTORY")
        self.logs_dir = logs_dir or (
            Path(env_logs.split(":")[0]) if env_logs else self.path / "logs"
        )
        self._lock_fd: int | None = None

    @property
    def data_dir(self) -> Path:
        return self.path / "data"

    @property
    def config_dir(self) -> Path:
        return self.path / "config"

    @property
    def state_file(self) -> Path:
        return self.path / "state.json"

    def prepare(self) -> None:
        self.path.mkdir(parents=True, exist_ok=True, mode=0o700)
        for sub, mode in ((self.data_dir, 0o700), (self.config_dir, 0o700), (self.logs_dir, 0o750)):
            sub.mkdir(parents=True, exist_ok=True, mode=mode)

    # -- the single-instance lock ---------------------------------------------------------

    def lock(self) -> None:
        """``flock`` ``<state>/lock`` for the supervisor's life, or raise ``AlreadyRunning``."""
        self.path.mkdir(parents=True, exist_ok=True, mode=0o700)
        lock_path = self.path / "lock"
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            try:
                raw = os.pread(fd, 64, 0).decode().strip()
                pid = int(raw) if raw.isdigit() else None
            finally:
                os.close(fd)
            raise AlreadyRunning(self.path, pid) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._lock_fd = fd

    def unlock(self) -> None:
        if self._lock_fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._lock_fd)
            self._lock_fd = None

    # -- state.json -----------------------------------------------------------------------

    def read_state(self) -> dict[str, Any] | None:
        try:
            raw = self.state_file.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            log.warning("state.unreadable", path=str(self.state_file), error=str(exc))
            return None
        try:
            data = json.loads(raw)
            if not isinstance(data, dict):
                raise ValueError("not an object")
            return data
        except ValueError as exc:
            dest = self.state_file.with_name(f"state.json.corrupt-{int(time.time())}")
            with contextlib.suppress(OSError):
                os.replace(self.state_file, dest)
            log.warning(
                "state.corrupt",
                path=str(self.state_file),
                moved_to=str(dest),
                error=str(exc),
                hint="start-up continues; nothing is adopted",
            )
            return None

    def write_state(self, data: Mapping[str, Any]) -> None:
        """Atomically: temp file, fsync, rename (blocking; call from a thread if hot)."""
        payload = json.dumps({"version": STATE_VERSION, **data}, indent=1, default=str).encode()
        _atomic_write(self.state_file, payload, 0o600)

    def write_worker_config(self, name: str, config: Any) -> Path:
        """The 0600 file ``III_CONFIG`` points at: the entry's ``config:`` block as JSON
        (JSON is also YAML, so readers of either format can load it)."""
        self.config_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        path = self.config_dir / f"{_file_name(name)}.json"
        _atomic_write(
            path, json.dumps(config if config is not None else {}, default=str).encode(), 0o600
        )
        return path

    # -- §10.3 startup sweep --------------------------------------------------------------

    def sweep_orphans(self, *, grace: float = 2.0) -> list[int]:
        """Kill leftovers recorded by a previous run that died without cleaning up.

        A pid is ours only if it still carries the recorded identity: the recorded (pid,
        start time), or membership of a recorded group together with ``III_ENGINE_PID`` of
        the previous supervisor in its environment. Nothing else is ever signalled.
        """
        state = self.read_state()
        if not state:
            return []
        sup = state.get("supervisor") or {}
        old_pid = sup.get("pid")
        if old_pid and old_pid != os.getpid():
            st = procfs.read_stat(int(old_pid))
            if st is not None and st.starttime == sup.get("start_time"):
                raise AlreadyRunning(self.path, int(old_pid))
        table = procfs.ProcessTable(max_age=0)
        targets: set[int] = set()
        for rec in (state.get("workers") or {}).values():
            if not isinstance(rec, dict):
                continue
            for pid_key, st_key in (("keeper_pid", "keeper_start_time"), ("pid", "start_time")):
                recorded = rec.get(pid_key)
                if not isinstance(recorded, int) or recorded <= 0:
                    continue
                st = procfs.read_stat(recorded)
                if st is not None and st.state != "Z" and st.starttime == rec.get(st_key):
                    targets.add(recorded)
            pgid = rec.get("pgid")
            if pgid and old_pid:
                for pid in table.members(int(pgid), force=True):
                    if _has_env(pid, "III_ENGINE_PID", str(old_pid)):
                        targets.add(pid)
        targets.discard(os.getpid())
        if not targets:
            return []
        swept = sorted(targets)
        for pid in swept:
            _kill(pid, signal.SIGTERM)
            _kill(pid, signal.SIGCONT)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and any(_alive(p) for p in swept):
            time.sleep(0.05)
        for pid in swept:
            if _alive(pid):
                _kill(pid, signal.SIGKILL)
        log.warning("supervisor.orphans_swept", pids=swept)
        return swept


def _has_env(pid: int, key: str, value: str) -> bool:
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            env = f.read()
    except OSError:
        return False
    return f"{key}={value}".encode() in env.split(b"\0")


def _alive(pid: int) -> bool:
    st = procfs.read_stat(pid)
    return st is not None and st.state != "Z"


def _kill(pid: int, sig: int) -> None:
    with contextlib.suppress(OSError):
        os.kill(pid, sig)


def _file_name(name: str) -> str:
    return "".join(c if c.isalnum() or c in "._#-" else "_" for c in name)


def _atomic_write(path: Path, payload: bytes, mode: int) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(payload)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
