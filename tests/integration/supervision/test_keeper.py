"""The keeper with real processes: exec errors, exit statuses, sweeping, the orphan path."""

from __future__ import annotations

import os
import signal
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

from supervisor.config.model import LogSettings
from supervisor.supervision.logcapture import WorkerLog
from supervisor.supervision.spawn import KeeperChild, KeeperLauncher, SpawnError, SpawnRequest
from tests.integration.supervision.conftest import alive, marked_pids, pgrp_of
from tests.unit.supervision.fakes import eventually


def request(
    tmp_path: Path,
    marker: str,
    *,
    shell: str | None = None,
    argv: tuple[str, ...] | None = None,
    **kw: object,
) -> SpawnRequest:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "III_TEST_RUN": marker,
        "III_ENGINE_PID": str(os.getpid()),
    }
    return SpawnRequest(name="t", argv=argv, shell=shell, env=env, cwd=str(tmp_path), **kw)  # type: ignore[arg-type]


def quiet_log() -> WorkerLog:
    return WorkerLog("t", LogSettings(file=False, to_supervisor_log=False))


async def wait_gone(marker: str, within: float) -> None:
    await eventually(lambda: not marked_pids(marker), within)


@pytest.fixture
def marker() -> Iterator[str]:
    m = str(uuid.uuid4())
    yield m
    for pid in marked_pids(m):  # never leak into other tests
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


async def test_exit_code_and_output_are_reported(tmp_path: Path, marker: str) -> None:
    wl = quiet_log()
    async with trio.open_nursery() as nursery:
        child = await KeeperLauncher().launch(
            request(tmp_path, marker, shell="echo out; echo err >&2; exit 7"), wl, nursery
        )
        assert child.pgid == child.keeper_pid and child.pid != child.keeper_pid
        with trio.fail_after(10):
            await child.ended.wait()
    assert child.status is not None and child.status.code == 7 and child.status.signal is None
    lines = {(r.stream, r.line) for r in wl.tail(10)}
    assert ("stdout", "out") in lines and ("stderr", "err") in lines


async def test_signal_death_is_reported_by_the_keeper(tmp_path: Path, marker: str) -> None:
    async with trio.open_nursery() as nursery:
        child = await KeeperLauncher().launch(
            request(tmp_path, marker, argv=("sleep", "1000")), quiet_log(), nursery
        )
        assert child.pid is not None
        os.kill(child.pid, signal.SIGKILL)  # the worker only, not the keeper
        with trio.fail_after(10):
            await child.ended.wait()
    assert child.status is not None and child.status.signal == signal.SIGKILL
    assert isinstance(child, KeeperChild) and child.reported == child.status  # from `exited`


async def test_exec_failure_names_the_errno_and_path(tmp_path: Path, marker: str) -> None:
    missing = str(tmp_path / "nope")
    async with trio.open_nursery() as nursery:
        with pytest.raises(SpawnError) as info:
            await KeeperLauncher().launch(
                request(tmp_path, marker, argv=(missing,)), quiet_log(), nursery
            )
    assert info.value.errno_name == "ENOENT"
    assert info.value.path == missing
    not_exec = tmp_path / "plain.txt"
    not_exec.write_text("hi")
    async with trio.open_nursery() as nursery:
        with pytest.raises(SpawnError) as info:
            await KeeperLauncher().launch(
                request(tmp_path, marker, argv=(str(not_exec),)), quiet_log(), nursery
            )
    assert info.value.errno_name == "EACCES"


async def test_missing_working_directory_is_a_spawn_error(tmp_path: Path, marker: str) -> None:
    req = request(tmp_path / "missing", marker, argv=("true",))
    async with trio.open_nursery() as nursery:
        with pytest.raises(SpawnError) as info:
            await KeeperLauncher().launch(req, quiet_log(), nursery)
    assert "missing" in str(info.value)


async def test_main_exit_sweeps_group_members_and_escapees(tmp_path: Path, marker: str) -> None:
    """The worker leaves a background child and a setsid'd grandchild behind: both go."""
    script = "sleep 1000 & setsid sleep 1000 & sleep 0.3; exit 0"
    async with trio.open_nursery() as nursery:
        child = await KeeperLauncher().launch(
            request(tmp_path, marker, shell=script, sweep_grace=1.0), quiet_log(), nursery
        )
        with trio.fail_after(10):
            await child.ended.wait()
    assert child.status is not None and child.status.code == 0
    await wait_gone(marker, 3.0)


