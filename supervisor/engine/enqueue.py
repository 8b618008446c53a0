"""``TriggerAction.Enqueue`` (PROTOCOL.md §7.8): a call handed to the queue provider.

The bus turns an ``invokefunction`` with ``action: enqueue`` into a call of
``engine::queue::enqueue`` and answers the caller with the receipt, or ``enqueue_error``.

A producer with several enqueues outstanding gets its receipts through the connection's writer
(``batch``): the queue answers a burst of enqueues in one frame, and they go back in one write
instead of a syscall each.
"""

from __future__ import annotations

from random import getrandbits
from typing import Any, Protocol

from supervisor.engine.connection import Connection
from supervisor.engine.errors import DEFAULT, error
from supervisor.engine.invocations import Outcome
from transport import messages as m


class EnqueueHost(Protocol):
    def reply(
        self,
        conn: Connection,
        invocation_id: str | None,
        msg: m.InvokeFunction,
        result: Any,
        err: m.ErrorBody | None,
    ) -> None: ...

    def internal_invoke(
        self,
        function_id: str,
        data: Any,
        *,
        namespace: str = DEFAULT,
        metadata: Any = None,
        on_done: Outcome | None = None,
    ) -> None: ...


def receipt_id() -> str:
    """A random UUID4 string from the Mersenne Twister (as ``tracecontext`` makes trace ids):
    a receipt names a job, it is no secret, and ``uuid4`` costs a system call per job."""
    n = getrandbits(128)
    h = f"{n:032x}"
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{'89ab'[n & 3]}{h[17:20]}-{h[20:]}"


# Per producer connection, its enqueues not yet answered (a key leaves at zero).
_outstanding: dict[Connection, int] = {}


def enqueue(
    bus: EnqueueHost, conn: Connection, msg: m.InvokeFunction, ns: str, reply_id: str | None
) -> None:
    assert msg.action is not None
    receipt = receipt_id()
    _outstanding[conn] = _outstanding.get(conn, 0) + 1
    payload: dict[str, Any] = {
        "queue": msg.action.queue,
        "function_id": msg.function_id,
        "data": msg.data,
        "messageReceiptId": receipt,
        "traceparent": msg.traceparent,
        "baggage": msg.baggage,
    }
    if ns != DEFAULT:
        payload["namespace"] = ns

    def done(result: Any, err: m.ErrorBody | None) -> None:
        left = _outstanding.pop(conn, 1) - 1
        if left:
            _outstanding[conn] = left
        if err is None:
            if reply_id is not None:
                answer = {"messageReceiptId": receipt}
                conn.send(
                    m.InvocationResult(
                        reply_id, msg.function_id, answer, None, msg.traceparent, msg.baggage
                    ),
                    batch=left > 0,  # more receipts are due to it: one write for them
                )
            return
        text = f"{err.code}: {err.message}"
        if err.code == "function_not_found":
            text = (
                "No queue provider is installed: engine::queue::enqueue is not registered "
                f"(add the `queue` worker). {err.message}"
            )
        bus.reply(conn, reply_id, msg, None, error("enqueue_error", text))

    bus.internal_invoke("engine::queue::enqueue", payload, on_done=done)
