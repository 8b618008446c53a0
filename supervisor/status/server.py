"""The status socket server: a Unix socket, peer credentials, one task per connection.

Binding (SUPERVISOR.md §13.1): parent directory 0700 (0750 with a socket group); bind under
``umask(0o077)`` then chmod 0600 (0660 + chgrp with a group); an existing path that answers
means another supervisor (``SocketInUse``), one that refuses is stale and is replaced.
Authorisation: uid 0 and our own uid run everything; other peers (reaching us through the
group) get read-only commands unless ``group_control``. At most 32 connections; a
connection idle for 60 s is closed.
"""

from __future__ import annotations

import contextlib
import grp
import json
import os
import socket
import struct
from pathlib import Path
from typing import Any

import structlog
import trio

from supervisor.status.commands import COMMANDS, READ_ONLY, STREAMED
from supervisor.status.control import CommandContext, Control, Peer
from supervisor.status.protocol import (
    LineReader,
    ProtocolError,
    Request,
    RequestTooLarge,
    done,
    encode,
    fail,
    ok,
    parse_request,
)

__all__ = ["StatusServer", "SocketInUse", "MAX_CONNECTIONS", "IDLE_TIMEOUT"]

log = structlog.get_logger(__name__)

MAX_CONNECTIONS = 32
IDLE_TIMEOUT = 60.0
SEND_TIMEOUT = 10.0  # a client that stops reading must not pin a task forever


class SocketInUse(OSError):
    def __init__(self, path: Path, pid: int | None) -> None:
        who = f"pid {pid}" if pid else "another process"
        super().__init__(f"status socket {path} is served by {who}")
        self.path = path
        self.pid = pid


