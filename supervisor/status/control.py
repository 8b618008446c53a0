"""What a status command may ask of the running supervisor, and the context it runs in.

``Control`` is implemented by ``supervisor.supervision.runtime.SupervisorRuntime`` (and by
the unit tests' fakes); the commands see nothing else of the supervisor.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

import attrs

from supervisor.status.protocol import ProtocolError, Request

if TYPE_CHECKING:
    from supervisor.supervision.children import ChildManager

__all__ = ["Control", "Peer", "CommandContext", "names_arg", "bool_arg", "int_arg"]


class Control(Protocol):
    """What the commands use of the running supervisor. ``reload`` raises
    ``ConfigRejected`` when the new configuration is invalid."""

    version: str
    pid: int

    @property
    def manager(self) -> ChildManager: ...

    @property
    def shutting_down(self) -> bool: ...

    def uptime(self) -> float: ...

    def status_document(
        self, names: Sequence[str] | None, *, remote_rows: bool = False
    ) -> dict[str, Any]: ...

    async def reload(self) -> dict[str, Any]: ...

    def request_shutdown(self, within: float | None = None) -> list[str]: ...

    def check(self, path: str | None) -> dict[str, Any]: ...


@attrs.frozen
class Peer:
    pid: int | None
    uid: int | None
    gid: int | None


@attrs.define
class CommandContext:
    control: Control
    request: Request
    peer: Peer
    send: Callable[[dict[str, Any]], Awaitable[None]]  # streaming replies: event lines
    commands: tuple[str, ...] = ()  # every command the server answers (for ``hello``)

    @property
    def args(self) -> dict[str, Any]:
        return self.request.args


def names_arg(args: dict[str, Any], *, required: bool = False) -> list[str] | None:
    """``names`` (a list or one string) or ``all: true``; None means every worker."""
    if args.get("all") is True:
        return None
    names = args.get("names", args.get("name"))
    if names is None:
        if required:
            raise ProtocolError("INVALID_ARGUMENT", 'give "names": [..] or "all": true')
        return None
    if isinstance(names, str):
        names = [names]
    if not isinstance(names, list) or not all(isinstance(n, str) and n for n in names):
        raise ProtocolError("INVALID_ARGUMENT", '"names" must be a list of worker names')
    if not names and required:
        raise ProtocolError("INVALID_ARGUMENT", 'give "names": [..] or "all": true')
    return None if "all" in names else names


def bool_arg(args: dict[str, Any], key: str, default: bool) -> bool:
    value = args.get(key, default)
    if not isinstance(value, bool):
        raise ProtocolError("INVALID_ARGUMENT", f'"{key}" must be true or false')
    return value


def int_arg(args: dict[str, Any], key: str, default: int, *, low: int, high: int) -> int:
    value = args.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ProtocolError("INVALID_ARGUMENT", f'"{key}" must be an integer')
    if not low <= value <= high:
        raise ProtocolError("INVALID_ARGUMENT", f'"{key}" must be between {low} and {high}')
    return value
