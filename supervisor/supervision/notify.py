"""sd_notify without libsystemd: datagrams of ``KEY=VALUE`` lines to ``$NOTIFY_SOCKET``.

``NOTIFY_SOCKET`` is read once; ``@name`` is an abstract address, ``/path`` a filesystem one,
anything else (``vsock:`` …) is ignored. Sending never raises: a broken notify socket must not
take the supervisor down (SUPERVISOR.md §15.1). The watchdog ping runs on the trio loop and
only after a caller-supplied self-check passes, so a wedged supervisor stops pinging and
systemd restarts it. Children never see ``NOTIFY_SOCKET`` (§7.1 strips it).
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable, Mapping

import structlog
import trio

__all__ = ["Notifier", "parse_address", "format_message", "NOTIFY_ENV_VARS"]

log = structlog.get_logger(__name__)

# What systemd hands us that a child must not inherit.
NOTIFY_ENV_VARS = ("NOTIFY_SOCKET", "WATCHDOG_PID", "WATCHDOG_USEC")


def parse_address(value: str | None) -> str | bytes | None:
    """The ``sendto`` address for a ``NOTIFY_SOCKET`` value, or None if unusable."""
    if not value:
        return None
    if value.startswith("@"):
        return b"\0" + value[1:].encode()
    if value.startswith("/"):
        return value
    return None


def format_message(fields: Mapping[str, object]) -> bytes:
    """``{"READY": 1, "STATUS": "x"}`` → ``b"READY=1\\nSTATUS=x\\n"``; newlines in values
    would start a new assignment, so they are flattened to spaces."""
    lines = []
    for key, value in fields.items():
        text = str(value).replace("\r", " ").replace("\n", " ")
        lines.append(f"{key}={text}")
    return ("\n".join(lines) + "\n").encode()


def monotonic_usec() -> int:
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000


class Notifier:
    """One process-wide sender. Inert (every call a no-op) without ``NOTIFY_SOCKET``."""

    def __init__(
        self,
        address: str | bytes | None,
        *,
        watchdog_usec: int | None = None,
        watchdog_pid: int | None = None,
    ) -> None:
        self.address = address
        self.watchdog_usec = watchdog_usec
        self.watchdog_pid = watchdog_pid
        self.sent: list[bytes] = []  # the last few messages, for tests and debugging
        self._sock: socket.socket | None = None
        self._last_status: str | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Notifier:
        env = os.environ if environ is None else environ
        raw = env.get("NOTIFY_SOCKET")
        address = parse_address(raw)
        if raw and address is None:
            log.debug("notify.unsupported_socket", value=raw)
        usec = _int_or_none(env.get("WATCHDOG_USEC"))
        pid = _int_or_none(env.get("WATCHDOG_PID"))
        return cls(address, watchdog_usec=usec, watchdog_pid=pid)

    @property
    def enabled(self) -> bool:
        return self.address is not None

    @property
    def watchdog_interval(self) -> float | None:
        """Seconds between ``WATCHDOG=1`` pings (half of ``WATCHDOG_USEC``), or None."""
        if not self.enabled or not self.watchdog_usec or self.watchdog_usec <= 0:
            return None
        if self.watchdog_pid is not None and self.watchdog_pid != os.getpid():
            return None
        return self.watchdog_usec / 2 / 1_000_000

    def send(self, **fields: object) -> bool:
        if self.address is None:
            return False
        data = format_message(fields)
        try:
            if self._sock is None:
                self._sock = socket.socket(
                    socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC | socket.SOCK_NONBLOCK
                )
            self._sock.sendto(data, self.address)
        except OSError as exc:
            log.warning("notify.send_failed", error=str(exc), message=data.decode(errors="replace"))
            return False
        self.sent.append(data)
        del self.sent[:-64]
        return True

    # -- the messages of §15.1 ------------------------------------------------------------

    def ready(self, status: str | None = None) -> None:
        fields: dict[str, object] = {"READY": 1}
        if status:
            fields["STATUS"] = status
            self._last_status = status
        self.send(**fields)

    def status(self, status: str) -> None:
        if status != self._last_status:
            self._last_status = status
            self.send(STATUS=status)

    def reloading(self) -> None:
        self.send(RELOADING=1, MONOTONIC_USEC=monotonic_usec())

    def stopping(self) -> None:
        self._last_status = "stopping"
        self.send(STOPPING=1, STATUS="stopping")

    def extend_timeout(self, seconds: float) -> None:
        self.send(EXTEND_TIMEOUT_USEC=int(seconds * 1_000_000))

    async def watchdog_loop(self, healthy: Callable[[], bool] | None = None) -> None:
        """``WATCHDOG=1`` every ``WATCHDOG_USEC/2`` while ``healthy()``; returns at once when
        there is no watchdog. The loop lag is part of the self-check: a ping that wakes a
        quarter interval late means the loop is wedged and systemd should know."""
        interval = self.watchdog_interval
        if interval is None:
            return
        next_at = trio.current_time()
        while True:
            next_at += interval
            await trio.sleep_until(next_at)
            lag = trio.current_time() - next_at
            if lag > interval / 2:
                log.warning("notify.watchdog_lag", lag_s=round(lag, 3))
            if lag < interval / 2 and (healthy is None or healthy()):
                self.send(WATCHDOG=1)
            if lag > interval:
                next_at = trio.current_time()

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def _int_or_none(value: str | None) -> int | None:
    if value is None or not value.strip():
        return None
    try:
        return int(value)
    except ValueError:
        return None
