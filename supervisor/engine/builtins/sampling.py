"""engine::sampling::apply — replace the engine's span sampler while it runs.

``{iii-observability block}`` → ``{"applied": bool, "sampling": bool}``. The block's
``sampling_ratio`` and ``sampling`` (WORKERS.md §10.1, tier ``swap``) are read as at boot
(``sampling.sampler_for``; other fields are validated and ignored); iii-observability calls it
when ``configuration::set`` changes them, so a new rate holds from the next call on, without a
restart. ``applied`` is false when tracing is off (no span hook to sample for); ``sampling`` is
whether any span is now sampled out (false: every span kept, nothing tested per call). An
invalid block changes nothing and answers ``deserialization_error``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from manifests.blocks.strict import BlockError
from supervisor.engine.errors import InvocationFailed
from supervisor.engine.sampling import sampler_for

if TYPE_CHECKING:
    from supervisor.engine.bus import CallContext


def sampling_apply(ctx: CallContext, data: dict[str, Any]) -> dict[str, Any]:
    try:
        sampler = sampler_for(data)
    except BlockError as exc:
        raise InvocationFailed(
            "deserialization_error",
            f"Failed to deserialize input for engine::sampling::apply: {exc}",
        ) from None
    tracing = ctx.bus.tracing
    if tracing is None:
        return {"applied": False, "sampling": False}
    tracing.sampler = sampler
    return {"applied": True, "sampling": sampler is not None}
