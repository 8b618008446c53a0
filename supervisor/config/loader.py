"""Loading ``config.yaml`` (+ manifests, + ``iii-supervisor.yaml``) into a validated EngineConfig.

Every problem of every file is collected and reported in one pass (SUPERVISOR.md §4.3).
"""

from __future__ import annotations

import os
import shlex
import shutil
from collections.abc import Callable, Iterable, Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import attrs

from manifests.problems import ConfigProblem, did_you_mean, dotted, show_value, type_name
from manifests.schema import (
    MANIFEST_FILE,
    RESERVED_ENV,
    builtin_manifest,
    check_worker_name,
    parse_manifest,
)
from manifests.yamlsource import YamlDoc, load_yaml
from supervisor.config.blocks import BLOCK_SCHEMAS, listener_config, validate_block
from supervisor.config.durations import UnitError, parse_duration, parse_signal, parse_size
from supervisor.config.interpolate import expand_text
from supervisor.config.model import (
    RESTART_ALIASES,
    Backoff,
    EngineConfig,
    Health,
    Limits,
    ListenerConfig,
    LogSettings,
    Manifest,
    SuperviseSpec,
    WorkerEntry,
    WorkerKind,
)

__all__ = [
    "BUILTINS",
    "CheckReport",
    "ConfigError",
    "ConfigProblem",
    "LoadedConfig",
    "SupervisorSettings",
    "builtin_worker",
    "check_config",
    "load",
    "load_config",
    "load_supervisor_settings",
]

SUPERVISOR_YAML = "iii-supervisor.yaml"
EMBEDDED_DEFAULT = "default-config.yaml"
TOP_LEVEL_KEYS = ("workers", "modules", "registration_namespace_grace_ms")
ENTRY_KEYS = ("name", "config", "image", "worker_path", "supervise")


@attrs.frozen
class BuiltinWorker:
    """A worker name the supervisor implements itself, and how it runs."""

    name: str
    kind: WorkerKind
    actor_module: str | None = None
    aliases: tuple[str, ...] = ()


BUILTINS: tuple[BuiltinWorker, ...] = (
    BuiltinWorker("iii-worker-manager", WorkerKind.LISTENER),
    BuiltinWorker("iii-http", WorkerKind.ACTOR, "actors.http", ("http",)),
    BuiltinWorker("iii-state", WorkerKind.ACTOR, "actors.state", ("state",)),
    BuiltinWorker("iii-pubsub", WorkerKind.ACTOR, "actors.pubsub", ("pubsub",)),
    BuiltinWorker("configuration", WorkerKind.ACTOR, "actors.configuration"),
    BuiltinWorker("iii-observability", WorkerKind.IN_PROCESS),
    BuiltinWorker("iii-engine-functions", WorkerKind.IN_PROCESS),
)
_BY_NAME = {alias: b for b in BUILTINS for alias in (b.name, *b.aliases)}


def builtin_worker(name: str) -> BuiltinWorker | None:
    """The built-in a worker name selects (``http``, ``iii-http#1`` → iii-http), if any."""
    return _BY_NAME.get(name.split("#", 1)[0])


# Upstream built-ins we do not run yet: such entries load with a warning, so upstream files load.
NOT_IMPLEMENTED: dict[str, tuple[str, ...]] = {
    "iii-stream": ("stream",),
    "iii-cron": ("cron",),
    "iii-queue": ("queue",),
    "iii-http-functions": (),
    "iii-exec": (),
    "iii-bridge": (),
    "iii-telemetry": (),
}
_NOT_IMPLEMENTED_NAMES = {alias for n, a in NOT_IMPLEMENTED.items() for alias in (n, *a)}

# Upstream's renamed pairs (WORKERS.md §1.2): listing both spellings is an error.
RENAMED_PAIRS = {
    "iii-http": "http",
    "iii-cron": "cron",
    "iii-queue": "queue",
    "iii-state": "state",
    "iii-pubsub": "pubsub",
}
# Workers whose settings the configuration actor also holds (WORKERS.md §1.6); their
# config.yaml blocks reach it as ``entries`` and win over stored values at every boot.
CONFIGURATION_IDS = (
    "iii-http",
    "iii-state",
    "iii-stream",
    "iii-queue",
    "iii-cron",
    "iii-pubsub",
    "iii-observability",
)


def _configuration_id(name: str) -> str | None:
    base = name.split("#", 1)[0]
    builtin = builtin_worker(base)
    canonical = builtin.name if builtin is not None else base
    return canonical if canonical in CONFIGURATION_IDS else None


def _seed_configuration(entries: tuple[WorkerEntry, ...]) -> tuple[WorkerEntry, ...]:
    """Hand the configuration actor the config.yaml block of every §1.6 worker."""
    seeds: dict[str, Any] = {}
    for entry in entries:
        cid = _configuration_id(entry.name)
        if cid is not None and "#" not in entry.name and isinstance(entry.config, dict):
            seeds.setdefault(cid, entry.config)
    out = []
    for entry in entries:
        if entry.name == "configuration" and seeds:
            block = dict(entry.config) if isinstance(entry.config, dict) else {}
            block["entries"] = seeds
            entry = attrs.evolve(entry, config=block)
        out.append(entry)
    return tuple(out)


