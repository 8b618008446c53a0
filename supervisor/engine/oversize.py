"""``payload_too_large``: what the engine does with a message over the size limit.

Both directions end the same way for the caller: an ``invocationresult`` with error code
``payload_too_large`` (the code SDK 0.25 raises locally, and substitutes for a result it
cannot send) and a message giving the size and the limit; the connection and the engine
keep serving.

* **Inbound** (a worker sent more than the limit): the carrier threw the message away as
  it arrived and kept only its two ends (``transport.oversize.Oversized``). An
  ``invokefunction`` is answered to its sender; an ``invocationresult`` becomes an error
  result from that callee, so its caller gets the error (the bus's usual checks apply:
  only the callee may answer).
* **Outbound** (the bus would send more than the receiver's limit): an ``invokefunction``
  to a callee fails its call for the caller; an ``invocationresult`` for a caller is
  replaced by an error result, as SDK 0.25 does for its own results.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

import structlog

from supervisor.engine.errors import error
from transport import messages as m
from transport.oversize import Oversized, correlate, too_large_text

if TYPE_CHECKING:
    from supervisor.engine.bus import Bus
    from supervisor.engine.connection import Connection

log = structlog.get_logger(__name__)

CODE = "payload_too_large"


def _uuid(value: str | None) -> bool:
    if value is None:
        return False
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


class OversizeGuard:
    def __init__(self, bus: Bus) -> None:
        self.bus = bus

    def inbound(self, conn: Connection, refused: Oversized) -> None:
        """``conn`` sent a message over the limit (already discarded by its carrier)."""
        found = correlate(refused)
        tag = found.tag or "message"
        what = f"{tag} for {found.function_id}" if found.function_id else tag
        if tag == "invocationresult" and found.function_id:
            what = f"invocationresult of {found.function_id}"
        text = too_large_text(what, refused.size, refused.limit)
        log.warning(
            "message over the size limit refused",
            worker_id=conn.worker_id,
            worker=conn.name,
            tag=tag,
            size=refused.size,
            limit=refused.limit,
            invocation_id=found.invocation_id,
        )
        if not _uuid(found.invocation_id):
            return
        assert found.invocation_id is not None
        answer = m.InvocationResult(
            found.invocation_id, found.function_id or "", None, error(CODE, text)
        )
        if found.tag == "invokefunction":
            conn.send(answer)
        elif found.tag == "invocationresult":
            self.bus.handle(conn, answer)

    def outbound(self, conn: Connection, msg: Any, size: int) -> None:
        """The bus asked to send ``conn`` a message of ``size`` bytes, over its limit."""
        limit = conn.max_message
        log.warning(
            "message over the size limit not sent",
            worker_id=conn.worker_id,
            worker=conn.name,
            tag=msg.TAG,
            size=size,
            limit=limit,
        )
        if isinstance(msg, m.InvokeFunction):
            pending = self.bus.table.get(msg.invocation_id) if msg.invocation_id else None
            if pending is not None:
                text = too_large_text(f"invokefunction for {msg.function_id}", size, limit)
                self.bus.finish(pending, None, error(CODE, text))
        elif isinstance(msg, m.InvocationResult):
            text = too_large_text(f"invocationresult of {msg.function_id}", size, limit)
            conn.send(
                m.InvocationResult(
                    msg.invocation_id,
                    msg.function_id,
                    None,
                    error(CODE, text),
                    msg.traceparent,
                    msg.baggage,
                )
            )
