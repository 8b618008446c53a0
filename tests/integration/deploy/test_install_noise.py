"""Installing the project prints no deprecation warnings (``make up`` once printed setuptools'
``project.license`` warning four times). pip prepares the metadata with the build backend
exactly as ``pip install -e .`` does, without installing anything."""

from __future__ import annotations

import subprocess
import sys

from tests.support import REPO


def test_pip_install_prints_no_deprecation() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--dry-run", "--no-deps", "-e", str(REPO)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    noisy = [
        line for line in (done.stdout + done.stderr).splitlines() if "deprecat" in line.lower()
    ]
    assert not noisy, "\n".join(noisy)
