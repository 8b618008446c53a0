"""The supervisor as systemd for one child: ``readiness: notify`` (SUPERVISOR.md §7.4, §8.3).

Per child incarnation, a ``SOCK_DGRAM`` Unix socket whose address the child gets as
``NOTIFY_SOCKET``. ``READY=1`` makes the child ready, ``STATUS=`` is shown in status, and
``WATCHDOG=1`` feeds the health loop. ``SO_PASSCRED`` gives every datagram the sender's
pid; datagrams from a process outside the child's process group are dropped with a
warning. The socket lives under ``<state dir>/notify/``; when that path is too long for a
Unix address, an abstract address (``@…``) is used instead.
"""

from __future__ import annotations

import contextlib
import os
import socket
import struct
from collections.abc import Callable
from pathlib import Path

import structlog
import trio

log = structlog.get_logger(__name__)

_CREDS = struct.Struct("3i")  # struct ucred: pid, uid, gid
_MAX_DATAGRAM = 4096
_SUN_PATH_MAX = 107

__all__ = ["NotifyReceiver", "parse_fields"]


def parse_fields(data: bytes) -> dict[str, str]:
    """``b"READY=1\\nSTATUS=x"`` → ``{"READY": "1", "STATUS": "x"}``; other lines ignored."""
    out: dict[str, str] = {}
    for line in data.decode("utf-8", "replace").split("\n"):
        key, sep, value = line.partition("=")
        if sep and key:
            out[key.strip()] = value
    return out


class NotifyReceiver:
    """One bound notify socket; ``address`` is what the child's ``NOTIFY_SOCKET`` says."""

    def __init__(self, directory: Path | None, name: str, tag: str) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        self.path: Path | None = None
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
            path = directory / f"{name}.sock" if directory is not None else None
            if path is not None and len(os.fsencode(path)) <= _SUN_PATH_MAX:
                path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
                sock.bind(os.fspath(path))
                os.chmod(path, 0o600)
                self.path = path
                self.address = os.fspath(path)
            else:
                abstract = f"iii-supervisor/{os.getpid()}/{tag}/{name}"
                sock.bind(b"\0" + abstract.encode())
                self.address = "@" + abstract
        except BaseException:
            sock.close()
            raise
        self._sock = trio.socket.from_stdlib_socket(sock)

    async def serve(
        self, accept_pid: Callable[[int], bool], on_fields: Callable[[dict[str, str]], None]
    ) -> None:
        """Deliver every datagram from an accepted pid to ``on_fields``, until cancelled."""
        space = socket.CMSG_SPACE(_CREDS.size)
        while True:
            data, ancdata, _flags, _addr = await self._sock.recvmsg(_MAX_DATAGRAM, space)
            pid = None
            for level, kind, payload in ancdata:
                if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                    pid = _CREDS.unpack(payload[: _CREDS.size])[0]
            if pid is None or not accept_pid(pid):
                log.warning("notify.rejected", sender_pid=pid, address=self.address)
                continue
            fields = parse_fields(data)
            if fields:
                on_fields(fields)

    def close(self) -> None:
        self._sock.close()
        if self.path is not None:
            with contextlib.suppress(OSError):
                self.path.unlink()
