"""Stage A of ``observe`` (OBSERVE.md §5.2 steps 1–3): the message's shape, its filter and
its self-target check, turned into a normalized ``ObserverSpec`` or an ``ObserveError``.

Pure: no registry, no time. The first failure wins, in the spec's order.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import attrs

from supervisor.engine.errors import DEFAULT
from transport import messages as m

CAPTURES = ("input", "output", "error", "caller", "metadata")
DEFAULT_CAPTURE = ("input", "output", "caller")
ONS = ("success", "error", "complete")
DELIVERS = ("envelope", "input", "output")
DEFAULT_MAX_IN_FLIGHT = 64  # §3.1 [undetermined]

Key = tuple[str, str]  # (namespace, function_id)


class CompiledFilter(Protocol):
    """What ``supervisor.engine.observe.filter.compile_filter`` returns."""

    @property
    def normal(self) -> Any: ...
    def matches(self, document: Any) -> bool: ...


Compile = Callable[[object], CompiledFilter]


class ObserveError(Exception):
    """An ``observe`` refused: ``code`` and ``message`` go into ``observeresult.error``."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message

    def body(self) -> m.ErrorBody:
        return m.ErrorBody(self.code, self.message)


@attrs.frozen(eq=False)
class ObserverSpec:
    """An observer's normalized definition (defaults applied)."""

    id: str
    source: Key
    target: Key
    args: dict[str, Any]
    filters: Any  # as the observer sent them ({} when none)
    compiled: CompiledFilter = attrs.field(repr=False)
    capture: tuple[str, ...]  # effective capture (§7.5 rule 4)
    on: str
    deliver: str
    metadata: Any
    max_fires: int | None
    expires_in_ms: int | None
    max_in_flight: int
    explicit_capture: bool = False
    added_capture: str | None = None  # the deliver part added to capture (§7.5 rule 4)

    def same_definition(self, other: ObserverSpec) -> bool:
        """Replay check (§5.2 step 5): the normalized definitions are equal."""
        return self.key_fields() == other.key_fields()

    def key_fields(self) -> tuple[Any, ...]:
        return (
            self.source,
            self.target,
            self.args,
            self.filters,
            self.capture,
            self.on,
            self.deliver,
            self.metadata,
            self.max_fires,
            self.expires_in_ms,
            self.max_in_flight,
        )


def _blank(value: Any) -> bool:
    return not isinstance(value, str) or not value.strip()


def _namespace(value: Any, field: str, function_id: str, home: str) -> str:
    if value is None:
        if function_id.startswith(("engine::", "configuration::")):
            return DEFAULT
        return home
    if _blank(value):
        raise ObserveError("INVALID_ARGS", f"{field} must be a non-blank string")
    return str(value)


def _positive(value: Any, field: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ObserveError("INVALID_ARGS", f"{field} must be an integer >= 1, got {value!r}")
    return value


def _choice(value: Any, field: str, allowed: tuple[str, ...], default: str) -> str:
    if value is None:
        return default
    if value not in allowed:
        names = ", ".join(allowed)
        raise ObserveError("INVALID_ARGS", f"{field} must be one of {names}, got {value!r}")
    return str(value)


def parse_observe(msg: m.Observe, home_namespace: str, compile_filter: Compile) -> ObserverSpec:
    """Validate an ``observe`` message (§5.2 stage A); raises ``ObserveError``."""
    if _blank(msg.id):
        raise ObserveError("INVALID_ARGS", "id must be a non-blank string")
    source, target = msg.source, msg.target
    if not isinstance(source, dict):
        raise ObserveError("INVALID_ARGS", "source must be an object")
    if not isinstance(target, dict):
        raise ObserveError("INVALID_ARGS", "target must be an object")
    src_fid, tgt_fid = source.get("function_id"), target.get("function_id")
    if not isinstance(src_fid, str) or _blank(src_fid):
        raise ObserveError("INVALID_ARGS", "source.function_id must be a non-blank string")
    if not isinstance(tgt_fid, str) or _blank(tgt_fid):
        raise ObserveError("INVALID_ARGS", "target.function_id must be a non-blank string")
    src_ns = _namespace(source.get("namespace"), "source.namespace", src_fid, home_namespace)
    tgt_ns = _namespace(target.get("namespace"), "target.namespace", tgt_fid, home_namespace)
    args = source.get("args")
    if args is None:
        args = {}
    elif not isinstance(args, dict):
        raise ObserveError("INVALID_ARGS", "source.args must be an object")
    raw_capture = source.get("capture")
    if raw_capture is None:
        capture: tuple[str, ...] = DEFAULT_CAPTURE
    elif not isinstance(raw_capture, list) or any(c not in CAPTURES for c in raw_capture):
        raise ObserveError(
            "INVALID_ARGS",
            f"source.capture must be a list of {', '.join(CAPTURES)}, got {raw_capture!r}",
        )
    else:
        capture = tuple(dict.fromkeys(raw_capture))
    on = _choice(source.get("on"), "source.on", ONS, "success")
    deliver = _choice(source.get("deliver"), "source.deliver", DELIVERS, "envelope")
    max_fires = _positive(msg.max_fires, "max_fires")
    expires = _positive(msg.expires_in_ms, "expires_in_ms")
    max_in_flight = _positive(msg.max_in_flight, "max_in_flight") or DEFAULT_MAX_IN_FLIGHT
    filters = source.get("filters")
    if filters is None:
        filters = {}
    compiled = _compile(filters, compile_filter)
    if (src_ns, src_fid) == (tgt_ns, tgt_fid):
        raise ObserveError(
            "SELF_TARGET", f"observer {msg.id}: {src_fid} cannot be its own observer's target"
        )
    added: str | None = None
    if deliver in ("input", "output") and deliver not in capture:
        capture = (*capture, deliver)
        added = deliver
    return ObserverSpec(
        id=msg.id,
        source=(src_ns, src_fid),
        target=(tgt_ns, tgt_fid),
        args=args,
        filters=filters,
        compiled=compiled,
        capture=capture,
        on=on,
        deliver=deliver,
        metadata=msg.metadata,
        max_fires=max_fires,
        expires_in_ms=expires,
        max_in_flight=max_in_flight,
        explicit_capture=raw_capture is not None,
        added_capture=added,
    )


def _compile(filters: Any, compile_filter: Compile) -> CompiledFilter:
    try:
        return compile_filter(filters)
    except ObserveError:
        raise
    except Exception as exc:  # FilterError (its .message) or anything the validator raised
        text = getattr(exc, "message", None) or str(exc) or type(exc).__name__
        raise ObserveError("INVALID_FILTER", str(text)) from None
