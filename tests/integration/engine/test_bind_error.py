"""A worker port that another process holds: `up` names the address once and exits 73."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

import yaml

from tests.support import BIN, free_port


def test_a_taken_worker_port_is_named_once_and_exits_cantcreat(tmp_path: Path) -> None:
    port = free_port()
    holder = socket.socket()
    holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    holder.bind(("127.0.0.1", port))
    holder.listen()
    try:
        config = tmp_path / "config.yaml"
        config.write_text(
            yaml.safe_dump(
                {
                    "workers": [
                        {
                            "name": "iii-worker-manager",
                            "config": {"host": "127.0.0.1", "port": port},
                        }
                    ]
                }
            )
        )
        done = subprocess.run(
            [str(BIN / "iii-supervisor"), "--log-format", "console", "up", "--config", str(config)],
            cwd=tmp_path,
            env={"III_SUPERVISOR_STATE_DIR": str(tmp_path / "state"), "PATH": "/usr/bin:/bin"},
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        holder.close()
    out = done.stdout + done.stderr
    assert done.returncode == 73, out
    assert out.count(f"127.0.0.1:{port} is already in use") == 1, out
    assert "change `port` of the iii-worker-manager entry" in out
    assert "sub-exception" not in out and "Trio nursery" not in out
