"""Helpers for the configuration tests: write a project tree, load it, collect the report.

Every test works in its own temporary directory; nothing reads the real environment.
"""

from __future__ import annotations

import textwrap
from collections.abc import Callable, Mapping
from pathlib import Path

import pytest

from supervisor.config import ConfigError, load_config


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty project directory that is also the working directory."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def write(project: Path) -> Callable[[str, str], Path]:
    """``write("config.yaml", text)``: dedented text into a file under the project."""

    def writer(relative: str, text: str) -> Path:
        path = project / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip("\n"))
        return path

    return writer


def report_of(path: Path | None, env: Mapping[str, str] | None = None) -> str:
    """The text of the ConfigError that loading ``path`` must raise."""
    with pytest.raises(ConfigError) as info:
        load_config(path, env=env or {})
    return str(info.value)
