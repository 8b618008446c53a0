"""A manifest worker's install step (SUPERVISOR.md §7.3).

``install: once`` (the default) runs ``scripts.install`` before the first spawn whenever
``<state>/install/<name>.done`` is missing or records another hash of
``(install command, worker_path)``; ``always`` runs it before every spawn; ``never`` or
``up --no-install`` skips it. The script runs like the worker itself (same environment and
working directory, its own process group under a keeper), within ``install_timeout``; its
output goes to the worker's log prefixed ``[install]``. A non-zero exit or a timeout (the
group is killed) fails the worker with ``INSTALL_FAILED``; other workers are not affected.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from pathlib import Path
from typing import Any

import attrs
import structlog
import trio

from supervisor.supervision.logcapture import WorkerLog
from supervisor.supervision.restart import describe_exit
from supervisor.supervision.spawn import Launcher, SpawnError, SpawnRequest

log = structlog.get_logger(__name__)

__all__ = ["InstallOutcome", "InstallRecords", "PrefixedLog", "install_digest", "run_install"]

PREFIX = "[install] "


def install_digest(command: str, worker_path: str | os.PathLike[str] | None) -> str:
    """What a ``.done`` file records: a change of either part means installing again."""
    text = f"{command}\0{os.fspath(worker_path) if worker_path else ''}"
    return hashlib.sha256(text.encode()).hexdigest()


class InstallRecords:
    """``<state>/install/<name>.done`` files; in memory when there is no state directory."""

    def __init__(self, directory: Path | None) -> None:
        self.directory = directory
        self._memory: dict[str, str] = {}

    def _path(self, name: str) -> Path | None:
        return self.directory / f"{name}.done" if self.directory is not None else None

    def done(self, name: str) -> str | None:
        path = self._path(name)
        if path is None:
            return self._memory.get(name)
        try:
            return path.read_text().strip() or None
        except OSError:
            return None

    def record(self, name: str, digest: str) -> None:
        path = self._path(name)
        if path is None:
            self._memory[name] = digest
            return
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(digest + "\n")
        os.replace(tmp, path)


class PrefixedLog:
    """The worker's log as the launcher sees it, every line prefixed ``[install]``."""

    def __init__(self, inner: WorkerLog, prefix: str = PREFIX) -> None:
        self.inner = inner
        self.prefix = prefix

    def emit(self, stream: str, text: str, **kw: Any) -> Any:
        return self.inner.emit(stream, self.prefix + text, **kw)

    async def pump(self, stream: trio.abc.ReceiveStream, name: str, pid_of: Any = None) -> None:
        await self.inner.pump(stream, name, pid_of, prefix=self.prefix)


@attrs.frozen
class InstallOutcome:
    ok: bool
    message: str = ""


async def run_install(
    launcher: Launcher,
    request: SpawnRequest,
    worker_log: WorkerLog,
    nursery: trio.Nursery,
    timeout: float,
) -> InstallOutcome:
    """Run the install command to its end (or kill its group at ``timeout``)."""
    name = request.name
    try:
        child = await launcher.launch(request, PrefixedLog(worker_log), nursery)  # type: ignore[arg-type]
    except (SpawnError, OSError) as exc:
        return InstallOutcome(False, f"the install script of {name!r} could not start: {exc}")
    try:
        with trio.move_on_after(timeout) as timer:
            await child.ended.wait()
        if timer.cancelled_caught:
            log.warning("worker.install_timeout", worker=name, timeout_s=timeout)
            return InstallOutcome(
                False,
                f"the install script of {name!r} did not finish within {timeout:g}s "
                "(install_timeout); its process group was killed",
            )
        status = child.status
        if status is not None and status.code == 0:
            return InstallOutcome(True)
        return InstallOutcome(
            False,
            f"the install script of {name!r} failed ({describe_exit(status)}); its output is "
            f"in `iii-supervisor logs {name}` (lines marked [install])",
        )
    finally:
        with trio.CancelScope(shield=True):
            if not child.ended.is_set():
                await child.kill()
                with trio.move_on_after(5.0):
                    await child.ended.wait()
            with contextlib.suppress(Exception):
                await child.sweep()
