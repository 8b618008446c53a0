"""engine::channels::create and ::delete (PROTOCOL.md §11.1; batches are our extension)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from supervisor.engine.builtins._args import non_negative
from supervisor.engine.errors import InvocationFailed

if TYPE_CHECKING:
    from supervisor.engine.bus import CallContext

MAX_CHANNEL_BATCH = 256


def channels_create(ctx: CallContext, data: dict[str, Any]) -> dict[str, Any]:
    """One channel (§11.1); with our extension ``count`` (1–256), a batch of them."""
    fn = "engine::channels::create"
    size = non_negative(data, "buffer_size", fn)
    count = non_negative(data, "count", fn)
    if count is None:
        return ctx.bus.channels.create(size).refs()
    if not 1 <= count <= MAX_CHANNEL_BATCH:
        raise InvocationFailed(
            "INVALID_ARGUMENTS", f"`count` must be between 1 and {MAX_CHANNEL_BATCH}"
        )
    return {"channels": [ctx.bus.channels.create(size).refs() for _ in range(count)]}


def channels_delete(ctx: CallContext, data: dict[str, Any]) -> dict[str, Any]:
    """Our extension: forget channels their creator no longer needs (sockets already attached
    keep working). Each entry must carry the channel's access key."""
    items = data.get("channels")
    if not isinstance(items, list):
        raise InvocationFailed(
            "deserialization_error",
            "Failed to deserialize input for engine::channels::delete: `channels` must be an "
            "array of {channel_id, access_key}",
        )
    deleted = 0
    for item in items:
        if isinstance(item, dict) and ctx.bus.channels.forget(
            str(item.get("channel_id")), item.get("access_key")
        ):
            deleted += 1
    return {"deleted": deleted}
