"""The ``iii-http`` config block (WORKERS.md §3.1), validated strictly.

Unknown keys anywhere are rejected, as upstream's deny-unknown-fields structs do; every
error names the offending field by its dotted path (``cors.allowed_origins[1]``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

from transport.jsonshape import json_type as _type_name

DEFAULT_PORT = 3111
DEFAULT_HOST = "0.0.0.0"
DEFAULT_TIMEOUT_MS = 30_000
DEFAULT_CONCURRENCY = 1024


class ConfigError(ValueError):
    """The config block is invalid; the message names the field."""


@attrs.frozen
class CorsSettings:
    allowed_origins: tuple[str, ...] = ()
    allowed_methods: tuple[str, ...] = ()


@attrs.frozen
class MiddlewareSpec:
    function_id: str
    phase: str = "preHandler"
    priority: int = 0


@attrs.frozen
class HttpSettings:
    port: int = DEFAULT_PORT
    host: str = DEFAULT_HOST
    default_timeout: int = DEFAULT_TIMEOUT_MS
    concurrency_request_limit: int = DEFAULT_CONCURRENCY
    cors: CorsSettings | None = None
    # Only ``preHandler`` entries, sorted by priority (stable): what a request runs.
    middleware: tuple[MiddlewareSpec, ...] = ()

    @property
    def timeout_s(self) -> float:
        return self.default_timeout / 1000.0


_TOP_KEYS = (
    "port",
    "host",
    "default_timeout",
    "concurrency_request_limit",
    "cors",
    "middleware",
)
_CORS_KEYS = ("allowed_origins", "allowed_methods")
_MW_KEYS = ("function_id", "phase", "priority")


def _check_keys(obj: Mapping[str, Any], allowed: tuple[str, ...], where: str) -> None:
    for key in obj:
        if key not in allowed:
            place = f"{where}.{key}" if where else str(key)
            raise ConfigError(
                f"{place}: unknown field `{key}`, expected one of: {', '.join(allowed)}"
            )


def _int(value: Any, field: str, minimum: int, maximum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{field}: expected an integer, got {_type_name(value)} {value!r}")
    if value < minimum or (maximum is not None and value > maximum):
        bound = f"between {minimum} and {maximum}" if maximum is not None else f">= {minimum}"
        raise ConfigError(f"{field}: must be {bound}, got {value}")
    return value


def _str(value: Any, field: str) -> str:
    if not isinstance(value, str):
        raise ConfigError(f"{field}: expected a string, got {_type_name(value)} {value!r}")
    return value


def _str_list(value: Any, field: str) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise ConfigError(f"{field}: expected an array of strings, got {_type_name(value)}")
    return tuple(_str(item, f"{field}[{i}]") for i, item in enumerate(value))


def _cors(value: Any) -> CorsSettings | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ConfigError(f"cors: expected an object, got {_type_name(value)}")
    _check_keys(value, _CORS_KEYS, "cors")
    origins = _str_list(value.get("allowed_origins", []), "cors.allowed_origins")
    methods = _str_list(value.get("allowed_methods", []), "cors.allowed_methods")
    return CorsSettings(allowed_origins=origins, allowed_methods=methods)


def _middleware(value: Any) -> tuple[MiddlewareSpec, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise ConfigError(f"middleware: expected an array, got {_type_name(value)}")
    specs: list[MiddlewareSpec] = []
    for i, entry in enumerate(value):
        where = f"middleware[{i}]"
        if not isinstance(entry, dict):
            raise ConfigError(f"{where}: expected an object, got {_type_name(entry)}")
        _check_keys(entry, _MW_KEYS, where)
        if "function_id" not in entry:
            raise ConfigError(f"{where}.function_id: missing required field")
        specs.append(
            MiddlewareSpec(
                function_id=_str(entry["function_id"], f"{where}.function_id"),
                phase=_str(entry.get("phase", "preHandler"), f"{where}.phase"),
                priority=_int(entry.get("priority", 0), f"{where}.priority", -(2**63), 2**63 - 1),
            )
        )
    specs.sort(key=lambda s: s.priority)  # stable: equal priorities keep config order
    return tuple(s for s in specs if s.phase == "preHandler")


def parse_config(raw: Any) -> HttpSettings:
    """Validate the ``config:`` block (``None`` → all defaults)."""
    if raw is None:
        return HttpSettings()
    if not isinstance(raw, dict):
        raise ConfigError(f"config: expected an object, got {_type_name(raw)}")
    _check_keys(raw, _TOP_KEYS, "")
    limit = _int(
        raw.get("concurrency_request_limit", DEFAULT_CONCURRENCY), "concurrency_request_limit", 0
    )
    return HttpSettings(
        port=_int(raw.get("port", DEFAULT_PORT), "port", 0, 65535),
        host=_str(raw.get("host", DEFAULT_HOST), "host"),
        default_timeout=_int(raw.get("default_timeout", DEFAULT_TIMEOUT_MS), "default_timeout", 0),
        concurrency_request_limit=max(1, limit),  # a stored 0 is clamped to 1
        cors=_cors(raw.get("cors")),
        middleware=_middleware(raw.get("middleware")),
    )
