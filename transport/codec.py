"""JSON codec for protocol messages: one cattrs converter, orjson for the bytes.

Decoding is strict about shapes (a string field must hold a string) and lenient where the
SDKs are (PROTOCOL.md §19.1: a missing ``data``/``config`` is ``null``; unknown keys are
ignored). Every failure is a ``DecodeError`` carrying a one-line reason and, when the frame
had one, its ``invocation_id`` so the bus can answer instead of leaving the caller to time out.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

import attrs
import cattrs
import orjson
from cattrs.gen import make_dict_structure_fn, make_dict_unstructure_fn, override

from transport import messages as m

__all__ = ["DecodeError", "decode", "encode", "encode_str", "converter", "to_dict"]


class DecodeError(ValueError):
    """A frame that is not a valid protocol message."""

    def __init__(self, reason: str, *, tag: str | None = None, invocation_id: str | None = None):
        super().__init__(reason)
        self.reason = reason
        self.tag = tag
        self.invocation_id = invocation_id


converter = cattrs.Converter(forbid_extra_keys=False)


def _strict_str(value: Any, _: type) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected a string, got {type(value).__name__}")
    return value


def _strict_int(value: Any, _: type) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"expected an integer, got {type(value).__name__}")
    return value


def _strict_bool(value: Any, _: type) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"expected a boolean, got {type(value).__name__}")
    return value


converter.register_structure_hook(str, _strict_str)
converter.register_structure_hook(bool, _strict_bool)
converter.register_structure_hook(int, _strict_int)
converter.register_structure_hook(Any, lambda v, _: v)

# Keys always written even when null: SDK models treat them as present (``config`` of an
# E→W registertrigger, ``data`` of an E→W invokefunction).
_ALWAYS = {m.RegisterTrigger: ("config",), m.InvokeFunction: ("data",)}


_MODEL_CLASSES: frozenset[type] = frozenset((m.ErrorBody, m.TriggerAction, *m.ALL_MESSAGES))


def _make_unstructure(cls: type) -> Any:
    keep: dict[str, Any] = {name: override(omit_if_default=False) for name in _ALWAYS.get(cls, ())}
    return make_dict_unstructure_fn(cls, converter, _cattrs_omit_if_default=True, **keep)


# Hooks are generated on first use of each class: most frames take the fast paths below,
# and code generation for every class would add ~15 ms to every process start.
converter.register_unstructure_hook_factory(lambda cls: cls in _MODEL_CLASSES, _make_unstructure)
converter.register_structure_hook_factory(
    lambda cls: cls in _MODEL_CLASSES, lambda cls: make_dict_structure_fn(cls, converter)
)


def generic_to_dict(msg: Any) -> dict[str, Any]:
    """The message as a JSON-ready dict via the cattrs converter, ``type`` first."""
    body = converter.unstructure(msg)
    return {"type": msg.TAG, **body}


# Hand-written fast paths for the two messages of every call (each hop decodes and encodes
# them); they produce exactly what the converter produces (tests/unit/transport/test_codec.py)
# and fall back to it for anything unusual.


def _error_dict(err: m.ErrorBody) -> dict[str, Any]:
    out = {"code": err.code, "message": err.message}
    if err.stacktrace is not None:
        out["stacktrace"] = err.stacktrace
    return out


def _invoke_to_dict(msg: m.InvokeFunction) -> dict[str, Any]:
    out: dict[str, Any] = {
        "type": "invokefunction",
        "function_id": msg.function_id,
        "data": msg.data,
    }
    if msg.invocation_id is not None:
        out["invocation_id"] = msg.invocation_id
    if msg.action is not None:
        action = {"type": msg.action.type}
        if msg.action.queue is not None:
            action["queue"] = msg.action.queue
        out["action"] = action
    if msg.namespace is not None:
        out["namespace"] = msg.namespace
    if msg.metadata is not None:
        out["metadata"] = msg.metadata
    if msg.traceparent is not None:
        out["traceparent"] = msg.traceparent
    if msg.baggage is not None:
        out["baggage"] = msg.baggage
    if msg.caller is not None:
        out["caller"] = msg.caller
    if msg.observe_depth is not None:
        out["observe_depth"] = msg.observe_depth
    if msg.activation is not None:
        out["activation"] = msg.activation
    return out


def _result_to_dict(msg: m.InvocationResult) -> dict[str, Any]:
    out: dict[str, Any] = {
        "type": "invocationresult",
        "invocation_id": msg.invocation_id,
        "function_id": msg.function_id,
    }
    if msg.result is not None:
        out["result"] = msg.result
    if msg.error is not None:
        out["error"] = _error_dict(msg.error)
    if msg.traceparent is not None:
        out["traceparent"] = msg.traceparent
    if msg.baggage is not None:
        out["baggage"] = msg.baggage
    return out


_FAST_TO_DICT: dict[type, Any] = {
    m.InvokeFunction: _invoke_to_dict,
    m.InvocationResult: _result_to_dict,
}


def to_dict(msg: Any) -> dict[str, Any]:
    """The message as a JSON-ready dict, ``type`` first."""
    fast = _FAST_TO_DICT.get(type(msg))
    return fast(msg) if fast is not None else generic_to_dict(msg)


def _opt_str(value: Any) -> bool:
    return value is None or type(value) is str


def _fast_invoke(obj: dict[str, Any]) -> m.InvokeFunction | None:
    fid = obj.get("function_id")
    inv = obj.get("invocation_id")
    ns = obj.get("namespace")
    tp = obj.get("traceparent")
    bg = obj.get("baggage")
    if type(fid) is not str or not (_opt_str(inv) and _opt_str(ns) and _opt_str(tp)):
        return None
    if not _opt_str(bg):
        return None
    action = obj.get("action")
    if action is not None:
        if type(action) is not dict:
            return None
        kind = action.get("type")
        queue = action.get("queue")
        if type(kind) is not str or not _opt_str(queue):
            return None
        action = m.TriggerAction(kind, queue)
    return m.InvokeFunction(
        fid,
        obj.get("data"),
        inv,
        action,
        ns,
        obj.get("metadata"),
        tp,
        bg,
        obj.get("caller"),
        obj.get("observe_depth"),
        obj.get("activation"),
    )


def _fast_result(obj: dict[str, Any]) -> m.InvocationResult | None:
    inv = obj.get("invocation_id")
    fid = obj.get("function_id")
    tp = obj.get("traceparent")
    bg = obj.get("baggage")
    if type(inv) is not str or type(fid) is not str or not (_opt_str(tp) and _opt_str(bg)):
        return None
    err = obj.get("error")
    if err is not None:
        if type(err) is not dict:
            return None
        code, message, trace = err.get("code"), err.get("message"), err.get("stacktrace")
        if type(code) is not str or type(message) is not str or not _opt_str(trace):
            return None
        err = m.ErrorBody(code, message, trace)
    return m.InvocationResult(inv, fid, obj.get("result"), err, tp, bg)


_FAST_FROM_DICT = {"invokefunction": _fast_invoke, "invocationresult": _fast_result}


def encode(msg: Any) -> bytes:
    return orjson.dumps(to_dict(msg))


def encode_str(msg: Any) -> str:
    return encode(msg).decode()


def _first_error(exc: BaseException) -> str:
    if isinstance(exc, cattrs.ClassValidationError):
        notes: list[str] = []
        for sub in exc.exceptions:
            field = next(
                (getattr(n, "name", None) for n in getattr(sub, "__notes__", []) or []), None
            )
            del field
            notes.extend(str(n) for n in getattr(sub, "__notes__", []) or [])
            if isinstance(sub, KeyError):
                return f"missing field {sub.args[0]!r}"
            if isinstance(sub, cattrs.ClassValidationError):
                return _first_error(sub)
            text = f"{type(sub).__name__}: {sub}"
            where = ", ".join(notes)
            return f"{where}: {text}" if where else text
    return str(exc)


# A ``\\u`` escape of a surrogate that is not half of a pair (SDK 0.25 writes a lone
# surrogate of a Python string this way; OBSERVE.md §11, item 4). Preceded by an even number of
# backslashes, so it is an escape and not an escaped backslash followed by "ud800".
_LONE_SURROGATE = re.compile(
    rb"(?<!\\)((?:\\\\)*)"
    rb"(?:\\u[dD][89abAB][0-9a-fA-F]{2}(?!\\u[dD][c-fC-F][0-9a-fA-F]{2})"
    rb"|(?<!\\u[dD][89abAB][0-9a-fA-F]{2})\\u[dD][c-fC-F][0-9a-fA-F]{2})"
)


def _without_lone_surrogates(data: bytes | bytearray | str, exc: Exception) -> Any:
    """Parse again with every lone surrogate escape read as U+FFFD (orjson refuses them,
    and could not write them back out either); any other error is the frame's."""
    raw = data.encode() if isinstance(data, str) else bytes(data)
    if b"\\u" not in raw:
        raise DecodeError(f"not JSON: {exc}") from None
    fixed, count = _LONE_SURROGATE.subn(rb"\1\\ufffd", raw)
    if not count:
        raise DecodeError(f"not JSON: {exc}") from None
    try:
        return orjson.loads(fixed)
    except orjson.JSONDecodeError as again:
        raise DecodeError(f"not JSON: {again}") from None


