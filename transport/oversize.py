"""Messages over the size limit: the limits themselves and what a carrier keeps of a message
it refused.

The limits are SDK 0.25's (``iii/iii.py``): 64 MiB per JSON message, either way; messages
over 16 MiB travel as fragmented text messages of ≤ 1 MiB fragments. A carrier that refuses
a message does not buffer it: it keeps its first and last few KiB (``Oversized``), enough to
find the ``type``, ``invocation_id`` and ``function_id`` that say who to answer with
``payload_too_large``, and throws the rest away as it arrives.
"""

from __future__ import annotations

import re

import attrs

__all__ = [
    "MAX_MESSAGE",
    "MAX_SINGLE_FRAME",
    "FRAGMENT",
    "KEEP",
    "Oversized",
    "Correlation",
    "correlate",
    "too_large_text",
]

MAX_MESSAGE = 64 * 1024 * 1024  # 67 108 864 bytes: SDK 0.25's _MAX_JSON_MESSAGE_BYTES
MAX_SINGLE_FRAME = 16 * 1024 * 1024  # larger messages are sent fragmented (as the SDK does)
FRAGMENT = 1024 * 1024  # the SDK's _JSON_FRAGMENT_BYTES
KEEP = 4096  # bytes of a refused message kept at each end to correlate it


@attrs.frozen
class Oversized:
    """A message the carrier refused: its size so far, the limit, and both ends of it."""

    size: int
    limit: int
    head: bytes
    tail: bytes
    binary: bool = False


@attrs.frozen
class Correlation:
    tag: str | None
    invocation_id: str | None
    function_id: str | None


# A key of the top-level object is a quoted name not preceded by a backslash (inside a JSON
# string every quote is escaped). A nested key of the same name may match too: the bus
# checks whatever id this yields like any other (only the callee may answer a call).
_TYPE = re.compile(rb'(?<!\\)"type"\s*:\s*"([a-z]{1,40})"')
_INVOCATION = re.compile(rb'(?<!\\)"invocation_id"\s*:\s*"([0-9A-Za-z-]{1,64})"')
_FUNCTION = re.compile(rb'(?<!\\)"function_id"\s*:\s*"((?:[^"\\]|\\.){1,512})"')


def _find(pattern: re.Pattern[bytes], head: bytes, tail: bytes) -> str | None:
    found = pattern.search(head)
    if found is None:
        hits = pattern.findall(tail)
        if not hits:
            return None
        value: bytes = hits[-1]  # fields after the big value come last
    else:
        value = found.group(1)
    return value.decode("utf-8", "replace")


def correlate(refused: Oversized) -> Correlation:
    """The message's tag and ids, as far as its two ends show them."""
    head, tail = refused.head, refused.tail
    return Correlation(
        _find(_TYPE, head, tail), _find(_INVOCATION, head, tail), _find(_FUNCTION, head, tail)
    )


def too_large_text(kind: str, size: int, limit: int, *, at_least: bool = False) -> str:
    """The ``payload_too_large`` message: what was too big, its size and the limit."""
    size_text = f"at least {size}" if at_least else str(size)
    return (
        f"{kind} is {size_text} bytes; the limit is {limit} bytes per message. "
        "Move larger values through a data channel (engine::channels::create)."
    )
