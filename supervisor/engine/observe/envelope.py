"""What an activation carries (OBSERVE.md §7.1, §7.3, §7.5, §8.1): the observation document
of a routed call, the stamped caller, the envelope and the activation's ``data``.

Pure functions over plain JSON values. Routed and reported events end in the same envelope
builder, so the local and routed paths give equal envelopes (§8.3).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from transport import messages as m

if TYPE_CHECKING:
    from supervisor.engine.connection import Connection
    from supervisor.engine.invocations import Pending

ENGINE_CALLER = "iii-engine"
_CALLER_KEYS = ("worker_id", "worker_name", "function_id", "invocation_id")
PARTS = ("input", "output", "error", "caller", "metadata")


class CallWire:
    """What the observe family needs of the message that made a call, without its ``data``
    (a Pending must not keep a large payload alive until the call completes)."""

    __slots__ = ("activation", "caller", "metadata", "observe_depth")

    def __init__(self, caller: Any, observe_depth: Any, activation: Any, metadata: Any) -> None:
        self.caller = caller
        self.observe_depth = observe_depth
        self.activation = activation
        self.metadata = metadata

    @classmethod
    def of(cls, msg: m.InvokeFunction) -> CallWire:
        return cls(msg.caller, msg.observe_depth, msg.activation, msg.metadata)


def observe_depth(value: Any) -> int:
    """``observe_depth`` as read from a worker: non-integers, booleans, negatives are 0."""
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    return 0


def _strings(value: dict[str, Any]) -> dict[str, str]:
    return {k: value[k] for k in _CALLER_KEYS if isinstance(value.get(k), str)}


def stamp_caller(origin: Connection | None, asserted: Any) -> dict[str, Any]:
    """The caller of a routed call (§7.3): the SDK-asserted ``function_id``/``invocation_id``
    and one-level ``parent``, with ``worker_id``/``worker_name`` of the calling connection.
    Engine-originated calls (no connection) are ``{"worker_name": "iii-engine"}``."""
    if origin is None:
        return {"worker_name": ENGINE_CALLER}
    out: dict[str, Any] = {"worker_id": origin.worker_id}
    if origin.name:
        out["worker_name"] = origin.name
    if isinstance(asserted, dict):
        for key in ("function_id", "invocation_id"):
            value = asserted.get(key)
            if isinstance(value, str):
                out[key] = value
        parent = asserted.get("parent")
        if isinstance(parent, dict):
            kept = _strings(parent)
            if kept:
                out["parent"] = kept
    return out


def caller_of(pending: Pending) -> dict[str, Any]:
    """The stamped caller of a call, built once: an activation's (engine-made, no calling
    connection) is the one its message carries; a routed call's is stamped (§7.3)."""
    stamp = pending.stamp
    if stamp is None:
        wire = pending.wire
        asserted = wire.caller if wire is not None else None
        if pending.origin is None and isinstance(asserted, dict):
            stamp = asserted
        else:
            stamp = stamp_caller(pending.origin, asserted)
        pending.stamp = stamp
    return stamp


_NO_FIELDS: tuple[None, None, None] = (None, None, None)


def observe_fields(pending: Pending, callee: Connection) -> tuple[Any, Any, Any]:
    """``caller``, ``observe_depth``, ``activation`` of the E→W ``invokefunction``: only for
    observe-capable callees (§2.3 rule 4), depth forwarded unchanged and left out when 0."""
    if "observe.v1" not in callee.features:
        return _NO_FIELDS
    wire = pending.wire
    if wire is None:
        return caller_of(pending), None, None
    activation = wire.activation if pending.origin is None else None
    return caller_of(pending), observe_depth(wire.observe_depth) or None, activation


def error_dict(err: m.ErrorBody) -> dict[str, Any]:
    out: dict[str, Any] = {"code": err.code, "message": err.message}
    if err.stacktrace is not None:
        out["stacktrace"] = err.stacktrace
    return out


def routed_document(
    data: Any, result: Any, err: m.ErrorBody | None, caller: dict[str, Any] | None, metadata: Any
) -> dict[str, Any]:
    """The document filters read for a routed invocation (§7.1); ``caller`` None: added later
    (no filter reads it)."""
    doc: dict[str, Any] = {"input": data}
    if err is None:
        doc["output"] = result
    else:
        doc["error"] = error_dict(err)
    if caller is not None:
        doc["caller"] = caller
    if metadata is not None:
        doc["metadata"] = metadata
    return doc


def strip_injected(data: Any) -> Any:
    """The caller's ``data`` without the engine's ``_caller_worker_id`` (§7.1 ``input``)."""
    if type(data) is dict and "_caller_worker_id" in data:
        return {k: v for k, v in data.items() if k != "_caller_worker_id"}
    return data


def envelope(
    *,
    observer_id: str,
    activation_id: str,
    function_id: str,
    namespace: str,
    invocation_id: str,
    status: str,
    parts: dict[str, Any],
    capture: tuple[str, ...],
    started_at_ms: int,
    duration_ms: float,
) -> dict[str, Any]:
    """The Observed envelope (§7.5 rule 1): exactly these keys, captured parts only."""
    out: dict[str, Any] = {
        "observer_id": observer_id,
        "activation_id": activation_id,
        "function_id": function_id,
        "namespace": namespace,
        "invocation_id": invocation_id,
        "status": status,
    }
    for part in PARTS:
        if part in capture and part in parts:
            out[part] = parts[part]
    out["started_at_ms"] = started_at_ms
    out["duration_ms"] = duration_ms
    return out


def activation_data(deliver: str, parts: dict[str, Any], env: dict[str, Any]) -> Any:
    """``data`` of the activation per ``deliver`` (§7.5 rules 1–3)."""
    if deliver == "envelope":
        return env
    return parts.get(deliver)
