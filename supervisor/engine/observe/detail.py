"""``engine::observers::get``'s view of one observer (OBSERVE.md §9.1): its definition,
state, counters and drops; a disposed one's tombstone while it lasts."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from supervisor.engine.observe.table import ObserverTable


def detail(table: ObserverTable, oid: str) -> dict[str, Any] | None:
    """``engine::observers::get`` (§9.1)."""
    obs = table.observers.get(oid)
    if obs is None:
        tomb = table.tombstones.get(oid)
        if tomb is None:
            return None
        reason = {"code": tomb.reason.code, "message": tomb.reason.message}
        return {"id": oid, "state": "disposed", "reason": reason, "fires": tomb.fires}
    spec = obs.spec
    out: dict[str, Any] = {"id": spec.id, "state": obs.state}
    if obs.reason is not None:
        out["reason"] = {"code": obs.reason.code, "message": obs.reason.message}
    out["source"] = {
        "function_id": spec.source[1],
        "namespace": spec.source[0],
        "args": spec.args,
        "filters": spec.filters,
        "capture": list(spec.capture),
        "on": spec.on,
        "deliver": spec.deliver,
    }
    out["target"] = {"function_id": spec.target[1], "namespace": spec.target[0]}
    if spec.metadata is not None:
        out["metadata"] = spec.metadata
    if spec.max_fires is not None:
        out["max_fires"] = spec.max_fires
    if obs.expires_at is not None and spec.expires_in_ms is not None:
        out["expires_at_ms"] = obs.created_at_ms + spec.expires_in_ms
    out.update(
        max_in_flight=spec.max_in_flight,
        fires=obs.fires,
        in_flight=obs.in_flight,
        queued=len(obs.queue),
        dropped=dict(obs.dropped),
        created_at_ms=obs.created_at_ms,
    )
    if obs.conn is not None:
        out["worker_id"] = obs.conn.worker_id
    return out
