"""The status socket: newline-delimited JSON commands for operators and the CLI.

``protocol`` is the sans-io framing (lines in, requests out, replies encoded), ``server``
serves it over a Unix socket with peer-credential checks, ``commands/`` holds one module
per command whose docstring documents the wire message and the CLI usage, and ``client``
is the small standard-library client the CLI uses (SUPERVISOR.md §13, §14). It may import
``supervisor.supervision`` and ``supervisor.config``; ``app.py`` wires it to the runtime.

The public names below are loaded on first use, so that ``client`` stays a standard-library
import for the CLI and exec probes (the server pulls in trio and the child manager).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from supervisor.status.client import ClientError as ClientError
    from supervisor.status.client import StatusClient as StatusClient
    from supervisor.status.client import Unreachable as Unreachable
    from supervisor.status.commands import COMMANDS as COMMANDS
    from supervisor.status.commands import READ_ONLY as READ_ONLY
    from supervisor.status.control import CommandContext as CommandContext
    from supervisor.status.control import Control as Control
    from supervisor.status.control import Peer as Peer
    from supervisor.status.protocol import PROTOCOL_VERSION as PROTOCOL_VERSION
    from supervisor.status.protocol import ProtocolError as ProtocolError
    from supervisor.status.protocol import Request as Request
    from supervisor.status.server import SocketInUse as SocketInUse
    from supervisor.status.server import StatusServer as StatusServer

_EXPORTS = {
    "ClientError": "client",
    "StatusClient": "client",
    "Unreachable": "client",
    "COMMANDS": "commands",
    "READ_ONLY": "commands",
    "CommandContext": "control",
    "Control": "control",
    "Peer": "control",
    "PROTOCOL_VERSION": "protocol",
    "ProtocolError": "protocol",
    "Request": "protocol",
    "SocketInUse": "server",
    "StatusServer": "server",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value
