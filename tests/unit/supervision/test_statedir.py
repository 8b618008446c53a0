"""State directory resolution, the single-instance lock, state.json."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from supervisor.supervision.statedir import (
    AlreadyRunning,
    StateDir,
    project_slug,
    resolve_socket_path,
    resolve_state_dir,
    socket_candidates,
)


def test_slug_is_readable_and_unique(tmp_path: Path) -> None:
    a = tmp_path / "proj" / "config.yaml"
    b = tmp_path / "other" / "proj" / "config.yaml"
    assert project_slug(a).startswith("proj-")
    assert project_slug(a) != project_slug(b)
    assert len(project_slug(a)) == len("proj-") + 8


def test_state_dir_priority(tmp_path: Path) -> None:
    cfg = tmp_path / "p" / "config.yaml"
    env = {"III_SUPERVISOR_STATE_DIR": "/e", "STATE_DIRECTORY": "/s:/t", "XDG_STATE_HOME": "/x"}
    assert resolve_state_dir("/flag", cfg, env) == Path("/flag")
    assert resolve_state_dir(None, cfg, env) == Path("/e")
    env.pop("III_SUPERVISOR_STATE_DIR")
    assert resolve_state_dir(None, cfg, env) == Path("/s")


def test_socket_priority(tmp_path: Path) -> None:
    cfg = tmp_path / "p" / "config.yaml"
    state = tmp_path / "state"
    assert resolve_socket_path("/flag.sock", state, cfg, {}) == Path("/flag.sock")
    assert resolve_socket_path(None, state, cfg, {"III_SUPERVISOR_SOCKET": "/e.sock"}) == Path(
        "/e.sock"
    )
    assert resolve_socket_path(None, state, cfg, {"RUNTIME_DIRECTORY": "/run/x"}) == Path(
        "/run/x/control.sock"
    )
    xdg = resolve_socket_path(None, state, cfg, {"XDG_RUNTIME_DIR": "/run/user/1"})
    assert xdg.parent == Path("/run/user/1/iii-supervisor") and xdg.name.startswith("p-")
    client = socket_candidates(None, state, cfg, {}, client=True)
    # The shipped unit's socket last: a project's own supervisor wins (docs/cli.md).
    assert client[-1] == Path("/run/iii-supervisor/control.sock")
    assert client[-2] == state / "control.sock"


def test_lock_refuses_a_second_holder(tmp_path: Path) -> None:
    first = StateDir(tmp_path / "s")
    first.lock()
    try:
        with pytest.raises(AlreadyRunning) as info:
            StateDir(tmp_path / "s").lock()
        assert info.value.pid == os.getpid()
        assert str(os.getpid()) in str(info.value)
    finally:
        first.unlock()
    again = StateDir(tmp_path / "s")
    again.lock()
    again.unlock()


def test_state_json_is_atomic_0600_and_corruption_is_survived(tmp_path: Path) -> None:
    sd = StateDir(tmp_path / "s")
    sd.prepare()
    sd.write_state({"clean_shutdown": True, "workers": {}})
    assert (sd.state_file.stat().st_mode & 0o777) == 0o600
    assert json.loads(sd.state_file.read_text())["version"] == 1
    sd.state_file.write_text("{not json")
    assert sd.read_state() is None
    assert any(p.name.startswith("state.json.corrupt-") for p in sd.path.iterdir())
    assert sd.sweep_orphans() == []


def test_worker_config_file_is_0600_json(tmp_path: Path) -> None:
    sd = StateDir(tmp_path / "s")
    path = sd.write_worker_config("api#1", {"port": 8080})
    assert json.loads(path.read_text()) == {"port": 8080}
    assert (path.stat().st_mode & 0o777) == 0o600