MANDATORY = ("configuration", "iii-observability", "iii-engine-functions", "iii-worker-manager")
KNOWN_WORKER_NAMES = tuple(sorted({*_BY_NAME, *_NOT_IMPLEMENTED_NAMES}))


# -- results and errors ------------------------------------------------------------------------


class ConfigError(Exception):
    """The configuration is invalid; ``problems`` holds every problem found, in file order."""

    def __init__(self, problems: Iterable[ConfigProblem]) -> None:
        self.problems = list(problems)
        super().__init__(str(self))

    def __str__(self) -> str:
        return "\n".join(str(p) for p in self.problems)


@attrs.frozen
class SupervisorSettings:
    """``iii-supervisor.yaml``: supervisor-wide settings (durations in seconds) and ``defaults:``."""

    path: Path | None = None
    values: dict[str, Any] = attrs.field(factory=dict)
    defaults: dict[str, Any] = attrs.field(factory=dict)


@attrs.frozen
class LoadedConfig:
    """Everything one load produced: the engine config, the settings and the warnings."""

    engine: EngineConfig
    settings: SupervisorSettings
    warnings: tuple[ConfigProblem, ...] = ()


@attrs.frozen
class CheckReport:
    """The answer of ``check``: valid or not, every error, every warning."""

    valid: bool
    errors: tuple[ConfigProblem, ...] = ()
    warnings: tuple[ConfigProblem, ...] = ()
    config: LoadedConfig | None = None

    def to_json(self) -> dict[str, Any]:
        """``{valid, errors: [{file, line, path, message}], warnings: [...]}``."""
        return {
            "valid": self.valid,
            "errors": [p.to_dict() for p in self.errors],
            "warnings": [p.to_dict() for p in self.warnings],
        }


# -- public entry points -----------------------------------------------------------------------


def load_config(
    path: Path | None,
    *,
    env: Mapping[str, str] = os.environ,
    supervisor_yaml: Path | None = None,
) -> EngineConfig:
    """Load and validate ``path`` (``None``: ``./config.yaml``, else the embedded default).

    Raises :class:`ConfigError` listing every problem of every file involved.
    """
    return load(path, env=env, supervisor_yaml=supervisor_yaml).engine


def load(
    path: Path | None,
    *,
    env: Mapping[str, str] = os.environ,
    supervisor_yaml: Path | None = None,
    strict: bool = False,
) -> LoadedConfig:
    """Like :func:`load_config`, also returning the supervisor settings and structured warnings.

    With ``strict``, entries that are valid upstream but cannot run here are errors.
    """
    loader = _Loader(env)
    loaded = loader.run(path, supervisor_yaml)
    errors = list(loader.errors)
    if strict:
        errors.extend(w for w, promote in loader.warnings if promote)
    if errors or loaded is None:
        raise ConfigError(_ordered(errors, loader.file_order))
    return loaded


def check_config(
    path: Path | None,
    *,
    env: Mapping[str, str] = os.environ,
    supervisor_yaml: Path | None = None,
    strict: bool = False,
) -> CheckReport:
    """Offline validation for ``iii-supervisor check``: never raises for a bad configuration.

    Adds the check-only warnings (a simple command's program not found on ``PATH``).
    """
    loader = _Loader(env)
    loaded = loader.run(path, supervisor_yaml)
    errors = list(loader.errors)
    warnings = [w for w, promote in loader.warnings if not (strict and promote)]
    if strict:
        errors.extend(w for w, promote in loader.warnings if promote)
    if loaded is not None:
        warnings.extend(_command_warnings(loaded, env, loader))
    valid = not errors and loaded is not None
    return CheckReport(
        valid=valid,
        errors=tuple(_ordered(errors, loader.file_order)),
        warnings=tuple(warnings),
        config=loaded if valid else None,
    )


def load_supervisor_settings(
    path: Path | None, *, env: Mapping[str, str] = os.environ
) -> SupervisorSettings:
    """Read ``iii-supervisor.yaml`` on its own (``None`` or a missing file: empty settings)."""
    loader = _Loader(env)
    settings, _ = loader.supervisor_settings(path, required=False)
    if loader.errors:
        raise ConfigError(_ordered(loader.errors, loader.file_order))
    return settings


def _ordered(problems: list[ConfigProblem], file_order: list[str]) -> list[ConfigProblem]:
    rank = {name: index for index, name in enumerate(file_order)}
    return sorted(problems, key=lambda p: (rank.get(p.file, len(rank)), p.line or 0))


# -- the supervise: block (SUPERVISOR.md §4.2) -------------------------------------------------


class _FieldError(ValueError):
    """A bad value; ``sub`` locates it below the field (e.g. an env key)."""

    def __init__(self, message: str, sub: tuple[Any, ...] = ()) -> None:
        super().__init__(message)
        self.sub = sub

    @property
    def errors(self) -> list[_FieldError]:
        return [self]


