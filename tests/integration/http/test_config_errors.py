"""A bad config block stops the actor before it connects: exit code 78 and a clear message."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.support import REPO


def run_actor(tmp_path: Path, config: object) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "iii-http.json"
    path.write_text(json.dumps(config))
    env = {**os.environ, "III_CONFIG": str(path), "III_URL": "ws://127.0.0.1:1"}
    return subprocess.run(
        [sys.executable, "-m", "actors.http"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_unknown_key_is_refused(tmp_path: Path) -> None:
    done = run_actor(tmp_path, {"port": 3111, "cors": {"allowed_origin": ["*"]}})
    assert done.returncode == 78
    assert "cors.allowed_origin: unknown field" in done.stderr


def test_bad_value_is_refused(tmp_path: Path) -> None:
    done = run_actor(tmp_path, {"port": "eighty"})
    assert done.returncode == 78
    assert "port: expected an integer" in done.stderr
