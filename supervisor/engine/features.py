"""Capability flags of the worker protocol (OBSERVE.md §2).

A worker lists what it understands in the ``features`` of its ``engine::workers::register``
payload; the engine lists its own in ``workerregistered``. Everything that depends on a
connection's features reads ``Connection.features`` (a frozenset of the known flags it
declared; unknown strings are ignored).
"""

from __future__ import annotations

from typing import Any

OBSERVE_V1 = "observe.v1"
LOCAL_DISPATCH_V1 = "local-dispatch.v1"
LARGE_MESSAGES_V1 = "large-messages.v1"

# What this engine advertises in every workerregistered. OBSERVE.md §2.2 lists exactly
# these two: large-messages.v1 is declared by SDKs only (the 0.25 SDK reads nothing but
# observe.v1 from the engine's list).
ENGINE_FEATURES: tuple[str, ...] = (OBSERVE_V1, LOCAL_DISPATCH_V1)

KNOWN_FEATURES: frozenset[str] = frozenset({OBSERVE_V1, LOCAL_DISPATCH_V1, LARGE_MESSAGES_V1})


def declared_features(raw: Any) -> frozenset[str]:
    """The known flags in a register payload's ``features``; anything else reads as none.

    Unknown strings are ignored (§2.1), and so are non-string items and a ``features``
    that is not an array: a worker that sends garbage is treated as an older SDK.
    """
    if not isinstance(raw, list):
        return frozenset()
    return frozenset(item for item in raw if isinstance(item, str) and item in KNOWN_FEATURES)