class _FieldErrors(_FieldError):
    """Several bad values inside one field (list items, env keys), reported separately."""

    def __init__(self, errors: list[_FieldError]) -> None:
        super().__init__(str(errors[0]), errors[0].sub)
        self._errors = errors

    @property
    def errors(self) -> list[_FieldError]:
        return self._errors


def _wrap_unit(parse: Callable[[Any], Any]) -> Callable[[Any], Any]:
    def parser(value: Any) -> Any:
        try:
            return parse(value)
        except UnitError as exc:
            raise _FieldError(str(exc)) from None

    return parser


def _bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise _FieldError(f"must be true or false, got {type_name(value)}")
    return value


def _int_at_least(low: int) -> Callable[[Any], int]:
    def parser(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _FieldError(f"must be an integer, got {type_name(value)}")
        if value < low:
            raise _FieldError(f"must be at least {low}")
        return value

    return parser


def _number(low: float, high: float | None = None) -> Callable[[Any], float]:
    def parser(value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _FieldError(f"must be a number, got {type_name(value)}")
        if value < low or (high is not None and value > high):
            raise _FieldError(
                f"must be between {low} and {high}"
                if high is not None
                else f"must be at least {low}"
            )
        return float(value)

    return parser


def _choice(*choices: str) -> Callable[[Any], str]:
    def parser(value: Any) -> str:
        if value not in choices or not isinstance(value, str):
            raise _FieldError(f"must be one of {', '.join(choices)}")
        return value

    return parser


def _restart(value: Any) -> Any:
    if not isinstance(value, str) or value not in RESTART_ALIASES:
        raise _FieldError(
            "must be one of always, on-failure, never (or permanent, transient, temporary)"
        )
    return RESTART_ALIASES[value]


def _list_of(item: Callable[[Any], Any]) -> Callable[[Any], tuple[Any, ...]]:
    def parser(value: Any) -> tuple[Any, ...]:
        if not isinstance(value, list):
            raise _FieldError(f"must be a list, got {type_name(value)}")
        out = []
        errors: list[_FieldError] = []
        for index, element in enumerate(value):
            try:
                out.append(item(element))
            except _FieldError as exc:
                errors.extend(_FieldError(str(e), (index, *e.sub)) for e in exc.errors)
        if errors:
            raise _FieldErrors(errors)
        return tuple(out)

    return parser


def _exit_code(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 255:
        raise _FieldError("exit codes are integers from 0 to 255")
    return value


def _name(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise _FieldError(f"must be a non-empty string, got {type_name(value)}")
    return value


def _optional(parse: Callable[[Any], Any]) -> Callable[[Any], Any]:
    return lambda value: None if value is None else parse(value)


def _command(value: Any) -> str | list[str]:
    if isinstance(value, str):
        if not value.strip():
            raise _FieldError("must not be empty")
        return value
    if isinstance(value, list):
        if not value:
            raise _FieldError("must not be an empty list")
        if not all(isinstance(v, str) for v in value):
            raise _FieldError("must be a command string or a list of strings (an argv)")
        return list(value)
    raise _FieldError(f"must be a command string or an argv list, got {type_name(value)}")


def _env(value: Any) -> dict[str, str]:
    if not isinstance(value, dict):
        raise _FieldError(f"must be a mapping of names to strings, got {type_name(value)}")
    errors: list[_FieldError] = []
    for key, item in value.items():
        if not isinstance(key, str) or not key:
            errors.append(_FieldError("variable names must be non-empty strings", (str(key),)))
            continue
        if key in RESERVED_ENV:  # III_NAMESPACE is not reserved: operators may set it here
            message = f"RESERVED_ENV_OVERRIDE: {key} is set by the supervisor"
            errors.append(_FieldError(message, (key,)))
        if not isinstance(item, str):
            message = f'must be a string, got {type_name(item)} — quote the value: {key}: "…"'
            errors.append(_FieldError(message, (key,)))
    if errors:
        raise _FieldErrors(errors)
    return dict(value)


def _memory(value: Any) -> int | str:
    if value == "manifest":
        return "manifest"
    return _wrap_unit(parse_size)(value)


def _replicas(value: Any) -> int:
    if value != 1 or isinstance(value, bool):
        raise _FieldError("only 1 is supported for now (replicas are reserved for autoscaling)")
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
    "limits": {"memory": _optional(_memory), "nofile": _optional(_int_at_least(1))},
    "log": {
        "file": _bool,
        "max_bytes": _SIZE,
        "backups": _int_at_least(0),
        "to_supervisor_log": _bool,
    },
    "replicas": _replicas,
}
_NESTED = {"backoff": Backoff, "health": Health, "limits": Limits, "log": LogSettings}
_NOT_IN_DEFAULTS = ("command", "depends_on", "working_dir")

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


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _build_spec(partial: dict[str, Any]) -> SuperviseSpec:
    kwargs = dict(partial)
    for group, cls in _NESTED.items():
        if group in kwargs:
            kwargs[group] = cls(**kwargs[group])
    return SuperviseSpec(**kwargs)


# -- the loader --------------------------------------------------------------------------------


@attrs.define
class _Source:
    """One file being read: what is shown in messages, its parsed document."""

    shown: str
    doc: YamlDoc


@attrs.define
class _Pending:
    """A worker entry on its way to a WorkerEntry, with what dependency checks still need."""

    section: str
    index: int
    name: str
    entry: WorkerEntry
    depends_on: tuple[str, ...] = ()
    manifest_deps: tuple[str, ...] = ()
    listener: ListenerConfig | None = None


class _Loader:
    """One pass over config.yaml and the files it names; collects errors and warnings."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env
        self.errors: list[ConfigProblem] = []
        self.warnings: list[tuple[ConfigProblem, bool]] = []  # (warning, an error under --strict)
        self.file_order: list[str] = []
        self.base_dir = Path.cwd()
        self.config_shown = EMBEDDED_DEFAULT
        self.skipped: dict[str, bool] = {}  # entries not run: name → True when invalid

    # -- reporting -------------------------------------------------------------------------

    def error(self, src: _Source, at: tuple[Any, ...], shown: str, message: str) -> None:
        self.errors.append(ConfigProblem(src.shown, src.doc.line_of(at), shown, message))

    def warn(
        self, src: _Source, at: tuple[Any, ...], shown: str, message: str, *, strict: bool = False
    ) -> None:
        self.warnings.append(
            (ConfigProblem(src.shown, src.doc.line_of(at), shown, message), strict)
        )

    # -- files -----------------------------------------------------------------------------

    def read(self, path: Path | None, shown: str, text: str | None = None) -> _Source | None:
        """Read, interpolate (flavour A) and parse a config file; problems are recorded."""
        self.file_order.append(shown)
        if text is None:
            assert path is not None
            try:
                text = path.read_text("utf-8")
            except FileNotFoundError:
                self.errors.append(ConfigProblem(shown, None, "", "file not found"))
                return None
            except (OSError, UnicodeDecodeError) as exc:
                reason = exc.strerror if isinstance(exc, OSError) else "not valid UTF-8"
                self.errors.append(
                    ConfigProblem(shown, None, "", f"cannot read the file: {reason}")
                )
                return None
        text, missing = expand_text(text, self.env)
        for var in missing:
            self.errors.append(
                ConfigProblem(
                    shown,
                    var.line,
                    "",
                    f"environment variable {var.name} is not set and has no default",
                )
            )
        doc = load_yaml(text)
        for issue in doc.issues:
            self.errors.append(ConfigProblem(shown, issue.line, dotted(issue.path), issue.message))
        return _Source(shown, doc)

    def run(self, path: Path | None, supervisor_yaml: Path | None) -> LoadedConfig | None:
        source_path: Path | None
        if path is None and Path("config.yaml").exists():
            path = Path("config.yaml")
        if path is None:
            text = (resources.files("supervisor.config") / "data" / EMBEDDED_DEFAULT).read_text(
                "utf-8"
            )
            src = self.read(None, f"{EMBEDDED_DEFAULT} (embedded)", text)
            base_dir = Path.cwd()
            source_path = None
        else:
            src = self.read(path, str(path))
            base_dir = path.resolve().parent
            source_path = path.resolve()
        self.base_dir = base_dir
        self.config_shown = src.shown if src is not None else str(path)
        if supervisor_yaml is None:
            settings, defaults = self.supervisor_settings(
                base_dir / SUPERVISOR_YAML, required=False
            )
        else:
            settings, defaults = self.supervisor_settings(supervisor_yaml, required=True)
        if src is None or src.doc.syntax_error:
            return None
        engine = self.engine(src, source_path, defaults)
        if engine is None:
            return None
        engine = attrs.evolve(engine, warnings=tuple(str(w) for w, _ in self.warnings))
        return LoadedConfig(engine, settings, tuple(w for w, _ in self.warnings))

    # -- iii-supervisor.yaml ---------------------------------------------------------------

    def supervisor_settings(
        self, path: Path | None, *, required: bool
    ) -> tuple[SupervisorSettings, dict[str, Any]]:
        if path is None or (not required and not path.exists()):
            return SupervisorSettings(), {}
        src = self.read(path, self._shown(path))
        if src is None or src.doc.syntax_error:
            return SupervisorSettings(path=path), {}
        data = src.doc.data
        if data is None:
            return SupervisorSettings(path=path), {}
        if not isinstance(data, dict):
            self.error(src, (), "", f"the top level must be a mapping, got {type_name(data)}")
            return SupervisorSettings(path=path), {}
        values: dict[str, Any] = {}
        defaults: dict[str, Any] = {}
        for key, value in data.items():
            if key == "defaults":
                if value is None:
                    continue
                defaults = self.supervise(src, ("defaults",), "defaults", value, in_defaults=True)
                continue
            parse = SETTINGS_FIELDS.get(key) if isinstance(key, str) else None
            if parse is None:
                hint = did_you_mean(str(key), [*SETTINGS_FIELDS, "defaults"])
                self.error(src, (key,), dotted((key,)), "unknown key" + hint)
                continue
            try:
                values[key] = parse(value)
            except _FieldError as exc:
                for err in exc.errors:
                    self.error(src, (key, *err.sub), dotted((key, *err.sub)), str(err))
        raw_defaults = data.get("defaults") if isinstance(data.get("defaults"), dict) else {}
        return SupervisorSettings(path=path, values=values, defaults=dict(raw_defaults)), defaults

    def _shown(self, path: Path) -> str:
        """A file as messages show it: relative to the config directory when inside it."""
        try:
            rel = os.path.relpath(path.resolve(), self.base_dir)
        except ValueError:
            return str(path)
        return str(path) if rel.startswith("..") else rel

    # -- supervise: ------------------------------------------------------------------------

    def supervise(
        self,
        src: _Source,
        at: tuple[Any, ...],
        shown: str,
        raw: Any,
        *,
        in_defaults: bool = False,
    ) -> dict[str, Any]:
        """Validate one ``supervise:`` block into a partial dict of parsed values."""
        if not isinstance(raw, dict):
            self.error(src, at, shown, f"must be a mapping, got {type_name(raw)}")
            return {}
        label = "supervise." if not in_defaults else "defaults."
        return self._fields(src, at, shown, raw, SUPERVISE_FIELDS, label, in_defaults)

    def _fields(
        self,
        src: _Source,
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
                self.error(src, here, where, "unknown key" + did_you_mean(str(key), table, label))
                continue
            if in_defaults and key in _NOT_IN_DEFAULTS and table is SUPERVISE_FIELDS:
                self.error(src, here, where, "not allowed in defaults (set it per worker)")
                continue
            if isinstance(spec, dict):
                if value is None:
                    continue
                if not isinstance(value, dict):
                    self.error(src, here, where, f"must be a mapping, got {type_name(value)}")
                    continue
                out[key] = self._fields(src, here, where, value, spec, f"{label}{key}.", False)
                continue
            try:
                out[key] = spec(value)
            except _FieldError as exc:
                for err in exc.errors:
                    self.error(src, here + err.sub, where + _suffix(err.sub), str(err))
        return out

    # -- config.yaml -----------------------------------------------------------------------

    def engine(
        self, src: _Source, source_path: Path | None, defaults: dict[str, Any]
    ) -> EngineConfig | None:
        data = src.doc.data
        if data is None:
            data = {}
        if not isinstance(data, dict):
            self.error(src, (), "", f"the top level must be a mapping, got {type_name(data)}")
            return None
        for key in data:
            if key in TOP_LEVEL_KEYS:
                continue
            if key == "supervisor":
                self.error(
                    src,
                    (key,),
                    "supervisor",
                    "unknown top-level key — supervisor-wide settings go in "
                    f"{SUPERVISOR_YAML} next to config.yaml",
                )
            else:
                hint = did_you_mean(str(key), TOP_LEVEL_KEYS)
                self.error(src, (key,), dotted((key,)), "unknown top-level key" + hint)
        grace = self.grace(src, data)
        raw_entries: list[tuple[str, int, dict[str, Any]]] = []
        for section in ("workers", "modules"):
            if section not in data:
                continue
            items = data[section]
            if not isinstance(items, list):
                self.error(src, (section,), section, f"must be a list, got {type_name(items)}")
                continue
            for index, item in enumerate(items):
                at = f"{section}[{index}]"
                if not isinstance(item, dict):
                    self.error(
                        src, (section, index), at, f"must be a mapping, got {type_name(item)}"
                    )
                    continue
                name = item.get("name")
                if not isinstance(name, str) or not name.strip():
                    problem = (
                        "missing" if name is None else f"must be a string, got {type_name(name)}"
                    )
                    self.error(src, (section, index, "name"), f"{at}.name", problem)
                    continue
                raw_entries.append((section, index, item))
        self.renamed_pairs(src, raw_entries)
        pending = self.entries(src, raw_entries, defaults)
        present = {p.entry.name for p in pending}
        for name in MANDATORY:
            if name not in present:
                pending.append(self.injected(name))
        self.dependencies(src, pending)
        entries = _seed_configuration(tuple(p.entry for p in pending))
        listener_configs = tuple(p.listener for p in pending if p.listener is not None)
        return EngineConfig(
            workers=entries,
            listeners=listener_configs or (ListenerConfig(),),
            namespace_grace_ms=grace,
            source=source_path,
        )

    def grace(self, src: _Source, data: dict[str, Any]) -> int:
        grace = 5000
        key = "registration_namespace_grace_ms"
        if key in data:
            value = data[key]
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                self.error(
                    src, (key,), key, f"must be a non-negative integer, got {type_name(value)}"
                )
            else:
                grace = value
        override = self.env.get("III_NAMESPACE_GRACE_MS")
        if override is not None:
            if override.strip().isdigit():
                grace = int(override.strip())
            else:
                self.warnings.append(
                    (
                        ConfigProblem(
                            "environment",
                            None,
                            "III_NAMESPACE_GRACE_MS",
                            "not a non-negative integer; ignored",
                        ),
                        False,
                    )
                )
        return grace

    def renamed_pairs(self, src: _Source, raw: list[tuple[str, int, dict[str, Any]]]) -> None:
        names = {item["name"]: (section, index) for section, index, item in reversed(raw)}
        for old, new in RENAMED_PAIRS.items():
            if old in names and new in names:
                section, index = names[old]
                self.error(
                    src,
                    (section, index),
                    f"{section}[{index}]",
                    f"Duplicate worker configurations: '{old}' is the deprecated name for "
                    f"'{new}', but both are present. Remove '{old}' from your configuration.",
                )

    def entries(
        self,
        src: _Source,
        raw: list[tuple[str, int, dict[str, Any]]],
        defaults: dict[str, Any],
    ) -> list[_Pending]:
        seen: dict[str, int] = {}
        pending: list[_Pending] = []
        for section, index, item in raw:
            base = item["name"]
            count = seen.get(base, 0)
            seen[base] = count + 1
            name = base if count == 0 else f"{base}#{count}"
            errors_before = len(self.errors)
            result = self.entry(src, section, index, item, name, defaults)
            if result is not None:
                pending.append(result)
            else:
                self.skipped[name] = len(self.errors) > errors_before
        return pending

    def entry(
        self,
        src: _Source,
        section: str,
        index: int,
        item: dict[str, Any],
        name: str,
        defaults: dict[str, Any],
    ) -> _Pending | None:
        at, shown = (section, index), f"{section}[{index}]"
        line = src.doc.line_of(at)
        for key in item:
            if key not in ENTRY_KEYS:
                hint = did_you_mean(str(key), ENTRY_KEYS)
                self.warn(
                    src, at + (key,), f"{shown}.{dotted((key,))}", f"unknown key, ignored{hint}"
                )
        kind_name = name.split("#", 1)[0]
        builtin = _BY_NAME.get(kind_name)
        if builtin is not None or kind_name in _NOT_IMPLEMENTED_NAMES:
            if "image" in item:
                self.error(
                    src,
                    at + ("image",),
                    f"{shown}.image",
                    f"Worker '{name}' is a built-in worker and cannot have an 'image' field",
                )
                return None
            if builtin is None:
                self.warn(
                    src,
                    at,
                    f"{shown} ({name})",
                    f"{name} is not implemented by iii-supervisor yet; the entry is ignored",
                    strict=True,
                )
                return None
            return self.builtin_entry(src, at, shown, item, name, builtin, defaults, line)
        return self.user_entry(src, at, shown, item, name, defaults, line)

    def builtin_entry(
        self,
        src: _Source,
        at: tuple[Any, ...],
        shown: str,
        item: dict[str, Any],
        name: str,
        builtin: BuiltinWorker,
        defaults: dict[str, Any],
        line: int | None,
    ) -> _Pending | None:
        raw_config = item.get("config")
        block = None
        if builtin.name in BLOCK_SCHEMAS:
            block, issues = validate_block(builtin.name, raw_config)
            for sub, message in issues:
                where = f"{shown} ({name}): {dotted(sub)}" if sub else f"{shown}.config"
                self.error(src, at + ("config", *sub), where, message)
        if "worker_path" in item:
            self.warn(
                src, at + ("worker_path",), f"{shown}.worker_path", "ignored for a built-in worker"
            )
        if builtin.kind is not WorkerKind.ACTOR:
            if "supervise" in item:
                self.warn(
                    src,
                    at + ("supervise",),
                    f"{shown}.supervise",
                    f"ignored: {name} runs inside the supervisor process",
                )
            entry = WorkerEntry(name=name, kind=builtin.kind, config=raw_config, line=line)
            listener = None
            if builtin.kind is WorkerKind.LISTENER:
                listener = listener_config(block) if block is not None else ListenerConfig()
                # Running a listener without the protection its operator asked for would be
                # worse than refusing to start: RBAC and middleware arrive with a later issue.
                for key in ("rbac", "middleware_function_id"):
                    if isinstance(raw_config, dict) and raw_config.get(key) is not None:
                        self.error(
                            src,
                            at + ("config", key),
                            f"{shown} ({name}): {key}",
                            "not supported by iii-supervisor yet — remove it, or keep this "
                            "listener on upstream iii until RBAC lands",
                        )
            return _Pending(at[0], at[1], name, entry, listener=listener)
        partial = self.supervise_of(src, at, shown, item, defaults)
        working_dir = self.working_dir(src, at, shown, partial) or self.base_dir
        spec = self.spec(src, at, shown, partial, None)
        entry = WorkerEntry(
            name=name,
            kind=WorkerKind.ACTOR,
            config=raw_config,
            actor_module=builtin.actor_module,
            supervise=spec,
            manifest=builtin_manifest(builtin.name),
            working_dir=working_dir,
            line=line,
        )
        return _Pending(at[0], at[1], name, entry, tuple(partial.get("depends_on", ())))

    def user_entry(
        self,
        src: _Source,
        at: tuple[Any, ...],
        shown: str,
        item: dict[str, Any],
        name: str,
        defaults: dict[str, Any],
        line: int | None,
    ) -> _Pending | None:
        kind_name = name.split("#", 1)[0]
        problem = check_worker_name(kind_name)
        if problem:
            self.error(src, at + ("name",), f"{shown}.name", problem)
            return None
        if "image" in item:
            self.warn(
                src,
                at + ("image",),
                f"{shown}.image",
                "OCI image workers cannot run on a bare host (UNSUPPORTED_SOURCE); "
                "the entry is ignored",
                strict=True,
            )
            return None
        partial = self.supervise_of(src, at, shown, item, defaults)
        command = partial.get("command")
        manifest: Manifest | None = None
        worker_path: Path | None = None
        if "worker_path" in item:
            worker_path = self.worker_path(src, at, shown, item["worker_path"])
            if worker_path is None:
                return None
            manifest_file = worker_path / MANIFEST_FILE
            if manifest_file.is_file():
                report = parse_manifest(
                    manifest_file,
                    display=self._shown(manifest_file),
                    warn_deprecated=not self.env.get("III_NO_DEPRECATION_WARN"),
                )
                if report.errors:
                    self.file_order.append(report.errors[0].file)
                self.errors.extend(report.errors)
                self.warnings.extend((w, False) for w in report.warnings)
                manifest = report.manifest
                if manifest is None:
                    return None
            elif command is None:
                self.error(
                    src,
                    at + ("worker_path",),
                    f"{shown}.worker_path",
                    f"{item['worker_path']} has no {MANIFEST_FILE} — add one, or set "
                    "supervise.command",
                )
                return None
        elif command is None:
            suggestion = did_you_mean(kind_name, KNOWN_WORKER_NAMES)
            self.error(
                src,
                at + ("name",),
                f"{shown}.name",
                f"unknown worker '{name}'{suggestion} — not a built-in worker (known: "
                f"{', '.join(KNOWN_WORKER_NAMES)}); give it a worker_path: or a supervise.command",
            )
            return None
        working_dir = self.working_dir(src, at, shown, partial) or worker_path or self.base_dir
        spec = self.spec(src, at, shown, partial, manifest)
        kind = WorkerKind.MANIFEST if manifest is not None else WorkerKind.COMMAND
        entry = WorkerEntry(
            name=name,
            kind=kind,
            config=item.get("config"),
            supervise=spec,
            manifest=manifest,
            worker_path=worker_path,
            working_dir=working_dir,
            line=line,
        )
        deps = manifest.raw.get("dependencies") if manifest is not None else None
        manifest_deps = tuple(deps) if isinstance(deps, dict) else ()
        return _Pending(
            at[0], at[1], name, entry, tuple(partial.get("depends_on", ())), manifest_deps
        )

    def supervise_of(
        self,
        src: _Source,
        at: tuple[Any, ...],
        shown: str,
        item: dict[str, Any],
        defaults: dict[str, Any],
    ) -> dict[str, Any]:
        raw = item.get("supervise")
        own = (
            {}
            if raw is None
            else self.supervise(src, at + ("supervise",), f"{shown}.supervise", raw)
        )
        return _merge(defaults, own)

    def worker_path(self, src: _Source, at: tuple[Any, ...], shown: str, raw: Any) -> Path | None:
        where = f"{shown}.worker_path"
        if not isinstance(raw, str) or not raw:
            self.error(
                src, at + ("worker_path",), where, f"must be a directory path, got {type_name(raw)}"
            )
            return None
        path = (self.base_dir / raw).resolve()
        if not path.is_dir():
            self.error(src, at + ("worker_path",), where, f"directory {raw} does not exist")
            return None
        return path

    def working_dir(
        self, src: _Source, at: tuple[Any, ...], shown: str, partial: dict[str, Any]
    ) -> Path | None:
        raw = partial.get("working_dir")
        if raw is None:
            return None
        path = (self.base_dir / raw).resolve()
        if not path.is_dir():
            self.error(
                src,
                at + ("supervise", "working_dir"),
                f"{shown}.supervise.working_dir",
                f"directory {raw} does not exist",
            )
            return None
        return path

    def spec(
        self,
        src: _Source,
        at: tuple[Any, ...],
        shown: str,
        partial: dict[str, Any],
        manifest: Manifest | None,
    ) -> SuperviseSpec:
        partial = dict(partial)
        partial.pop("depends_on", None)  # resolved once every entry is known
        limits = dict(partial.get("limits", {}))
        if limits.get("memory") == "manifest":
            resources_ = manifest.raw.get("resources") if manifest is not None else None
            mib = resources_.get("memory") if isinstance(resources_, dict) else None
            if isinstance(mib, int) and not isinstance(mib, bool):
                limits["memory"] = mib * 1024 * 1024
            else:
                self.error(
                    src,
                    at + ("supervise", "limits", "memory"),
                    f"{shown}.supervise.limits.memory",
                    "'manifest' needs a manifest with resources.memory",
                )
                limits["memory"] = None
            partial["limits"] = limits
        return _build_spec(partial)

    def injected(self, name: str) -> _Pending:
        """A mandatory worker the file did not list, with its built-in defaults."""
        builtin = _BY_NAME[name]
        if builtin.kind is WorkerKind.ACTOR:
            entry = WorkerEntry(
                name=name,
                kind=builtin.kind,
                actor_module=builtin.actor_module,
                manifest=builtin_manifest(name),
                working_dir=self.base_dir,
            )
            return _Pending("", -1, name, entry)
        listener = ListenerConfig() if builtin.kind is WorkerKind.LISTENER else None
        return _Pending("", -1, name, WorkerEntry(name=name, kind=builtin.kind), listener=listener)

    # -- the dependency graph --------------------------------------------------------------

    def dependencies(self, src: _Source, pending: list[_Pending]) -> None:
        by_name = {p.name: p for p in pending}
        for p in pending:  # built-in aliases address the first entry of that worker
            builtin = _BY_NAME.get(p.name)
            if builtin is not None:
                for alias in (builtin.name, *builtin.aliases):
                    by_name.setdefault(alias, p)
        children = {WorkerKind.ACTOR, WorkerKind.MANIFEST, WorkerKind.COMMAND}
        edges: dict[str, list[str]] = {}
        for p in pending:
            targets: list[str] = []
            at = (p.section, p.index, "supervise", "depends_on")
            where = f"{p.section}[{p.index}].supervise.depends_on"
            for position, target in enumerate(p.depends_on):
                found = by_name.get(target)
                if found is None:
                    if target in self.skipped or target in _NOT_IMPLEMENTED_NAMES:
                        if not self.skipped.get(target):  # an invalid target is reported already
                            message = f"'{target}' is not run by iii-supervisor; ignored"
                            self.warn(src, at + (position,), where, message)
                    else:
                        self.error(src, at + (position,), where, f"unknown worker '{target}'")
                    continue
                if found is p:
                    self.error(src, at + (position,), where, f"'{target}' cannot depend on itself")
                    continue
                if found.entry.kind in children and found.name not in targets:
                    targets.append(found.name)
            for target in p.manifest_deps:
                found = by_name.get(target)
                if found is not None and found is not p and found.entry.kind in children:
                    if found.name not in targets:
                        targets.append(found.name)
            edges[p.name] = targets
            if targets != list(p.entry.supervise.depends_on):
                spec = attrs.evolve(p.entry.supervise, depends_on=tuple(targets))
                p.entry = attrs.evolve(p.entry, supervise=spec)
        for cycle in _cycles([p.name for p in pending], edges):
            first = by_name[cycle[0]]
            self.error(
                src,
                (first.section, first.index, "supervise", "depends_on"),
                f"{first.section}[{first.index}].supervise.depends_on",
                "dependency cycle: " + " -> ".join(cycle),
            )


def _suffix(sub: tuple[Any, ...]) -> str:
    return "".join(f"[{s}]" if isinstance(s, int) else f".{s}" for s in sub)


def _cycles(order: list[str], edges: dict[str, list[str]]) -> list[list[str]]:
    """Every elementary cycle reachable in declaration order, each once, as a closed path."""
    rank = {name: index for index, name in enumerate(order)}
    found: list[list[str]] = []
    seen: set[tuple[str, ...]] = set()
    done: set[str] = set()

    def visit(node: str, stack: list[str]) -> None:
        stack.append(node)
        for target in edges.get(node, ()):
            if target in stack:
                loop = stack[stack.index(target) :]
                start = min(range(len(loop)), key=lambda i: rank[loop[i]])
                loop = loop[start:] + loop[:start]
                if tuple(loop) not in seen:
                    seen.add(tuple(loop))
                    found.append([*loop, loop[0]])
            elif target not in done:
                visit(target, stack)
        stack.pop()
        done.add(node)

    for name in order:
        if name not in done:
            visit(name, [])
    return found


def _command_warnings(
    loaded: LoadedConfig, env: Mapping[str, str], loader: _Loader
) -> list[ConfigProblem]:
    """``check`` warns when a simple command's program is not found (SUPERVISOR.md §7.2)."""
    shell_chars = set("|&;<>()$`\"'*?[]#~=%\n")
    warnings: list[ConfigProblem] = []
    shown = loader.config_shown
    for entry in loaded.engine.workers:
        command = entry.supervise.command
        if command is None and entry.manifest is not None and entry.kind is not WorkerKind.ACTOR:
            command = entry.manifest.start
        if command is None:
            continue
        if isinstance(command, list):
            program = command[0]
        elif shell_chars & set(command):
            continue
        else:
            words = shlex.split(command)
            if not words:
                continue
            program = words[0]
        cwd = entry.working_dir or Path.cwd()
        if "/" in program:
            exists = (cwd / program).exists()
        else:
            exists = shutil.which(program, path=env.get("PATH", os.defpath)) is not None
        if not exists:
            warnings.append(
                ConfigProblem(
                    shown,
                    entry.line,
                    entry.name,
                    f"command {show_value(program)} not found on PATH or in {cwd} "
                    "(a warning: PATH at run time may differ)",
                )
            )
    return warnings
