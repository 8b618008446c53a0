"""Loading ``config.yaml`` (+ manifests, + ``iii-supervisor.yaml``) into a validated EngineConfig.

Every problem of every file is collected and reported in one pass (SUPERVISOR.md §4.3).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import attrs

from manifests.problems import ConfigProblem, did_you_mean, dotted, type_name
from supervisor.config.builtins import MANDATORY, RENAMED_PAIRS, configuration_id
from supervisor.config.checks import command_warnings
from supervisor.config.collect import EMBEDDED_DEFAULT, Collector, Source
from supervisor.config.entries import entries, injected
from supervisor.config.graph import resolve_dependencies
from supervisor.config.model import EngineConfig, ListenerConfig, WorkerEntry
from supervisor.config.results import (
    CheckReport,
    ConfigError,
    LoadedConfig,
    SupervisorSettings,
    in_file_order,
)
from supervisor.config.supervise import SETTINGS_FIELDS, FieldError, read_supervise

__all__ = ["check_config", "load", "load_config", "load_supervisor_settings"]

SUPERVISOR_YAML = "iii-supervisor.yaml"
TOP_LEVEL_KEYS = ("workers", "modules", "registration_namespace_grace_ms")


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
    c = Collector(env)
    loaded = _run(c, path, supervisor_yaml)
    errors = list(c.errors)
    if strict:
        errors.extend(w for w, promote in c.warnings if promote)
    if errors or loaded is None:
        raise ConfigError(in_file_order(errors, c.file_order))
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
    c = Collector(env)
    loaded = _run(c, path, supervisor_yaml)
    errors = list(c.errors)
    warnings = [w for w, promote in c.warnings if not (strict and promote)]
    if strict:
        errors.extend(w for w, promote in c.warnings if promote)
    if loaded is not None:
        warnings.extend(command_warnings(loaded, env, c.config_shown))
    valid = not errors and loaded is not None
    return CheckReport(
        valid=valid,
        errors=tuple(in_file_order(errors, c.file_order)),
        warnings=tuple(warnings),
        config=loaded if valid else None,
    )


def load_supervisor_settings(
    path: Path | None, *, env: Mapping[str, str] = os.environ
) -> SupervisorSettings:
    """Read ``iii-supervisor.yaml`` on its own (``None`` or a missing file: empty settings)."""
    c = Collector(env)
    settings, _ = _supervisor_settings(c, path, required=False)
    if c.errors:
        raise ConfigError(in_file_order(c.errors, c.file_order))
    return settings


# -- one load ---------------------------------------------------------------------------------


def _run(c: Collector, path: Path | None, supervisor_yaml: Path | None) -> LoadedConfig | None:
    """One load: config.yaml (or the embedded default) and iii-supervisor.yaml next to it."""
    source_path: Path | None
    if path is None and Path("config.yaml").exists():
        path = Path("config.yaml")
    if path is None:
        text = (resources.files("supervisor.config") / "data" / EMBEDDED_DEFAULT).read_text("utf-8")
        src = c.read(None, f"{EMBEDDED_DEFAULT} (embedded)", text)
        base_dir = Path.cwd()
        source_path = None
    else:
        src = c.read(path, str(path))
        base_dir = path.resolve().parent
        source_path = path.resolve()
    c.base_dir = base_dir
    c.config_shown = src.shown if src is not None else str(path)
    if supervisor_yaml is None:
        settings, defaults = _supervisor_settings(c, base_dir / SUPERVISOR_YAML, required=False)
    else:
        settings, defaults = _supervisor_settings(c, supervisor_yaml, required=True)
    if src is None or src.doc.syntax_error:
        return None
    inline = _inline_settings(c, src)
    if inline:
        settings = attrs.evolve(settings, values={**settings.values, **inline})
    engine = _engine(c, src, source_path, defaults)
    if engine is None:
        return None
    engine = attrs.evolve(engine, warnings=tuple(str(w) for w, _ in c.warnings))
    return LoadedConfig(engine, settings, tuple(w for w, _ in c.warnings))


def _inline_settings(c: Collector, src: Source) -> dict[str, Any]:
    """config.yaml's own ``supervisor:`` block: iii-supervisor.yaml's settings (no ``defaults:``),
    winning over that file. Ours: upstream rejects the key, so a file meant for both keeps its
    settings in iii-supervisor.yaml."""
    data = src.doc.data
    block = data.get("supervisor") if isinstance(data, dict) else None
    if block is None:
        return {}
    if not isinstance(block, dict):
        c.error(src, ("supervisor",), "supervisor", f"must be a mapping, got {type_name(block)}")
        return {}
    values: dict[str, Any] = {}
    for key, value in block.items():
        at = ("supervisor", key)
        parse = SETTINGS_FIELDS.get(key) if isinstance(key, str) else None
        if parse is None:
            c.error(src, at, dotted(at), "unknown key" + did_you_mean(str(key), SETTINGS_FIELDS))
            continue
        try:
            values[key] = parse(value)
        except FieldError as exc:
            for err in exc.errors:
                c.error(src, (*at, *err.sub), dotted((*at, *err.sub)), str(err))
    return values


def _supervisor_settings(
    c: Collector, path: Path | None, *, required: bool
) -> tuple[SupervisorSettings, dict[str, Any]]:
    if path is None or (not required and not path.exists()):
        return SupervisorSettings(), {}
    src = c.read(path, c.shown(path))
    if src is None or src.doc.syntax_error:
        return SupervisorSettings(path=path), {}
    data = src.doc.data
    if data is None:
        return SupervisorSettings(path=path), {}
    if not isinstance(data, dict):
        c.error(src, (), "", f"the top level must be a mapping, got {type_name(data)}")
        return SupervisorSettings(path=path), {}
    values: dict[str, Any] = {}
    defaults: dict[str, Any] = {}
    for key, value in data.items():
        if key == "defaults":
            if value is None:
                continue
            defaults = read_supervise(c, src, ("defaults",), "defaults", value, in_defaults=True)
            continue
        parse = SETTINGS_FIELDS.get(key) if isinstance(key, str) else None
        if parse is None:
            hint = did_you_mean(str(key), [*SETTINGS_FIELDS, "defaults"])
            c.error(src, (key,), dotted((key,)), "unknown key" + hint)
            continue
        try:
            values[key] = parse(value)
        except FieldError as exc:
            for err in exc.errors:
                c.error(src, (key, *err.sub), dotted((key, *err.sub)), str(err))
    raw_defaults = data.get("defaults")
    kept = dict(raw_defaults) if isinstance(raw_defaults, dict) else {}
    return SupervisorSettings(path=path, values=values, defaults=kept), defaults


def _engine(
    c: Collector, src: Source, source_path: Path | None, defaults: dict[str, Any]
) -> EngineConfig | None:
    data = src.doc.data
    if data is None:
        data = {}
    if not isinstance(data, dict):
        c.error(src, (), "", f"the top level must be a mapping, got {type_name(data)}")
        return None
    for key in data:
        if key in TOP_LEVEL_KEYS or key == "supervisor":  # supervisor: read by _inline_settings
            continue
        hint = did_you_mean(str(key), TOP_LEVEL_KEYS)
        c.error(src, (key,), dotted((key,)), "unknown top-level key" + hint)
    grace = _grace(c, src, data)
    raw_entries: list[tuple[str, int, dict[str, Any]]] = []
    for section in ("workers", "modules"):
        if section not in data:
            continue
        items = data[section]
        if not isinstance(items, list):
            c.error(src, (section,), section, f"must be a list, got {type_name(items)}")
            continue
        for index, item in enumerate(items):
            at = f"{section}[{index}]"
            if not isinstance(item, dict):
                c.error(src, (section, index), at, f"must be a mapping, got {type_name(item)}")
                continue
            name = item.get("name")
            if not isinstance(name, str) or not name.strip():
                problem = "missing" if name is None else f"must be a string, got {type_name(name)}"
                c.error(src, (section, index, "name"), f"{at}.name", problem)
                continue
            raw_entries.append((section, index, item))
    _renamed_pairs(c, src, raw_entries)
    pending = entries(c, src, raw_entries, defaults)
    present = {p.entry.name for p in pending}
    for name in MANDATORY:
        if name not in present:
            pending.append(injected(c, name))
    resolve_dependencies(c, src, pending)
    workers = _seed_configuration(tuple(p.entry for p in pending))
    listener_configs = tuple(p.listener for p in pending if p.listener is not None)
    return EngineConfig(
        workers=workers,
        listeners=listener_configs or (ListenerConfig(),),
        namespace_grace_ms=grace,
        source=source_path,
    )


def _grace(c: Collector, src: Source, data: dict[str, Any]) -> int:
    grace = 5000
    key = "registration_namespace_grace_ms"
    if key in data:
        value = data[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            c.error(src, (key,), key, f"must be a non-negative integer, got {type_name(value)}")
        else:
            grace = value
    override = c.env.get("III_NAMESPACE_GRACE_MS")
    if override is not None:
        if override.strip().isdigit():
            grace = int(override.strip())
        else:
            c.warnings.append(
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


def _renamed_pairs(c: Collector, src: Source, raw: list[tuple[str, int, dict[str, Any]]]) -> None:
    names = {item["name"]: (section, index) for section, index, item in reversed(raw)}
    for old, new in RENAMED_PAIRS.items():
        if old in names and new in names:
            section, index = names[old]
            c.error(
                src,
                (section, index),
                f"{section}[{index}]",
                f"Duplicate worker configurations: '{old}' is the deprecated name for "
                f"'{new}', but both are present. Remove '{old}' from your configuration.",
            )


def _seed_configuration(entries: tuple[WorkerEntry, ...]) -> tuple[WorkerEntry, ...]:
    """Hand the configuration actor the config.yaml block of every §1.6 worker."""
    seeds: dict[str, Any] = {}
    for entry in entries:
        cid = configuration_id(entry.name)
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