_CANONICAL_UUID = re.compile(r"[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}")


def _check_uuid(value: str | None, field: str, tag: str, invocation_id: str | None) -> None:
    if value is None or _CANONICAL_UUID.fullmatch(value):
        return
    try:
        uuid.UUID(value)
    except (ValueError, AttributeError, TypeError):
        raise DecodeError(
            f"{tag}.{field} is not a UUID: {value[:64]!r}", tag=tag, invocation_id=None
        ) from None


def decode(data: bytes | bytearray | str) -> Any:
    """Decode one frame. Returns ``None`` for an empty/whitespace frame (ignored by protocol)."""
    if not data or (data[:1].isspace() and not data.strip()):  # strip() may copy: 64 MiB
        return None
    try:
        obj = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        obj = _without_lone_surrogates(data, exc)
    if not isinstance(obj, dict):
        raise DecodeError(f"not a JSON object but {type(obj).__name__}")
    tag = obj.get("type")
    if not isinstance(tag, str):
        raise DecodeError("missing string field 'type'")
    cls = m.BY_TAG.get(tag)
    if cls is None or tag == "error":
        raise DecodeError(f"unknown message type {tag[:64]!r}", tag=tag)
    inv = obj.get("invocation_id")
    inv_id = inv if isinstance(inv, str) else None
    fast = _FAST_FROM_DICT.get(tag)
    if fast is not None:
        msg = fast(obj)
        if msg is not None:
            _check_uuid(msg.invocation_id, "invocation_id", tag, inv_id)
            return msg
    if tag == "registertrigger" and "config" not in obj:
        obj["config"] = None
    try:
        msg = converter.structure(obj, cls)
    except (cattrs.BaseValidationError, KeyError, TypeError, ValueError) as exc:
        raise DecodeError(
            f"bad {tag}: {_first_error(exc)}", tag=tag, invocation_id=inv_id
        ) from None
    if tag in ("invokefunction", "invocationresult"):
        _check_uuid(msg.invocation_id, "invocation_id", tag, inv_id)
    return msg


def is_message(obj: Any) -> bool:
    return attrs.has(type(obj)) and hasattr(type(obj), "TAG")
