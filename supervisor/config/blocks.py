"""Strict schemas (attrs + cattrs) for the ``config:`` blocks of the built-in workers.

Unknown keys and wrong types are errors, as upstream's deny-unknown-fields structs (WORKERS.md §0).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any, Literal, NewType, get_args, get_origin

import attrs
import cattrs
from cattrs.errors import (
    AttributeValidationNote,
    ClassValidationError,
    ForbiddenExtraKeysError,
    IterableValidationError,
    IterableValidationNote,
)
from cattrs.gen import make_dict_structure_fn

from manifests.problems import PathPart, did_you_mean, dotted, show_value
from supervisor.config.model import ListenerConfig, RbacConfig

Issue = tuple[tuple[PathPart, ...], str]

# Constrained scalars: the type names the rule, the hook enforces it.
Port = NewType("Port", int)
PositiveInt = NewType("PositiveInt", int)
NonNegativeInt = NewType("NonNegativeInt", int)
IntervalMs = NewType("IntervalMs", int)
BatchSize = NewType("BatchSize", int)
Ratio = NewType("Ratio", float)
Number = NewType("Number", float)

_INT_RANGES: dict[Any, tuple[int, int | None]] = {
    Port: (0, 65535),
    PositiveInt: (1, None),
    NonNegativeInt: (0, None),
    IntervalMs: (100, 3_600_000),
    BatchSize: (1, 10_000),
}


# -- iii-http (WORKERS.md §3.1) ----------------------------------------------------------------


@attrs.frozen
class HttpCors:
    allowed_origins: list[str] = attrs.Factory(list)
    allowed_methods: list[str] = attrs.Factory(list)


@attrs.frozen
class HttpMiddleware:
    function_id: str
    phase: str = "preHandler"
    priority: int = 0


@attrs.frozen
class HttpConfig:
    port: Port = Port(3111)
    host: str = "0.0.0.0"
    default_timeout: NonNegativeInt = NonNegativeInt(30000)
    concurrency_request_limit: NonNegativeInt = NonNegativeInt(1024)  # a 0 is clamped to 1
    cors: HttpCors | None = None
    middleware: list[HttpMiddleware] = attrs.Factory(list)


# -- adapters shared by state, pubsub and configuration ----------------------------------------


@attrs.frozen
class AdapterRef:
    name: str
    config: dict[str, Any] | None = None


@attrs.frozen
class KvStoreConfig:
    store_method: Literal["in_memory", "file_based"] = "in_memory"
    file_path: str = "kv_store_data.db"
    save_interval_ms: NonNegativeInt = NonNegativeInt(5000)
    fsync: Literal["always", "interval", "never"] = "interval"  # ours: durability of file_based


@attrs.frozen
class RedisAdapterConfig:
    redis_url: str = "redis://localhost:6379"


@attrs.frozen
class BridgeAdapterConfig:
    bridge_url: str = "ws://localhost:49134"


@attrs.frozen
class NoAdapterConfig:
    """An adapter that takes no settings (pubsub ``local``)."""


@attrs.frozen
class FsAdapterConfig:
    directory: str = "./config"


# -- iii-state (§5.1), iii-pubsub (§9.1), configuration (§2.1) ---------------------------------


@attrs.frozen
class StateConfig:
    adapter: AdapterRef | None = None
    triggers_enabled: bool = True
    max_value_bytes: NonNegativeInt | None = None
    save_interval_ms: IntervalMs | None = None


@attrs.frozen
class PubSubConfig:
    adapter: AdapterRef | None = None


@attrs.frozen
class ConfigurationConfig:
    adapter: AdapterRef | None = None
    ttl_seconds: NonNegativeInt = NonNegativeInt(0)
    entries: dict[str, Any] | None = None  # filled by the supervisor from config.yaml blocks


# -- iii-observability (§10.1) -----------------------------------------------------------------


@attrs.frozen
class SamplingRule:
    rate: Ratio
    operation: str | None = None
    service: str | None = None


@attrs.frozen
class SamplingRateLimit:
    max_traces_per_second: PositiveInt


@attrs.frozen
class SamplingConfig:
    default: Ratio | None = None
    rules: list[SamplingRule] = attrs.Factory(list)
    parent_based: bool | None = None
    rate_limit: SamplingRateLimit | None = None


@attrs.frozen
class TraceStorageConfig:
    enabled: bool = True
    directory: str = "./data/observability/traces"
    max_disk_bytes: NonNegativeInt = NonNegativeInt(1_073_741_824)
    retention_seconds: NonNegativeInt = NonNegativeInt(2_592_000)
    memory_max_bytes: NonNegativeInt = NonNegativeInt(268_435_456)
    memory_low_watermark_ratio: Ratio = Ratio(0.75)
    pending_max_age_seconds: NonNegativeInt = NonNegativeInt(3600)


@attrs.frozen
class AlertAction:
    type: Literal["log", "webhook", "function"] = "log"
    url: str | None = None
    path: str | None = None


AlertOperator = Literal[
    "greaterthan",
    "greaterthanorequal",
    "lessthan",
    "lessthanorequal",
    "equal",
    "notequal",
    ">",
    ">=",
    "<",
    "<=",
    "==",
    "!=",
]


@attrs.frozen
class AlertRule:
    name: str
    metric: str
    threshold: Number
    operator: AlertOperator = "greaterthan"
    window_seconds: PositiveInt = PositiveInt(60)
    cooldown_seconds: PositiveInt = PositiveInt(60)
    enabled: bool = True
    action: AlertAction | None = None


@attrs.frozen
class CollapseSpan:
    name: str
    service: str | None = None


@attrs.frozen
class ObservabilityConfig:
    """Every field optional: an omitted one falls back to its env variable, then its default."""

    enabled: bool | None = None
    service_name: str | None = None
    service_version: str | None = None
    service_namespace: str | None = None
    exporter: Literal["otlp", "memory", "both"] | None = None
    endpoint: str | None = None
    sampling_ratio: Ratio | None = None
    sampling: SamplingConfig | None = None
    memory_max_spans: PositiveInt | None = None
    trace_storage: TraceStorageConfig | None = None
    live_spans: bool | None = None
    metrics_enabled: bool | None = None
    metrics_exporter: Literal["memory", "otlp"] | None = None
    metrics_retention_seconds: PositiveInt | None = None
    metrics_max_count: PositiveInt | None = None
    logs_enabled: bool | None = None
    logs_exporter: Literal["memory", "otlp", "both"] | None = None
    logs_max_count: PositiveInt | None = None
    logs_retention_seconds: PositiveInt | None = None
    logs_batch_size: BatchSize | None = None
    logs_flush_interval_ms: IntervalMs | None = None
    logs_sampling_ratio: Ratio | None = None
    logs_console_output: bool | None = None
    alerts: list[AlertRule] = attrs.Factory(list)
    level: Literal["trace", "debug", "info", "warn", "error"] | None = None
    format: Literal["default", "json"] | None = None
    collapse_spans: list[CollapseSpan] = attrs.Factory(list)


# -- iii-worker-manager (§11) ------------------------------------------------------------------


@attrs.frozen
class ListenerBlock:
    host: str = "0.0.0.0"
    port: Port = Port(49134)
    handshake_timeout_ms: NonNegativeInt = NonNegativeInt(10000)
    middleware_function_id: str | None = None
    rbac: dict[str, Any] | None = None
    max_message_bytes: PositiveInt = PositiveInt(64 * 1024 * 1024)  # ours; not upstream


ADAPTERS: dict[type, dict[str, type]] = {
    StateConfig: {"kv": KvStoreConfig, "redis": RedisAdapterConfig, "bridge": BridgeAdapterConfig},
    PubSubConfig: {"local": NoAdapterConfig, "redis": RedisAdapterConfig},
    ConfigurationConfig: {"fs": FsAdapterConfig, "bridge": BridgeAdapterConfig},
}

# Built-in worker (canonical name) → the schema of its config block.
BLOCK_SCHEMAS: dict[str, type] = {
    "iii-http": HttpConfig,
    "iii-state": StateConfig,
    "iii-pubsub": PubSubConfig,
    "configuration": ConfigurationConfig,
    "iii-observability": ObservabilityConfig,
    "iii-worker-manager": ListenerBlock,
}


# -- the strict converter ----------------------------------------------------------------------


def _expected(what: str, value: object) -> TypeError:
    return TypeError(f"expected {what}, got {show_value(value)}")


def _strict_str(value: object, _: object) -> str:
    if not isinstance(value, str):
        raise _expected("string", value)
    return value


def _strict_int(value: object, _: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _expected("int", value)
    return value


def _strict_float(value: object, _: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _expected("number", value)
    return float(value)


def _strict_bool(value: object, _: object) -> bool:
    if not isinstance(value, bool):
        raise _expected("bool", value)
    return value


def _ranged_int(low: int, high: int | None) -> Callable[[object, object], int]:
    def hook(value: object, _: object) -> int:
        number = _strict_int(value, None)
        if number < low or (high is not None and number > high):
            bound = f"between {low} and {high}" if high is not None else f">= {low}"
            raise ValueError(f"expected an integer {bound}, got {number}")
        return number

    return hook


def _ratio(value: object, _: object) -> float:
    number = _strict_float(value, None)
    if not 0.0 <= number <= 1.0:
        raise ValueError(f"expected a number between 0.0 and 1.0, got {show_value(value)}")
    return number


def _is_literal(tp: Any) -> bool:
    return get_origin(tp) is Literal


def _literal_hook(tp: Any) -> Callable[[object, object], Any]:
    choices = get_args(tp)

    def hook(value: object, _: object) -> Any:
        if value not in choices or isinstance(value, bool):
            raise ValueError(
                f"expected one of {', '.join(map(str, choices))}, got {show_value(value)}"
            )
        return value

    return hook


def _is_list(tp: Any) -> bool:
    return get_origin(tp) is list


def _is_dict(tp: Any) -> bool:
    return get_origin(tp) is dict or tp is dict


def _make_converter() -> cattrs.Converter:
    conv = cattrs.Converter(forbid_extra_keys=True, detailed_validation=True)
    conv.register_structure_hook(str, _strict_str)
    conv.register_structure_hook(int, _strict_int)
    conv.register_structure_hook(float, _strict_float)
    conv.register_structure_hook(bool, _strict_bool)
    conv.register_structure_hook(Any, lambda value, _: value)
    for tp, (low, high) in _INT_RANGES.items():
        conv.register_structure_hook(tp, _ranged_int(low, high))
    conv.register_structure_hook(Ratio, _ratio)
    conv.register_structure_hook(Number, _strict_float)
    conv.register_structure_hook_factory(_is_literal, _literal_hook)

    def list_factory(tp: Any) -> Callable[[object, object], list[Any]]:
        (elem,) = get_args(tp) or (Any,)
        handler = conv.get_structure_hook(elem)

        def hook(value: object, _: object) -> list[Any]:
            if not isinstance(value, list):
                raise _expected("a list", value)
            out: list[Any] = []
            errors: list[Exception] = []
            for index, item in enumerate(value):
                try:
                    out.append(handler(item, elem))
                except Exception as exc:
                    exc.add_note(IterableValidationNote(f"@ index {index}", index, elem))
                    errors.append(exc)
            if errors:
                raise IterableValidationError(f"While structuring {tp}", errors, tp)
            return out

        return hook

    def dict_factory(tp: Any) -> Callable[[object, object], dict[Any, Any]]:
        def hook(value: object, _: object) -> dict[Any, Any]:
            if not isinstance(value, dict):
                raise _expected("a mapping", value)
            return dict(value)

        return hook

    def class_factory(cl: type) -> Callable[[object, object], Any]:
        inner = make_dict_structure_fn(cl, conv)

        def hook(value: object, _: object) -> Any:
            if not isinstance(value, dict):
                raise _expected("a mapping", value)
            return inner(value, cl)

        return hook

    conv.register_structure_hook_factory(_is_list, list_factory)
    conv.register_structure_hook_factory(_is_dict, dict_factory)
    conv.register_structure_hook_factory(attrs.has, class_factory)
    return conv


CONVERTER = _make_converter()


def _issues(exc: BaseException, path: tuple[PathPart, ...]) -> Iterator[Issue]:
    for note in getattr(exc, "__notes__", ()):
        if isinstance(note, IterableValidationNote):
            path = path + (note.index,)
        elif isinstance(note, AttributeValidationNote):
            path = path + (note.name,)
    if isinstance(exc, ForbiddenExtraKeysError):
        known = [a.name for a in attrs.fields(exc.cl)]
        prefix = dotted(path) + "." if path else ""
        for key in sorted(exc.extra_fields, key=str):
            yield path + (key,), "unknown key" + did_you_mean(str(key), known, prefix)
    elif isinstance(exc, ClassValidationError | IterableValidationError):
        for sub in exc.exceptions:
            yield from _issues(sub, path)
    elif isinstance(exc, KeyError):
        yield path, "missing (required)"
    else:
        yield path, str(exc)


def structure(value: Any, cls: type, at: tuple[PathPart, ...] = ()) -> tuple[Any, list[Issue]]:
    """Structure ``value`` into ``cls`` strictly; returns (instance or None, [(path, message)])."""
    try:
        return CONVERTER.structure(value, cls), []
    except Exception as exc:  # cattrs reports every field's problem in one exception group
        return None, list(_issues(exc, at))


def validate_block(canonical: str, raw: Any) -> tuple[Any, list[Issue]]:
    """Validate a built-in worker's ``config:`` block; ``None`` means "all defaults".

    Returns the structured block (an instance of ``BLOCK_SCHEMAS[canonical]``) and its issues,
    with paths relative to the block.
    """
    cls = BLOCK_SCHEMAS[canonical]
    block, issues = structure({} if raw is None else raw, cls)
    if not isinstance(raw, dict):
        return block, issues
    adapter = raw.get("adapter")
    if cls in ADAPTERS and isinstance(adapter, dict) and isinstance(adapter.get("name"), str):
        choices = ADAPTERS[cls]
        adapter_cls = choices.get(adapter["name"])
        if adapter_cls is None:
            available = ", ".join(choices)
            message = f"unknown adapter {show_value(adapter['name'])} — available: {available}"
            issues.append((("adapter", "name"), message))
        elif adapter.get("config") is None or isinstance(adapter.get("config"), dict):
            _, more = structure(adapter.get("config") or {}, adapter_cls, ("adapter", "config"))
            issues.extend(more)
    if cls is ListenerBlock and isinstance(raw.get("rbac"), dict):
        issues.extend(_rbac_issues(raw["rbac"]))
    return (block if not issues else None), issues


# -- listeners ---------------------------------------------------------------------------------

_RBAC_STRINGS = (
    "auth_function_id",
    "on_function_registration_function_id",
    "on_trigger_registration_function_id",
    "on_trigger_type_registration_function_id",
)
_MATCH_FORM = re.compile(r'\s*match\("(.*)"\)\s*')


def _rbac_issues(rbac: dict[str, Any]) -> Iterator[Issue]:
    """RBAC keys are typed; unknown keys are ignored as upstream does, except in map filters."""
    for key in _RBAC_STRINGS:
        if rbac.get(key) is not None and not isinstance(rbac[key], str):
            yield ("rbac", key), f"expected string, got {show_value(rbac[key])}"
    filters = rbac.get("expose_functions")
    if filters is None:
        return
    if not isinstance(filters, list):
        yield ("rbac", "expose_functions"), f"expected a list, got {show_value(filters)}"
        return
    for index, item in enumerate(filters):
        at = ("rbac", "expose_functions", index)
        if isinstance(item, str):
            if not _MATCH_FORM.fullmatch(item):
                yield at, 'a string filter must have the form match("pattern")'
            continue
        if not isinstance(item, dict):
            yield at, f'expected match("pattern") or a mapping, got {show_value(item)}'
            continue
        for key in item:
            if key not in ("match", "metadata", "namespace"):
                hint = did_you_mean(str(key), ("match", "metadata", "namespace"))
                yield at + (key,), "unknown key" + hint
        if ("match" in item) == ("metadata" in item):
            yield at, "a filter needs exactly one of match or metadata"
        if "match" in item and not isinstance(item["match"], str):
            yield at + ("match",), f"expected string, got {show_value(item['match'])}"
        if "metadata" in item and not isinstance(item["metadata"], dict):
            yield at + ("metadata",), f"expected a mapping, got {show_value(item['metadata'])}"
        if "namespace" in item and not isinstance(item["namespace"], str):
            yield at + ("namespace",), f"expected string, got {show_value(item['namespace'])}"


def listener_config(block: ListenerBlock) -> ListenerConfig:
    """The model's :class:`ListenerConfig` for a validated listener block."""
    rbac = None
    if block.rbac is not None:
        rbac = RbacConfig(
            auth_function_id=block.rbac.get("auth_function_id"),
            expose_functions=tuple(block.rbac.get("expose_functions") or ()),
            on_function_registration_function_id=block.rbac.get(
                "on_function_registration_function_id"
            ),
            on_trigger_registration_function_id=block.rbac.get(
                "on_trigger_registration_function_id"
            ),
            on_trigger_type_registration_function_id=block.rbac.get(
                "on_trigger_type_registration_function_id"
            ),
        )
    return ListenerConfig(
        host=block.host,
        port=block.port,
        handshake_timeout_ms=block.handshake_timeout_ms,
        middleware_function_id=block.middleware_function_id,
        rbac=rbac,
        max_message_bytes=block.max_message_bytes,
    )
