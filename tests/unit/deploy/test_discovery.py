"""Where the CLI looks for a supervisor (docs/cli.md#finding-the-supervisor), as pure functions:
flags, ``III_SUPERVISOR_SOCKET``, the config's ``supervisor:`` block over iii-supervisor.yaml,
then the per-project paths, the systemd unit's socket last; and why a path does not answer."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from supervisor.cli import build_parser, socket_candidates_for
from supervisor.config import load
from supervisor.supervision.statedir import (
    SYSTEMD_SOCKET,
    configured_locations,
    project_slug,
    socket_problem,
)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for key in list(os.environ):
        if key.startswith("III_SUPERVISOR_") or key in (
            "RUNTIME_DIRECTORY",
            "STATE_DIRECTORY",
            "XDG_RUNTIME_DIR",
        ):
            monkeypatch.delenv(key)
    yield


def candidates(*argv: str) -> list[Path]:
    return socket_candidates_for(build_parser().parse_args([*argv, "status"]))


def project(tmp_path: Path, text: str = "workers: []\n") -> Path:
    (tmp_path / "proj").mkdir(exist_ok=True)
    config = tmp_path / "proj" / "config.yaml"
    config.write_text(text)
    return config


def test_config_implies_the_project_paths_and_systemd_comes_last(tmp_path: Path) -> None:
    config = project(tmp_path)
    found = candidates("-c", str(config), "--state-dir", str(tmp_path / "st"))
    slug = project_slug(config)
    assert slug.startswith("proj-")
    assert found[-1] == SYSTEMD_SOCKET
    assert found[-2] == tmp_path / "st" / "control.sock"
    if os.geteuid() == 0:
        assert found[0] == Path("/run/iii-supervisor") / f"{slug}.sock"


def test_supervisor_block_in_config_yaml_wins_over_iii_supervisor_yaml(tmp_path: Path) -> None:
    config = project(
        tmp_path, "supervisor:\n  socket: ./block.sock\n  state_dir: ./state\nworkers: []\n"
    )
    (config.parent / "iii-supervisor.yaml").write_text("socket: /elsewhere.sock\n")
    assert candidates("-c", str(config)) == [config.parent / "block.sock"]
    # The loader reads the block too, into the same settings `up` resolves its socket from.
    settings = load(config).settings.values
    assert settings["socket"] == "./block.sock" and settings["state_dir"] == "./state"


def test_iii_supervisor_yaml_and_interpolation(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = project(tmp_path)
    (config.parent / "iii-supervisor.yaml").write_text("socket: ${SOCK_DIR:/x}/ctl.sock\n")
    assert candidates("-c", str(config)) == [Path("/x/ctl.sock")]
    monkeypatch.setenv("SOCK_DIR", str(tmp_path))
    assert configured_locations(config) == {"socket": f"{tmp_path}/ctl.sock"}


def test_flag_and_environment_win_over_the_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = project(tmp_path, "supervisor: {socket: /from-config.sock}\nworkers: []\n")
    monkeypatch.setenv("III_SUPERVISOR_SOCKET", "/from-env.sock")
    assert candidates("-c", str(config)) == [Path("/from-env.sock")]
    assert candidates("-c", str(config), "--socket", "/flag.sock") == [Path("/flag.sock")]


def test_runtime_directory_comes_first(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUNTIME_DIRECTORY", str(tmp_path / "run"))
    assert candidates("-c", str(project(tmp_path)))[0] == tmp_path / "run" / "control.sock"


def test_an_unreadable_or_broken_config_sets_nothing(tmp_path: Path) -> None:
    config = project(tmp_path, "supervisor: [not, a, mapping\n")
    assert configured_locations(config) == {}
    assert configured_locations(tmp_path / "missing.yaml") == {}


def test_socket_problem_names_the_reason_and_never_raises(tmp_path: Path) -> None:
    assert socket_problem(tmp_path / "none.sock") == "no such socket"
    (tmp_path / "file").write_text("")
    assert socket_problem(tmp_path / "file") == "not a socket"
    path = tmp_path / "s.sock"
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(path))
        assert socket_problem(path) is None
