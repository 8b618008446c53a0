"""Finding a running supervisor as a person would: from another directory with ``-c``, through
the config's ``supervisor:`` block, and as an unprivileged user next to a root supervisor
(``/run/iii-supervisor`` then exists and is 0700 — ``status`` once died there with EACCES).
When nothing answers, ``status`` names every path it tried and exits 4.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.support import BIN, free_port

CLI = str(BIN / "iii-supervisor")


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("III_")}
    for key in ("RUNTIME_DIRECTORY", "STATE_DIRECTORY", "XDG_RUNTIME_DIR", "NOTIFY_SOCKET"):
        env.pop(key, None)
    env.update(extra)
    return env


def write_project(folder: Path, extra: dict[str, object] | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    config = folder / "config.yaml"
    listener = {"name": "iii-worker-manager", "config": {"host": "127.0.0.1", "port": free_port()}}
    config.write_text(yaml.safe_dump({**(extra or {}), "workers": [listener]}))
    return config


class Running:
    def __init__(
        self, cwd: Path, env: dict[str, str], user: list[str] | None = None, *args: str
    ) -> None:
        self.cwd, self.env, self.user = cwd, env, user or []
        self.log = cwd / "up.log"
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(
                [*self.user, CLI, "up", "--log-format", "json", *args],
                cwd=cwd,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )

    def status(self, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*self.user, CLI, "status", *args],
            cwd=cwd or self.cwd,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=30,
        )

    def wait_ready(self, *args: str) -> None:
        deadline = time.monotonic() + 30
        while self.status(*args).returncode != 0:
            assert self.proc.poll() is None, self.log.read_text()
            assert time.monotonic() < deadline, self.status(*args).stderr + self.log.read_text()
            time.sleep(0.2)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)


@pytest.fixture
def running() -> Iterator[list[Running]]:
    started: list[Running] = []
    yield started
    for r in started:
        r.stop()


def test_status_from_another_directory_finds_it_with_c(
    tmp_path: Path, running: list[Running]
) -> None:
    config = write_project(tmp_path / "shop")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    up = Running(config.parent, clean_env(III_SUPERVISOR_STATE_DIR=str(tmp_path / "state")))
    running.append(up)
    up.wait_ready()  # in the project folder: its config.yaml says which supervisor
    found = up.status("-c", str(config), cwd=elsewhere)
    assert found.returncode == 0, found.stderr
    assert found.stdout.split()[0] == "configuration"
    before = subprocess.run(  # -c before the verb, as supervisorctl users type it
        [CLI, "-c", str(config), "status"], cwd=elsewhere, env=up.env, capture_output=True
    )
    assert before.returncode == 0
    lost = up.status(cwd=elsewhere)
    assert lost.returncode == 4, lost.stdout + lost.stderr
    assert "no supervisor answers" in lost.stderr and "try `-c`" in lost.stderr
    tried = [line.strip() for line in lost.stderr.splitlines()[1:]]
    assert tried and all(": " in line for line in tried), lost.stderr
    assert any(line.startswith(str(tmp_path / "state" / "control.sock")) for line in tried)
    assert "Traceback" not in lost.stderr


def test_supervisor_block_in_config_yaml_places_the_socket(
    tmp_path: Path, running: list[Running]
) -> None:
    config = write_project(
        tmp_path / "proj", {"supervisor": {"socket": "./run/ctl.sock", "state_dir": "./state"}}
    )
    (config.parent / "run").mkdir()
    # Started from another folder: the block's relative paths are the config's.
    up = Running(tmp_path, clean_env(), None, "-c", str(config))
    running.append(up)
    up.wait_ready("-c", str(config))
    assert (config.parent / "run" / "ctl.sock").is_socket()
    assert (config.parent / "state" / "lock").exists()
    assert up.status(cwd=config.parent).returncode == 0  # its own folder, no flags


def nobody() -> list[str]:
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root and setpriv to run a command as the unprivileged user nobody")
    pw = pwd.getpwnam("nobody")
    return ["setpriv", f"--reuid={pw.pw_uid}", f"--regid={pw.pw_gid}", "--clear-groups"]


def test_unprivileged_status_next_to_a_root_supervisor(
    tmp_path: Path, running: list[Running]
) -> None:
    as_nobody = nobody()
    config = write_project(tmp_path / "rootproj")
    root = Running(config.parent, clean_env(III_SUPERVISOR_STATE_DIR=str(tmp_path / "state")))
    running.append(root)
    root.wait_ready()
    socket_path = Path(json.loads(root.status("--json").stdout)["supervisor"]["socket"])
    assert socket_path.parent == Path("/run/iii-supervisor")
    assert socket_path.parent.stat().st_mode & 0o077 == 0

    # A user's `status` cannot enter /run/iii-supervisor: it says so and exits 4.
    denied = subprocess.run(
        [*as_nobody, CLI, "status", "-c", str(config)],
        cwd="/",
        env=clean_env(HOME="/nonexistent"),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert denied.returncode == 4, denied.stdout + denied.stderr
    assert "permission denied" in denied.stderr and "Traceback" not in denied.stderr

    # The same user's own supervisor is found although that directory exists.
    home = Path(tempfile.mkdtemp(prefix="iii-nobody-"))
    try:
        os.chown(home, pwd.getpwnam("nobody").pw_uid, pwd.getpwnam("nobody").pw_gid)
        own = write_project(home / "proj")
        for path in (own.parent, own):
            os.chown(path, pwd.getpwnam("nobody").pw_uid, pwd.getpwnam("nobody").pw_gid)
        mine = Running(
            own.parent,
            clean_env(HOME=str(home), III_SUPERVISOR_STATE_DIR=str(home / "state")),
            as_nobody,
        )
        running.append(mine)
        # Its actors may not start here (this checkout's interpreter can live where nobody
        # may not exec it from a child); answering at all is what finding it means: 0 or 3.
        deadline = time.monotonic() + 30
        while (shown := mine.status()).returncode not in (0, 3):
            assert mine.proc.poll() is None, mine.log.read_text()
            assert time.monotonic() < deadline, shown.stderr + mine.log.read_text()
            time.sleep(0.2)
        assert shown.stdout.split()[0] == "configuration", shown.stdout
        assert "Traceback" not in shown.stderr, shown.stderr
        mine.stop()
    finally:
        shutil.rmtree(home, ignore_errors=True)
