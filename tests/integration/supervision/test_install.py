"""The install step of manifest workers (SUPERVISOR.md §7.3), under a real ``up``.

The worker's ``scripts.install`` appends a line to a counter file in the worker's directory,
so each test can count how often it ran; ``scripts.start`` is a plain sleeper.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.integration.supervision.conftest import Up, wait_for

UpFactory = Callable[..., Up]


def make_worker(root: Path, name: str, install: str) -> Path:
    path = root / name
    path.mkdir(parents=True)
    (path / "iii.worker.yaml").write_text(
        f"name: {name}\nscripts:\n  install: {install!r}\n  start: sleep 1000\n"
    )
    return path


def entry(path: Path, name: str, **supervise: Any) -> dict[str, Any]:
    supervise.setdefault("readiness", "process")
    supervise.setdefault("min_uptime", "200ms")
    return {"name": name, "worker_path": str(path), "supervise": supervise}


def runs(path: Path) -> int:
    counter = path / "installed.txt"
    return len(counter.read_text().splitlines()) if counter.exists() else 0


def test_install_once_runs_before_the_first_spawn_only(
    up_factory: UpFactory, tmp_path: Path
) -> None:
    path = make_worker(
        tmp_path, "svc", 'echo "installing $III_WORKER_NAME"; echo run >> installed.txt'
    )
    up = up_factory([entry(path, "svc")])
    up.start()
    up.wait_state("svc", "ready")
    assert runs(path) == 1
    logs = up.cli("logs", "svc", "-n", "50").stdout
    assert "[install] installing svc" in logs  # the worker's env, the [install] prefix
    assert up.cli("restart", "svc").returncode == 0
    up.wait_state("svc", "ready")
    assert runs(path) == 1  # done-file present and unchanged: not again
    done = list((up.state_dir / "install").glob("svc.done"))
    assert done and len(done[0].read_text().strip()) == 64


def test_install_always_runs_before_every_start(up_factory: UpFactory, tmp_path: Path) -> None:
    path = make_worker(tmp_path, "every", "echo run >> installed.txt")
    up = up_factory([entry(path, "every", install="always")])
    up.start()
    up.wait_state("every", "ready")
    assert up.cli("restart", "every").returncode == 0
    up.wait_state("every", "ready")
    assert runs(path) == 2


def test_failed_install_fails_only_that_worker(up_factory: UpFactory, tmp_path: Path) -> None:
    bad = make_worker(tmp_path, "bad", "echo compiling; echo 'missing libfoo' >&2; exit 3")
    good = make_worker(tmp_path, "good", "true")
    up = up_factory([entry(bad, "bad"), entry(good, "good")])
    up.start()
    failed = up.wait_state("bad", "failed")
    assert failed["last_error"]["code"] == "INSTALL_FAILED"
    assert "exit 3" in failed["last_error"]["message"]
    assert failed["spawns"] == 0  # the worker itself never started
    assert up.wait_state("good", "ready")["state"] == "ready"
    logs = up.cli("logs", "bad", "-n", "50").stdout
    assert "[install] missing libfoo" in logs
    assert not (up.state_dir / "install" / "bad.done").exists()


def test_install_timeout_kills_the_group(up_factory: UpFactory, tmp_path: Path) -> None:
    path = make_worker(tmp_path, "slow", "sleep 1000 & sleep 1000")
    up = up_factory([entry(path, "slow", install_timeout="1s")])
    up.start()
    failed = up.wait_state("slow", "failed", timeout=20)
    assert failed["last_error"]["code"] == "INSTALL_FAILED"
    assert "install_timeout" in failed["last_error"]["message"]
    # up_factory's teardown fails the test if either sleep survived


def test_no_install_flag_and_install_never_skip_it(up_factory: UpFactory, tmp_path: Path) -> None:
    flagged = make_worker(tmp_path, "flagged", "echo run >> installed.txt")
    never = make_worker(tmp_path, "never", "echo run >> installed.txt")
    up = up_factory(
        [entry(flagged, "flagged"), entry(never, "never", install="never")],
        extra_args=["--no-install"],
    )
    up.start()
    up.wait_state("flagged", "ready")
    up.wait_state("never", "ready")
    assert runs(flagged) == 0 and runs(never) == 0


def test_stop_during_install_cancels_it(up_factory: UpFactory, tmp_path: Path) -> None:
    path = make_worker(tmp_path, "long", "echo started >> installed.txt; exec sleep 1000")
    up = up_factory([entry(path, "long")])
    up.start()
    wait_for(lambda: runs(path) == 1, 10.0)
    assert up.status("long")["phase"] == "installing"
    assert up.cli("stop", "long").returncode == 0
    assert up.wait_state("long", "stopped")["spawns"] == 0
