"""§17.8 status socket permissions with ``--socket-group``: mode 0660, a group member may
read (status) but not steer (restart → PERMISSION_DENIED) unless --socket-group-control."""

from __future__ import annotations

import grp
import os
import shutil
import stat
import tempfile
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from supervisor.status.client import ClientError, StatusClient
from tests.integration.supervision.conftest import Up, command_worker

UpFactory = Callable[..., Up]


def as_group_member(sock: Path, command: str, gid: int) -> str:
    """Run one status request as uid/gid 65534 (a member of the socket's group)."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        os.close(read_fd)
        outcome = "?"
        try:
            os.setgroups([gid])
            os.setgid(gid)
            os.setuid(65534)
            with StatusClient(sock, timeout=3) as client:
                client.request(command, {"names": ["w"]} if command == "restart" else None)
            outcome = "ok"
        except ClientError as exc:
            outcome = getattr(exc, "code", None) or str(exc)
        except OSError as exc:
            outcome = f"oserror: {exc}"
        finally:
            os.write(write_fd, outcome.encode())
            os._exit(0)
    os.close(write_fd)
    os.waitpid(pid, 0)
    with os.fdopen(read_fd) as fh:
        return fh.read()


def test_group_members_may_read_but_not_steer(up_factory: UpFactory) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to try the socket as another uid")
    group = grp.getgrgid(65534).gr_name
    sock_dir = Path(tempfile.mkdtemp(prefix=f"iii-sg-{uuid.uuid4().hex[:6]}-"))
    sock_dir.chmod(0o755)  # traversable by the other uid; the socket itself is 0660
    try:
        up = up_factory([command_worker("w", "sleep 1000")], extra_args=["--socket-group", group])
        up.socket = sock_dir / "ctl.sock"
        up.start()
        up.wait_state("w", "ready")
        mode = up.socket.stat()
        assert stat.S_IMODE(mode.st_mode) == 0o660
        assert mode.st_gid == 65534
        assert as_group_member(up.socket, "status", 65534) == "ok"
        denied = as_group_member(up.socket, "restart", 65534)
        assert "PERMISSION_DENIED" in denied, denied
        assert up.status("w")["restarts"] == 0
    finally:
        shutil.rmtree(sock_dir, ignore_errors=True)
