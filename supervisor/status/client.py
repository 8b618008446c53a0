"""A small standard-library client for the status socket (no trio, no attrs, no cattrs),
so that ``iii-supervisor status`` and exec probes cost one small interpreter start.
"""

from __future__ import annotations

import itertools
import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = ["StatusClient", "ClientError", "Unreachable", "NOT_FOUND_HINT"]

NOT_FOUND_HINT = "is `iii-supervisor up` running for this config? try `--socket`"


class Unreachable(OSError):
    """Nothing answers at the socket path."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"cannot reach the supervisor at {path}: {reason} — {NOT_FOUND_HINT}")
        self.path = path
        self.reason = reason


class ClientError(Exception):
    """The supervisor answered with ``ok: false``."""

    def __init__(self, code: str, message: str, details: Any = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.details = details


class StatusClient:
    def __init__(self, path: str | Path, *, timeout: float = 2.0) -> None:
        self.path = Path(path)
        self.timeout = timeout
        self._sock: socket.socket | None = None
        self._buf = b""
        self._ids = itertools.count(1)

    def __enter__(self) -> StatusClient:
        self.connect()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def connect(self) -> None:
        if self._sock is not None:
            return
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        try:
            s.connect(str(self.path))
        except FileNotFoundError:
            s.close()
            raise Unreachable(self.path, "no such socket") from None
        except OSError as exc:
            s.close()
            raise Unreachable(self.path, exc.strerror or str(exc)) from None
        self._sock = s

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def send(self, cmd: str, args: dict[str, Any] | None = None) -> int:
        self.connect()
        assert self._sock is not None
        rid = next(self._ids)
        msg: dict[str, Any] = {"id": rid, "cmd": cmd}
        if args:
            msg["args"] = args
        self._sock.sendall(json.dumps(msg).encode() + b"\n")
        return rid

    def read_message(self, timeout: float | None = None) -> dict[str, Any]:
        assert self._sock is not None
        self._sock.settimeout(self.timeout if timeout is None else timeout)
        while b"\n" not in self._buf:
            chunk = self._sock.recv(65536)
            if not chunk:
                raise ConnectionError("the supervisor closed the connection")
            self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        return json.loads(line)

    def request(
        self, cmd: str, args: dict[str, Any] | None = None, *, timeout: float | None = None
    ) -> Any:
        """Send one request and return its ``result``; ``ClientError`` for ``ok: false``."""
        rid = self.send(cmd, args)
        while True:
            reply = self.read_message(timeout)
            if reply.get("id") != rid:
                continue
            if reply.get("ok"):
                return reply.get("result")
            err = reply.get("error") or {}
            raise ClientError(
                err.get("code", "INTERNAL"), err.get("message", ""), err.get("details")
            )

    def stream(
        self, cmd: str, args: dict[str, Any] | None = None, *, timeout: float | None = None
    ) -> Iterator[dict[str, Any]]:
        """Yield the event lines of a streaming command until ``done``."""
        rid = self.send(cmd, args)
        while True:
            reply = self.read_message(timeout)
            if reply.get("id") != rid:
                continue
            if "event" in reply:
                yield reply
                continue
            if reply.get("ok"):
                if not reply.get("done") and reply.get("result") is not None:
                    yield {"id": rid, "event": "result", "result": reply["result"]}
                return
            err = reply.get("error") or {}
            raise ClientError(
                err.get("code", "INTERNAL"), err.get("message", ""), err.get("details")
            )
