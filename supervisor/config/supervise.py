"""The ``supervise:`` block (SUPERVISOR.md §4.2) and ``iii-supervisor.yaml``'s settings: a parser per
field, the tables that name them, and the walk that reports every bad field through a Collector."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from manifests.problems import did_you_mean, dotted, type_name
from manifests.schema import RESERVED_ENV
from supervisor.config.collect import Collector, Source
from supervisor.config.durations import UnitError, parse_duration, parse_signal, parse_size
from supervisor.config.model import (
    RESTART_ALIASES,
    Backoff,
    Health,
    Limits,
    LogSettings,
    SuperviseSpec,
)

__all__ = [
    "SETTINGS_FIELDS",
    "SUPERVISE_FIELDS",
    "FieldError",
    "build_spec",
    "merge",
    "read_fields",
    "read_supervise",
    "suffix",
]


class FieldError(ValueError):
    """A bad value; ``sub`` locates it below the field (e.g. an env key)."""

    def __init__(self, message: str, sub: tuple[Any, ...] = ()) -> None:
        super().__init__(message)
        self.sub = sub

    @property
    def errors(self) -> list[FieldError]:
        return [self]


class FieldErrors(FieldError):
    """Several bad values inside one field (list items, env keys), reported separately."""

    def __init__(self, errors: list[FieldError]) -> None:
        super().__init__(str(errors[0]), errors[0].sub)
        self._errors = errors

    @property
    def errors(self) -> list[FieldError]:
        return self._errors


def _wrap_unit(parse: Callable[[Any], Any]) -> Callable[[Any], Any]:
    def parser(value: Any) -> Any:
        try:
            return parse(value)
        except UnitError as exc:
            raise FieldError(str(exc)) from None

    return parser


def _bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise FieldError(f"must be true or false, got {type_name(value)}")
    return value


def _int_at_least(low: int) -> Callable[[Any], int]:
    def parser(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise FieldError(f"must be an integer, got {type_name(value)}")
        if value < low:
            raise FieldError(f"must be at least {low}")
        return value

    return parser


def _int_between(low: int, high: int) -> Callable[[Any], int]:
    def parser(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise FieldError(f"must be an integer, got {type_name(value)}")
        if not low <= value <= high:
            raise FieldError(f"must be between {low} and {high}")
        return value

    return parser


def _number(low: float, high: float | None = None) -> Callable[[Any], float]:
    def parser(value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise FieldError(f"must be a number, got {type_name(value)}")
        if value < low or (high is not None and value > high):
            raise FieldError(
                f"must be between {low} and {high}"
                if high is not None
                else f"must be at least {low}"
            )
        return float(value)

    return parser


def _choice(*choices: str) -> Callable[[Any], str]:
    def parser(value: Any) -> str:
        if value not in choices or not isinstance(value, str):
            raise FieldError(f"must be one of {', '.join(choices)}")
        return value

    return parser


def _restart(value: Any) -> Any:
    if not isinstance(value, str) or value not in RESTART_ALIASES:
        raise FieldError(
            "must be one of always, on-failure, never (or permanent, transient, temporary)"
        )
    return RESTART_ALIASES[value]


def _list_of(item: Callable[[Any], Any]) -> Callable[[Any], tuple[Any, ...]]:
    def parser(value: Any) -> tuple[Any, ...]:
        if not isinstance(value, list):
            raise FieldError(f"must be a list, got {type_name(value)}")
        out = []
        errors: list[FieldError] = []
        for index, element in enumerate(value):
            try:
                out.append(item(element))
            except FieldError as exc:
                errors.extend(FieldError(str(e), (index, *e.sub)) for e in exc.errors)
        if errors:
            raise FieldErrors(errors)
        return tuple(out)

    return parser


def _exit_code(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 255:
        raise FieldError("exit codes are integers from 0 to 255")
    return value


def _name(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise FieldError(f"must be a non-empty string, got {type_name(value)}")
    return value


def _optional(parse: Callable[[Any], Any]) -> Callable[[Any], Any]:
    return lambda value: None if value is None else parse(value)


def _command(value: Any) -> str | list[str]:
    if isinstance(value, str):
        if not value.strip():
            raise FieldError("must not be empty")
        return value
    if isinstance(value, list):
        if not value:
            raise FieldError("must not be an empty list")
        if not all(isinstance(v, str) for v in value):
            raise FieldError("must be a command string or a list of strings (an argv)")
        return list(value)
    raise FieldError(f"must be a command string or an argv list, got {type_name(value)}")


def _env(value: Any) -> dict[str, str]:
    if not isinstance(value, dict):
        raise FieldError(f"must be a mapping of names to strings, got {type_name(value)}")
    errors: list[FieldError] = []
    for key, item in value.items():
        if not isinstance(key, str) or not key:
            errors.append(FieldError("variable names must be non-empty strings", (str(key),)))
            continue
        if key in RESERVED_ENV:  # III_NAMESPACE is not reserved: operators may set it here
            message = f"RESERVED_ENV_OVERRIDE: {key} is set by the supervisor"
            errors.append(FieldError(message, (key,)))
        if not isinstance(item, str):
            message = f'must be a string, got {type_name(item)} — quote the value: {key}: "…"'
            errors.append(FieldError(message, (key,)))
    if errors:
        raise FieldErrors(errors)
    return dict(value)


def _memory(value: Any) -> int | str:
    if value == "manifest":
        return "manifest"
    return _wrap_unit(parse_size)(value)


def _replicas(value: Any) -> int:
    if value != 1 or isinstance(value, bool):
        raise FieldError("only 1 is supported for now (replicas are reserved for autoscaling)")
    return 1


_DURATION = _wrap_unit(parse_duration)
_SIZE = _wrap_unit(parse_size)
_SIGNAL = _wrap_unit(parse_signal)

SUPERVISE_FIELDS: dict[str, Any] = {
    "restart": _restart,
    "max_restarts": _int_at_least(0),
    "restart_window": _DURATION,
    "backoff": {
        "initial": _DURATION,
        "max": _DURATION,
        "multiplier": _number(1.0),
        "jitter": _number(0.0, 1.0),
        "reset_after": _DURATION,
    },
    "success_exit_codes": _list_of(_exit_code),
    "success_signals": _list_of(_SIGNAL),
    "restart_prevent_exit_codes": _list_of(_exit_code),
    "critical": _bool,
    "autostart": _bool,
    "depends_on": _list_of(_name),
    "on_dependency_restart": _choice("ignore", "restart"),
    "readiness": _choice("bus", "process", "notify", "fd"),
    "start_timeout": _DURATION,
    "min_uptime": _DURATION,
    "ready_functions": _list_of(_name),
    "health": {
        "interval": _DURATION,
        "timeout": _DURATION,
        "kill_grace": _DURATION,
        "probe_function": _optional(_name),
    },
    "reconnect_grace": _DURATION,
    "stop_signal": _SIGNAL,
    "stop_timeout": _DURATION,
    "drain_timeout": _DURATION,
    "install": _choice("once", "always", "never"),
    "install_timeout": _DURATION,
    "command": _optional(_command),
    "working_dir": _optional(_name),
    "env": _env,
    "inherit_env": _bool,
    "nice": _optional(_int_between(-20, 19)),
    "nice_when_ready": _optional(_int_between(-20, 19)),
    "limits": {"memory": _optional(_memory), "nofile": _optional(_int_at_least(1))},
    "log": {
        "file": _bool,
        "max_bytes": _SIZE,
        "backups": _int_at_least(0),
        "to_supervisor_log": _bool,
    },
    "replicas": _replicas,
}
NESTED = {"backoff": Backoff, "health": Health, "limits": Limits, "log": LogSettings}
NOT_IN_DEFAULTS = ("command", "depends_on", "working_dir")

SETTINGS_FIELDS: dict[str, Callable[[Any], Any]] = {
    "bus_listen": _name,
    "bus_port": _int_at_least(0),
    "socket": _name,
    "socket_group": _name,
    "socket_group_control": _bool,
    "state_dir": _name,
    "health_listen": _name,
    "log_format": _choice("json", "console"),
    "log_level": _choice("debug", "info", "warning", "error", "critical"),
    "shutdown_timeout": _DURATION,
    "orphan_grace": _DURATION,
    "sweep_grace": _DURATION,
    "watch": _bool,
    "no_install": _bool,
    "strict": _bool,
}


def merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def build_spec(partial: dict[str, Any]) -> SuperviseSpec:
    kwargs = dict(partial)
    for group, cls in NESTED.items():
        if group in kwargs:
            kwargs[group] = cls(**kwargs[group])
    return SuperviseSpec(**kwargs)


# -- the loader --------------------------------------------------------------------------------


def suffix(sub: tuple[Any, ...]) -> str:
    return "".join(f"[{s}]" if isinstance(s, int) else f".{s}" for s in sub)


def read_supervise(
    c: Collector,
    src: Source,
    at: tuple[Any, ...],
    shown: str,
    raw: Any,
    *,
    in_defaults: bool = False,
) -> dict[str, Any]:
    """Validate one ``supervise:`` block into a partial dict of parsed values."""
    if not isinstance(raw, dict):
        c.error(src, at, shown, f"must be a mapping, got {type_name(raw)}")
        return {}
    label = "supervise." if not in_defaults else "defaults."
    return read_fields(c, src, at, shown, raw, SUPERVISE_FIELDS, label, in_defaults)


def read_fields(
    c: Collector,
    src: Source,
    at: tuple[Any, ...],
    shown: str,
    raw: dict[Any, Any],
    table: dict[str, Any],
    label: str,
    in_defaults: bool,
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in raw.items():
        here, where = at + (key,), f"{shown}.{dotted((key,))}"
        spec = table.get(key) if isinstance(key, str) else None
        if spec is None:
            c.error(src, here, where, "unknown key" + did_you_mean(str(key), table, label))
            continue
        if in_defaults and key in NOT_IN_DEFAULTS and table is SUPERVISE_FIELDS:
            c.error(src, here, where, "not allowed in defaults (set it per worker)")
            continue
        if isinstance(spec, dict):
            if value is None:
                continue
            if not isinstance(value, dict):
                c.error(src, here, where, f"must be a mapping, got {type_name(value)}")
                continue
            out[key] = read_fields(c, src, here, where, value, spec, f"{label}{key}.", False)
            continue
        try:
            out[key] = spec(value)
        except FieldError as exc:
            for err in exc.errors:
                c.error(src, here + err.sub, where + suffix(err.sub), str(err))
    return out


# -- config.yaml -----------------------------------------------------------------------
