"""The ``workers:`` entries of config.yaml turned into WorkerEntry values: built-ins by their
registry row, user workers by their manifest or ``supervise.command``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import attrs

from manifests.blocks.worker_manager import ListenerBlock
from manifests.model import Manifest
from manifests.problems import did_you_mean, dotted, type_name
from manifests.schema import MANIFEST_FILE, check_worker_name, parse_manifest
from supervisor.config.blocks import validate_block
from supervisor.config.builtins import (
    KNOWN_WORKER_NAMES,
    Builtin,
    builtin_worker,
    is_not_implemented,
)
from supervisor.config.collect import Collector, Source
from supervisor.config.model import ListenerConfig, SuperviseSpec, WorkerEntry, WorkerKind
from supervisor.config.supervise import build_spec, merge, read_supervise

__all__ = ["ENTRY_KEYS", "Pending", "entries", "injected"]

ENTRY_KEYS = ("name", "config", "image", "worker_path", "supervise")


@attrs.define
class Pending:
    """A worker entry on its way to a WorkerEntry, with what dependency checks still need."""

    section: str
    index: int
    name: str
    entry: WorkerEntry
    depends_on: tuple[str, ...] = ()
    manifest_deps: tuple[str, ...] = ()
    listener: ListenerConfig | None = None


def entries(
    c: Collector,
    src: Source,
    raw: list[tuple[str, int, dict[str, Any]]],
    defaults: dict[str, Any],
) -> list[Pending]:
    """Every entry that will run, in file order.

    A built-in named twice runs twice, as upstream allows (several listeners, say): the second
    is ``name#1``, except a ``single`` built-in (``iii-http-functions``), which may be listed
    once. A user worker's name must be unique, since ``status``, ``logs`` and ``restart``
    address workers by it; a second instance says so explicitly (``api#2``).
    """
    seen: dict[str, int] = {}
    first_at: dict[str, str] = {}
    pending: list[Pending] = []
    for section, index, item in raw:
        base = item["name"]
        count = seen.get(base, 0)
        seen[base] = count + 1
        if count and builtin_worker(base) is None:
            c.error(
                src,
                (section, index),
                f"{section}[{index}].name",
                f"worker name {base!r} is already used by {first_at[base]}: names must be "
                f"unique (status, logs and restart address workers by name). Rename one, or "
                f"write '{base}#2' to run a second instance",
            )
            continue
        builtin = builtin_worker(base)
        if builtin is not None and builtin.single:
            kind = builtin.name  # iii-http-functions and iii-http-functions#2 are one kind
            if kind in first_at:
                c.error(
                    src,
                    (section, index),
                    f"{section}[{index}].name",
                    f"{kind} is already configured by {first_at[kind]}: it may be listed "
                    f"once (one actor owns its functions, so a second entry's settings would "
                    f"never apply). Merge the two entries' security settings into one",
                )
                continue
            first_at[kind] = _where(src, section, index)
        first_at.setdefault(base, f"{section}[{index}]")
        name = base if count == 0 else f"{base}#{count}"
        errors_before = len(c.errors)
        result = _entry(c, src, section, index, item, name, defaults)
        if result is not None:
            pending.append(result)
        else:
            c.skipped[name] = len(c.errors) > errors_before
    return pending


def _where(src: Source, section: str, index: int) -> str:
    line = src.doc.line_of((section, index))
    return f"{section}[{index}]" + (f" (line {line})" if line is not None else "")


def _entry(
    c: Collector,
    src: Source,
    section: str,
    index: int,
    item: dict[str, Any],
    name: str,
    defaults: dict[str, Any],
) -> Pending | None:
    at, shown = (section, index), f"{section}[{index}]"
    line = src.doc.line_of(at)
    for key in item:
        if key not in ENTRY_KEYS:
            hint = did_you_mean(str(key), ENTRY_KEYS)
            c.warn(src, at + (key,), f"{shown}.{dotted((key,))}", f"unknown key, ignored{hint}")
    kind_name = name.split("#", 1)[0]
    builtin = builtin_worker(kind_name)
    if builtin is not None or is_not_implemented(kind_name):
        if "image" in item:
            c.error(
                src,
                at + ("image",),
                f"{shown}.image",
                f"Worker '{name}' is a built-in worker and cannot have an 'image' field",
            )
            return None
        if builtin is None:
            c.warn(
                src,
                at,
                f"{shown} ({name})",
                f"{name} is not implemented by iii-supervisor yet; the entry is ignored",
                strict=True,
            )
            return None
        return _builtin_entry(c, src, at, shown, item, name, builtin, defaults, line)
    return _user_entry(c, src, at, shown, item, name, defaults, line)


def _builtin_entry(
    c: Collector,
    src: Source,
    at: tuple[Any, ...],
    shown: str,
    item: dict[str, Any],
    name: str,
    builtin: Builtin,
    defaults: dict[str, Any],
    line: int | None,
) -> Pending | None:
    raw_config = item.get("config")
    block, issues = validate_block(builtin.name, raw_config)
    for sub, message in issues:
        where = f"{shown} ({name}): {dotted(sub)}" if sub else f"{shown}.config"
        c.error(src, at + ("config", *sub), where, message)
    if "worker_path" in item:
        c.warn(src, at + ("worker_path",), f"{shown}.worker_path", "ignored for a built-in worker")
    if builtin.kind is not WorkerKind.ACTOR:
        if "supervise" in item:
            c.warn(
                src,
                at + ("supervise",),
                f"{shown}.supervise",
                f"ignored: {name} runs inside the supervisor process",
            )
        entry = WorkerEntry(name=name, kind=builtin.kind, config=raw_config, line=line)
        listener = None
        if builtin.kind is WorkerKind.LISTENER:
            valid = isinstance(block, ListenerBlock)
            listener = block if valid else ListenerConfig()
        return Pending(at[0], at[1], name, entry, listener=listener)
    partial = _supervise_of(c, src, at, shown, item, defaults)
    working_dir = _working_dir(c, src, at, shown, partial) or c.base_dir
    spec = _spec(c, src, at, shown, partial, None)
    entry = WorkerEntry(
        name=name,
        kind=WorkerKind.ACTOR,
        config=raw_config,
        actor_module=builtin.actor,
        supervise=spec,
        manifest=builtin.load_manifest(),
        working_dir=working_dir,
        line=line,
    )
    return Pending(at[0], at[1], name, entry, tuple(partial.get("depends_on", ())))


def _user_entry(
    c: Collector,
    src: Source,
    at: tuple[Any, ...],
    shown: str,
    item: dict[str, Any],
    name: str,
    defaults: dict[str, Any],
    line: int | None,
) -> Pending | None:
    kind_name = name.split("#", 1)[0]
    problem = check_worker_name(kind_name)
    if problem:
        c.error(src, at + ("name",), f"{shown}.name", problem)
        return None
    if "image" in item:
        c.warn(
            src,
            at + ("image",),
            f"{shown}.image",
            "OCI image workers cannot run on a bare host (UNSUPPORTED_SOURCE); "
            "the entry is ignored",
            strict=True,
        )
        return None
    partial = _supervise_of(c, src, at, shown, item, defaults)
    command = partial.get("command")
    manifest: Manifest | None = None
    worker_path: Path | None = None
    if "worker_path" in item:
        worker_path = _worker_path(c, src, at, shown, item["worker_path"])
        if worker_path is None:
            return None
        manifest_file = worker_path / MANIFEST_FILE
        if manifest_file.is_file():
            report = parse_manifest(
                manifest_file,
                display=c.shown(manifest_file),
                warn_deprecated=not c.env.get("III_NO_DEPRECATION_WARN"),
            )
            if report.errors:
                c.file_order.append(report.errors[0].file)
            c.errors.extend(report.errors)
            c.warnings.extend((w, False) for w in report.warnings)
            manifest = report.manifest
            if manifest is None:
                return None
        elif command is None:
            c.error(
                src,
                at + ("worker_path",),
                f"{shown}.worker_path",
                f"{item['worker_path']} has no {MANIFEST_FILE} — add one, or set supervise.command",
            )
            return None
    elif command is None:
        suggestion = did_you_mean(kind_name, KNOWN_WORKER_NAMES)
        c.error(
            src,
            at + ("name",),
            f"{shown}.name",
            f"unknown worker '{name}'{suggestion} — not a built-in worker (known: "
            f"{', '.join(KNOWN_WORKER_NAMES)}); give it a worker_path: or a supervise.command",
        )
        return None
    working_dir = _working_dir(c, src, at, shown, partial) or worker_path or c.base_dir
    spec = _spec(c, src, at, shown, partial, manifest)
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
    return Pending(at[0], at[1], name, entry, tuple(partial.get("depends_on", ())), manifest_deps)


def _supervise_of(
    c: Collector,
    src: Source,
    at: tuple[Any, ...],
    shown: str,
    item: dict[str, Any],
    defaults: dict[str, Any],
) -> dict[str, Any]:
    raw = item.get("supervise")
    own = (
        {}
        if raw is None
        else read_supervise(c, src, at + ("supervise",), f"{shown}.supervise", raw)
    )
    return merge(defaults, own)


def _worker_path(
    c: Collector, src: Source, at: tuple[Any, ...], shown: str, raw: Any
) -> Path | None:
    where = f"{shown}.worker_path"
    if not isinstance(raw, str) or not raw:
        c.error(
            src, at + ("worker_path",), where, f"must be a directory path, got {type_name(raw)}"
        )
        return None
    path = (c.base_dir / raw).resolve()
    if not path.is_dir():
        c.error(src, at + ("worker_path",), where, f"directory {raw} does not exist")
        return None
    return path


def _working_dir(
    c: Collector, src: Source, at: tuple[Any, ...], shown: str, partial: dict[str, Any]
) -> Path | None:
    raw = partial.get("working_dir")
    if raw is None:
        return None
    path = (c.base_dir / raw).resolve()
    if not path.is_dir():
        c.error(
            src,
            at + ("supervise", "working_dir"),
            f"{shown}.supervise.working_dir",
            f"directory {raw} does not exist",
        )
        return None
    return path


def _spec(
    c: Collector,
    src: Source,
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
            c.error(
                src,
                at + ("supervise", "limits", "memory"),
                f"{shown}.supervise.limits.memory",
                "'manifest' needs a manifest with resources.memory",
            )
            limits["memory"] = None
        partial["limits"] = limits
    return build_spec(partial)


def injected(c: Collector, name: str) -> Pending:
    """A mandatory worker the file did not list, with its built-in defaults."""
    builtin = builtin_worker(name)
    assert builtin is not None, name
    if builtin.kind is WorkerKind.ACTOR:
        entry = WorkerEntry(
            name=name,
            kind=builtin.kind,
            actor_module=builtin.actor,
            manifest=builtin.load_manifest(),
            working_dir=c.base_dir,
        )
        return Pending("", -1, name, entry)
    listener = ListenerConfig() if builtin.kind is WorkerKind.LISTENER else None
    return Pending("", -1, name, WorkerEntry(name=name, kind=builtin.kind), listener=listener)