async def test_sweep_escalates_to_sigkill_after_grace(tmp_path: Path, marker: str) -> None:
    script = "sh -c \"trap '' TERM; while :; do sleep 0.05; done\" & sleep 0.3; exit 0"
    async with trio.open_nursery() as nursery:
        child = await KeeperLauncher().launch(
            request(tmp_path, marker, shell=script, sweep_grace=0.5), quiet_log(), nursery
        )
        with trio.fail_after(10):
            await child.ended.wait()
    await wait_gone(marker, 3.0)


async def test_control_socket_eof_ends_the_whole_tree(tmp_path: Path, marker: str) -> None:
    """The lifeline: when the supervisor's end closes (as at its death), the keeper TERMs
    the group and the escapees, waits orphan_grace, KILLs what is left, then itself."""
    script = "trap '' TERM; setsid sleep 1000 & while :; do sleep 0.05; done"
    async with trio.open_nursery() as nursery:
        child = await KeeperLauncher().launch(
            request(tmp_path, marker, shell=script, orphan_grace=0.5), quiet_log(), nursery
        )
        assert isinstance(child, KeeperChild)
        # keeper, sh, the setsid sleep, the loop's sleep
        await eventually(lambda: len(marked_pids(marker)) >= 4, 5)
        assert child._ctl is not None
        await child._ctl.aclose()
        with trio.fail_after(10):
            await child.ended.wait()
    assert child.status is not None and child.status.signal == signal.SIGKILL  # no `exited`
    await wait_gone(marker, 3.0)


async def test_kill_op_takes_the_escapees_too(tmp_path: Path, marker: str) -> None:
    script = "trap '' TERM; setsid sleep 1000 & while :; do sleep 0.05; done"
    async with trio.open_nursery() as nursery:
        child = await KeeperLauncher().launch(
            request(tmp_path, marker, shell=script), quiet_log(), nursery
        )
        await eventually(lambda: len(marked_pids(marker)) >= 4, 5)
        await child.kill()
        assert child.ended.is_set()
    assert child.status is not None and child.status.signal == signal.SIGKILL
    await wait_gone(marker, 3.0)


async def test_worker_gets_lifeline_and_is_in_the_keepers_group(
    tmp_path: Path, marker: str
) -> None:
    r, w = os.pipe()
    try:
        req = request(
            tmp_path,
            marker,
            shell='test -n "$III_LIFELINE_FD" && test -z "$III_KEEPER_FD" && sleep 1000',
            pass_fds=(r,),
        )
        req.env["III_LIFELINE_FD"] = str(r)
        async with trio.open_nursery() as nursery:
            child = await KeeperLauncher().launch(req, quiet_log(), nursery)
            assert child.pid is not None
            await trio.sleep(0.3)
            assert alive(child.pid)
            assert pgrp_of(child.pid) == child.pgid
            fds = os.listdir(f"/proc/{child.pid}/fd")
            assert str(r) in fds
            child.signal_group(signal.SIGTERM)
            with trio.fail_after(10):
                await child.ended.wait()
    finally:
        os.close(r)
        os.close(w)


async def test_nice_is_inherited_by_the_worker_from_its_first_instruction(
    tmp_path: Path, marker: str
) -> None:
    wl = quiet_log()
    code = "import os; print('nice', os.getpriority(os.PRIO_PROCESS, 0))"
    async with trio.open_nursery() as nursery:
        child = await KeeperLauncher().launch(
            request(tmp_path, marker, argv=(sys.executable, "-c", code), nice=7), wl, nursery
        )
        with trio.fail_after(10):
            await child.ended.wait()
        plain = await KeeperLauncher().launch(
            request(tmp_path, marker, argv=(sys.executable, "-c", code)), wl, nursery
        )
        with trio.fail_after(10):
            await plain.ended.wait()
    own = os.getpriority(os.PRIO_PROCESS, 0)
    printed = [r.line for r in wl.tail(10) if r.line.startswith("nice")]
    assert printed == ["nice 7", f"nice {own}"]  # without ``nice``: the supervisor's