def probe_existing(path: Path) -> int | None | bool:
    """False if nothing answers at ``path``; else the answering supervisor's pid (or None)."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(1.0)
    try:
        s.connect(str(path))
    except OSError:
        return False
    try:
        s.sendall(b'{"id":0,"cmd":"hello"}\n')
        data = b""
        while b"\n" not in data:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
        reply = json.loads(data.split(b"\n", 1)[0] or b"{}")
        return int(reply.get("result", {}).get("pid")) if reply.get("ok") else None
    except (OSError, ValueError, TypeError):
        return None
    finally:
        s.close()


class StatusServer:
    def __init__(
        self,
        path: Path,
        control: Control,
        *,
        group: str | None = None,
        group_control: bool = False,
    ) -> None:
        self.path = Path(path)
        self.control = control
        self.group = group
        self.group_control = group_control
        self._sock: socket.socket | None = None
        self._connections = 0
        self._uid = os.geteuid()
        self.alive = False

    # -- binding ------------------------------------------------------------------------------

    def bind(self) -> None:
        """Synchronous, before anything starts; raises ``SocketInUse`` or ``OSError``."""
        gid = grp.getgrnam(self.group).gr_gid if self.group else None
        parent = self.path.parent
        if not parent.exists():
            parent.mkdir(parents=True, mode=0o750 if gid is not None else 0o700)
        if self.path.exists() or self.path.is_symlink():
            other = probe_existing(self.path)
            if other is not False:
                raise SocketInUse(self.path, other if isinstance(other, int) else None)
            log.info("status.stale_socket_replaced", path=str(self.path))
            self.path.unlink()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        old = os.umask(0o077)
        try:
            sock.bind(str(self.path))
        except OSError:
            sock.close()
            raise
        finally:
            os.umask(old)
        if gid is not None:
            os.chown(self.path, -1, gid)
            os.chmod(self.path, 0o660)
        else:
            os.chmod(self.path, 0o600)
        sock.listen(64)
        self._sock = sock

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
            with contextlib.suppress(OSError):
                self.path.unlink()

    # -- serving ------------------------------------------------------------------------------

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        if self._sock is None:
            self.bind()
        assert self._sock is not None
        listener = trio.socket.from_stdlib_socket(self._sock)
        self.alive = True
        task_status.started()
        try:
            async with trio.open_nursery() as nursery:
                while True:
                    try:
                        conn, _ = await listener.accept()
                    except OSError as exc:
                        log.warning("status.accept_failed", error=str(exc))
                        await trio.sleep(0.1)
                        continue
                    stream = trio.SocketStream(conn)
                    nursery.start_soon(self._serve_connection, stream)
        finally:
            self.alive = False

    async def _serve_connection(self, stream: trio.SocketStream) -> None:
        async with stream:
            if self._connections >= MAX_CONNECTIONS:
                with contextlib.suppress(Exception), trio.move_on_after(1.0):
                    await stream.send_all(
                        encode(
                            fail(
                                None,
                                "BUSY",
                                f"too many connections (limit {MAX_CONNECTIONS}); retry",
                            )
                        )
                    )
                return
            self._connections += 1
            try:
                await self._conversation(stream, _peer(stream))
            except (trio.BrokenResourceError, trio.ClosedResourceError, trio.TooSlowError):
                pass
            except Exception:
                log.exception("status.connection_failed")
            finally:
                self._connections -= 1

    async def _conversation(self, stream: trio.SocketStream, peer: Peer) -> None:
        reader = LineReader()
        while True:
            with trio.move_on_after(IDLE_TIMEOUT) as idle:
                data = await stream.receive_some(65536)
            if idle.cancelled_caught or not data:
                return
            try:
                lines = reader.feed(data)
            except RequestTooLarge as exc:
                await self._send(stream, fail(None, exc.code, exc.message))
                return
            for line in lines:
                try:
                    request = parse_request(line)
                except ProtocolError as exc:
                    await self._send(stream, fail(exc.request_id, exc.code, exc.message))
                    continue
                if request is None:
                    continue
                if not await self._dispatch(stream, request, peer):
                    return

    async def _dispatch(self, stream: trio.SocketStream, request: Request, peer: Peer) -> bool:
        """Run one request; False when the connection should close (the client left)."""
        module = COMMANDS.get(request.cmd)
        if module is None:
            await self._send(
                stream,
                fail(
                    request.id,
                    "UNKNOWN_COMMAND",
                    f"unknown command {request.cmd!r}; known: {', '.join(sorted(COMMANDS))}",
                ),
            )
            return True
        if request.cmd not in READ_ONLY:
            if not self._may_control(peer):
                await self._send(
                    stream,
                    fail(
                        request.id,
                        "PERMISSION_DENIED",
                        f"uid {peer.uid} may only run read-only commands "
                        f"({', '.join(sorted(READ_ONLY))}); ask the operator for --socket-group-control",
                    ),
                )
                return True
            if self.control.shutting_down:
                await self._send(
                    stream,
                    fail(
                        request.id,
                        "SHUTTING_DOWN",
                        "the supervisor is shutting down; only status, logs and events are served",
                    ),
                )
                return True
            log.info(
                "status.command",
                cmd=request.cmd,
                args=request.args,
                peer_pid=peer.pid,
                peer_uid=peer.uid,
            )

        streaming = request.cmd in ("logs", "events")

        async def send(obj: dict[str, Any]) -> None:
            await self._send(stream, obj)

        ctx = CommandContext(self.control, request, peer, send, tuple(COMMANDS))
        client_gone = False
        try:
            if streaming:
                result, client_gone = await self._run_streaming(stream, module, ctx)
            else:
                result = await module.execute(ctx)
        except ProtocolError as exc:
            await self._send(stream, fail(request.id, exc.code, exc.message, exc.details))
            return True
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return False
        except Exception as exc:
            log.exception("status.command_failed", cmd=request.cmd)
            await self._send(
                stream,
                fail(request.id, "INTERNAL", f"internal error: {exc}; see the supervisor log"),
            )
            return True
        if client_gone:
            return False
        await self._send(stream, done(request.id) if result is STREAMED else ok(request.id, result))
        return True

    async def _run_streaming(
        self, stream: trio.SocketStream, module: Any, ctx: CommandContext
    ) -> tuple[Any, bool]:
        """Run a streaming command while watching the socket: EOF from the client ends it."""
        outcome: dict[str, Any] = {}

        async def produce(cancel: trio.CancelScope) -> None:
            try:
                outcome["result"] = await module.execute(ctx)
            except Exception as exc:  # re-raised below, outside the nursery (no group)
                outcome["error"] = exc
            cancel.cancel()

        async def watch(cancel: trio.CancelScope) -> None:
            # While a stream runs the connection accepts no other request (§13.2): input
            # is only read to notice that the client has gone.
            while True:
                try:
                    data = await stream.receive_some(65536)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    data = b""
                if not data:
                    outcome["gone"] = True
                    cancel.cancel()
                    return

        async with trio.open_nursery() as nursery:
            nursery.start_soon(produce, nursery.cancel_scope)
            nursery.start_soon(watch, nursery.cancel_scope)
        if "error" in outcome:
            raise outcome["error"]
        return outcome.get("result", STREAMED), bool(outcome.get("gone"))

    def _may_control(self, peer: Peer) -> bool:
        if peer.uid is None:
            return False
        return peer.uid in (0, self._uid) or self.group_control

    async def _send(self, stream: trio.SocketStream, obj: dict[str, Any]) -> None:
        with trio.fail_after(SEND_TIMEOUT):
            await stream.send_all(encode(obj))


def _peer(stream: trio.SocketStream) -> Peer:
    try:
        raw = stream.socket.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        pid, uid, gid = struct.unpack("3i", raw)
        return Peer(pid, uid, gid)
    except (OSError, AttributeError, struct.error):
        return Peer(None, None, None)
