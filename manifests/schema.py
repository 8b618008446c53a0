"""The ``iii.worker.yaml`` schema: upstream's validation rules (SUPERVISOR.md §1.2–1.4) on a bare host.

:func:`parse_manifest` reports every problem of a file at once; :func:`builtin_manifest` reads ours.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

import attrs

from manifests.model import Manifest
from manifests.problems import ConfigProblem, did_you_mean, dotted, type_name
from manifests.yamlsource import YamlDoc, load_yaml

MANIFEST_FILE = "iii.worker.yaml"
MAX_MANIFEST_BYTES = 64 * 1024

# Set by the supervisor alone (SUPERVISOR.md §7.1); III_URL and III_ENGINE_URL are dropped from a
# manifest's env silently, as upstream does, the others are RESERVED_ENV_OVERRIDE errors.
RESERVED_ENV = frozenset(
    {
        "III_URL",
        "III_ENGINE_URL",
        "III_WORKER_NAME",
        "III_CONFIG",
        "III_CONFIG_PATH",
        "III_ENGINE_PID",
        "III_LIFELINE_FD",
        "III_KEEPER_FD",
        "III_BUS_FD",
        "III_READY_FD",
        "III_DATA_DIR",
        "NOTIFY_SOCKET",
    }
)
DROPPED_MANIFEST_ENV = frozenset({"III_URL", "III_ENGINE_URL"})

LEGACY_KINDS = ("typescript", "javascript", "bun", "python", "rust")
PACKAGE_MANAGERS = ("npm", "yarn", "pnpm", "bun")
_NAME_CHARS = re.compile(r"[A-Za-z0-9._-]+")
_IMAGE_CHARS = re.compile(r"[A-Za-z0-9._\-/:@+]+")
_SEMVER_PART = re.compile(
    r"(\^|~|>=|<=|>|<|=)?\s*v?(\*|x|X|\d+)(\.(\*|x|X|\d+)){0,2}(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?"
)

_SCHEMA: dict[str, Any] = {
    "name": "str",
    "description": "str",
    "runtime": {
        "base_image": "str",
        "kind": "str",
        "package_manager": "str",
        "entry": "str",
        "language": "str",
    },
    "scripts": {"setup": "str", "install": "str", "start": "command"},
    "env": "env",
    "dependencies": "dependencies",
    "resources": {"cpus": "uint", "memory": "uint"},
    "iii": "str",
    "deploy": "str",
    "manifest": "str",
    "tags": "str_list",
    "config": "any",
    "language": "str",
    "entry": "str",
}
DEPRECATED_KEYS = (
    "runtime.kind",
    "runtime.package_manager",
    "runtime.entry",
    "runtime.language",
    "config",
    "language",
    "entry",
)


@attrs.frozen
class ManifestReport:
    """What :func:`parse_manifest` found: the manifest when valid, and every error and warning."""

    manifest: Manifest | None
    errors: tuple[ConfigProblem, ...] = ()
    warnings: tuple[ConfigProblem, ...] = ()
    unknown_keys: tuple[str, ...] = ()
    deprecated_keys: tuple[str, ...] = ()

    @property
    def valid(self) -> bool:
        return not self.errors

    def to_json(self) -> dict[str, Any]:
        """The dry-run validator's answer: ``{valid, name, errors, unknown_keys, ...}``."""
        return {
            "valid": self.valid,
            "name": self.manifest.name if self.manifest else None,
            "errors": [p.to_dict() for p in self.errors],
            "unknown_keys": list(self.unknown_keys),
            "deprecated_keys": list(self.deprecated_keys),
            "warnings": [p.to_dict() for p in self.warnings],
        }


class ManifestError(ValueError):
    """A manifest with errors; ``problems`` holds every one of them."""

    def __init__(self, problems: list[ConfigProblem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


def check_worker_name(name: str) -> str | None:
    """Upstream's worker-name rule: one path segment of [A-Za-z0-9._-], no '..', no leading '.'."""
    if not name:
        return "must not be empty"
    if ".." in name:
        return "the worker name contains '..' (it must be one path segment of [A-Za-z0-9._-])"
    if name.startswith("."):
        return "must not start with '.'"
    if not _NAME_CHARS.fullmatch(name):
        return "may only contain the characters A-Z a-z 0-9 . _ -"
    return None


def parse_manifest(
    path: Path, *, display: str | None = None, warn_deprecated: bool = True
) -> ManifestReport:
    """Read and validate ``path`` (an ``iii.worker.yaml``); never raises for a bad file."""
    shown = display or str(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        problem = ConfigProblem(shown, None, "", f"cannot read the manifest: {exc.strerror}")
        return ManifestReport(None, (problem,))
    if len(data) > MAX_MANIFEST_BYTES:
        message = f"{MANIFEST_FILE} is {len(data)} bytes; the limit is {MAX_MANIFEST_BYTES}"
        return ManifestReport(None, (ConfigProblem(shown, None, "", message),))
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        message = f"not valid UTF-8 (byte {exc.start})"
        return ManifestReport(None, (ConfigProblem(shown, None, "", message),))
    return parse_manifest_text(text, path=path, display=shown, warn_deprecated=warn_deprecated)


def parse_manifest_text(
    text: str, *, path: Path, display: str | None = None, warn_deprecated: bool = True
) -> ManifestReport:
    """Validate manifest text already read from ``path``."""
    return _Validator(load_yaml(text), path, display or str(path), warn_deprecated).run()


def load_manifest(path: Path, *, display: str | None = None) -> Manifest:
    """Like :func:`parse_manifest`, but raises :class:`ManifestError` unless the file is valid."""
    report = parse_manifest(path, display=display)
    if report.manifest is None or report.errors:
        raise ManifestError(list(report.errors))
    return report.manifest


class _Validator:
    """One pass over a parsed manifest, collecting problems in file order."""

    def __init__(self, doc: YamlDoc, path: Path, display: str, warn_deprecated: bool) -> None:
        self.doc = doc
        self.path = path
        self.display = display
        self.warn_deprecated = warn_deprecated
        self.errors: list[ConfigProblem] = []
        self.warnings: list[ConfigProblem] = []
        self.unknown: list[str] = []
        self.deprecated: list[str] = []

    def error(self, key_path: tuple[Any, ...], message: str) -> None:
        line = self.doc.line_of(key_path) if key_path else self.doc.lines.get(())
        self.errors.append(ConfigProblem(self.display, line, dotted(key_path), message))

    def warn(self, key_path: tuple[Any, ...], message: str) -> None:
        line = self.doc.line_of(key_path)
        self.warnings.append(ConfigProblem(self.display, line, dotted(key_path), message))

    def run(self) -> ManifestReport:
        for issue in self.doc.issues:
            self.errors.append(
                ConfigProblem(self.display, issue.line, dotted(issue.path), issue.message)
            )
        data = self.doc.data
        if self.doc.syntax_error:
            return self._report(None)
        if data is None:
            self.error((), "the manifest is empty; it needs at least name and scripts.start")
            return self._report(None)
        if not isinstance(data, dict):
            self.error((), f"the top level must be a mapping, got {type_name(data)}")
            return self._report(None)
        self._walk(data, _SCHEMA, ())
        manifest = self._build(data)
        self._sort()
        if self.deprecated and self.warn_deprecated:
            keys = ", ".join(self.deprecated)
            self.warnings.append(
                ConfigProblem(
                    self.display,
                    None,
                    "",
                    f"deprecated keys: {keys} (set III_NO_DEPRECATION_WARN=1 to silence)",
                )
            )
        return self._report(manifest)

    def _report(self, manifest: Manifest | None) -> ManifestReport:
        return ManifestReport(
            manifest if not self.errors else None,
            tuple(self.errors),
            tuple(self.warnings),
            tuple(sorted(self.unknown)),
            tuple(self.deprecated),
        )

    def _sort(self) -> None:
        self.errors.sort(key=lambda p: p.line or 0)

    def _walk(self, data: dict[Any, Any], schema: dict[str, Any], at: tuple[Any, ...]) -> None:
        for key, value in data.items():
            here = at + (key,)
            spec = schema.get(key) if isinstance(key, str) else None
            if spec is None:
                name = dotted(here)
                self.unknown.append(name)
                prefix = dotted(at) + "." if at else ""
                hint = did_you_mean(str(key), schema, prefix)
                self.error(here, f"unknown key{hint}")
                continue
            if dotted(here) in DEPRECATED_KEYS:
                self.deprecated.append(dotted(here))
            if isinstance(spec, dict):
                if value is None:
                    continue
                if not isinstance(value, dict):
                    self.error(here, f"must be a mapping, got {type_name(value)}")
                    continue
                self._walk(value, spec, here)
            else:
                _CHECKS[spec](self, here, value)

    # -- leaf checks -------------------------------------------------------------------------

    def _str(self, here: tuple[Any, ...], value: Any) -> None:
        if value is not None and not isinstance(value, str):
            self.error(here, f"must be a string, got {type_name(value)}")

    def _command(self, here: tuple[Any, ...], value: Any) -> None:
        if isinstance(value, list):
            self.error(
                here,
                "must be a command string, got a list — chain commands with && in one string",
            )
        elif not isinstance(value, str):
            self.error(here, f"must be a command string, got {type_name(value)}")
        elif not value.strip():
            self.error(here, "must not be empty")

    def _uint(self, here: tuple[Any, ...], value: Any) -> None:
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            got = "a negative integer" if isinstance(value, int) else type_name(value)
            self.error(here, f"must be a non-negative integer, got {got}")

    def _str_list(self, here: tuple[Any, ...], value: Any) -> None:
        if not isinstance(value, list):
            self.error(here, f"must be a list of strings, got {type_name(value)}")
            return
        for index, item in enumerate(value):
            if not isinstance(item, str):
                self.error(here + (index,), f"must be a string, got {type_name(item)}")

    def _any(self, here: tuple[Any, ...], value: Any) -> None:
        return

    def _env(self, here: tuple[Any, ...], value: Any) -> None:
        if value is None:
            return
        if not isinstance(value, dict):
            self.error(here, f"must be a mapping of names to strings, got {type_name(value)}")
            return
        for key, item in value.items():
            at = here + (key,)
            if not isinstance(key, str) or not key:
                self.error(at, "variable names must be non-empty strings")
                continue
            if key in RESERVED_ENV and key not in DROPPED_MANIFEST_ENV:
                self.error(at, f"RESERVED_ENV_OVERRIDE: {key} is set by the supervisor")
            if not isinstance(item, str):
                self.error(
                    at,
                    f'must be a string, got {type_name(item)} — quote the value: {key}: "…"',
                )

    def _dependencies(self, here: tuple[Any, ...], value: Any) -> None:
        if value is None:
            return
        if not isinstance(value, dict):
            self.error(
                here, f"must be a mapping of worker names to versions, got {type_name(value)}"
            )
            return
        own = self.doc.data.get("name") if isinstance(self.doc.data, dict) else None
        for key, item in value.items():
            at = here + (key,)
            problem = check_worker_name(key) if isinstance(key, str) else "must be a worker name"
            if problem:
                self.error(at, problem)
            elif key == own:
                self.error(at, "a worker cannot depend on itself")
            if not isinstance(item, str):
                self.error(at, f"must be a version range string, got {type_name(item)}")
            elif not _valid_range(item):
                self.error(at, "is not a semver range (e.g. ^1.2.0 or >=1.0, <2)")

    # -- the typed result --------------------------------------------------------------------

    def _build(self, data: dict[str, Any]) -> Manifest:
        name = data.get("name")
        if name is None:
            self.error(("name",), "missing — every iii.worker.yaml needs a name")
        elif isinstance(name, str):
            problem = check_worker_name(name)
            if problem:
                self.error(("name",), problem)
        scripts = _mapping(data.get("scripts"))
        runtime = _mapping(data.get("runtime"))
        start, install = scripts.get("start"), scripts.get("install")
        if "start" not in scripts:
            inferred = self._infer(runtime, data)
            if inferred is not None:
                start = inferred[0]
                install = install if "install" in scripts else inferred[1]
        base_image = runtime.get("base_image")
        if isinstance(base_image, str) and (
            len(base_image) > 512 or not _IMAGE_CHARS.fullmatch(base_image)
        ):
            self.warn(("runtime", "base_image"), "implausible image reference; ignored")
        env = _mapping(data.get("env"))
        return Manifest(
            path=self.path,
            name=name if isinstance(name, str) else None,
            description=data.get("description")
            if isinstance(data.get("description"), str)
            else None,
            start=start if isinstance(start, str) else None,
            install=install if isinstance(install, str) else None,
            setup=scripts.get("setup") if isinstance(scripts.get("setup"), str) else None,
            env={
                k: v
                for k, v in env.items()
                if isinstance(k, str) and isinstance(v, str) and k not in DROPPED_MANIFEST_ENV
            },
            raw=data,
        )

    def _infer(
        self, runtime: Mapping[str, Any], data: Mapping[str, Any]
    ) -> tuple[str, str | None] | None:
        """Legacy ``runtime.kind`` inference of (start, install); setup is never inferred."""
        kind = runtime.get("kind", runtime.get("language", data.get("language")))
        entry = runtime.get("entry", data.get("entry"))
        if kind is None:
            self.error(
                ("scripts", "start"),
                "missing — a manifest needs scripts.start (or a legacy runtime.kind)",
            )
            return None
        if kind not in LEGACY_KINDS:
            self.error(("runtime", "kind"), f"must be one of {', '.join(LEGACY_KINDS)}")
            return None
        if kind == "rust":
            return "cargo run --release", "cargo build --release"
        if not isinstance(entry, str) or not entry:
            self.error(("runtime", "entry"), f"missing — needed to infer scripts.start for {kind}")
            return None
        if kind == "python":
            install = "python3 -m venv .venv && .venv/bin/python -m pip install " + (
                "-r requirements.txt"
                if (self.path.parent / "requirements.txt").exists()
                else "-e ."
            )
            return f".venv/bin/python -m {entry}", install
        if kind == "bun":
            return f"bun run {entry}", "bun install"
        manager = runtime.get("package_manager")
        if manager not in PACKAGE_MANAGERS:
            problem = (
                "missing" if manager is None else f"must be one of {', '.join(PACKAGE_MANAGERS)}"
            )
            self.error(
                ("runtime", "package_manager"), f"{problem} (needed with runtime.kind {kind})"
            )
            return None
        runner = {"npm": "npx tsx", "yarn": "yarn tsx", "pnpm": "pnpm exec tsx", "bun": "bunx tsx"}
        return f"{runner[manager]} {entry}", f"{manager} install"


def _mapping(value: Any) -> dict[Any, Any]:
    """A section that must be a mapping (its type error is reported by the walk), or ``{}``."""
    return value if isinstance(value, dict) else {}


def _valid_range(text: str) -> bool:
    parts = [p.strip() for p in re.split(r",|\|\||\s+(?=[\^~<>=\d*])", text.strip()) if p.strip()]
    return bool(parts) and all(_SEMVER_PART.fullmatch(p) for p in parts)


_CHECKS: dict[str, Callable[[_Validator, tuple[Any, ...], Any], None]] = {
    "str": _Validator._str,
    "command": _Validator._command,
    "uint": _Validator._uint,
    "str_list": _Validator._str_list,
    "any": _Validator._any,
    "env": _Validator._env,
    "dependencies": _Validator._dependencies,
}

# -- the manifests of our own actors ----------------------------------------------------------


def builtin_manifest(name: str) -> Manifest:
    """The shipped manifest ``manifests/data/<name>.yaml`` of a built-in actor (``iii-http``)."""
    resource = resources.files("manifests") / "data" / f"{name}.yaml"
    if "/" in name or not resource.is_file():
        known = ", ".join(sorted(p.name.removesuffix(".yaml") for p in _shipped()))
        raise KeyError(f"no built-in manifest for {name!r} (known: {known})")
    path = Path(str(resource))
    report = parse_manifest_text(resource.read_text("utf-8"), path=path, display=path.name)
    if report.manifest is None:
        raise ManifestError(list(report.errors))
    return report.manifest


def _shipped() -> list[Traversable]:
    return [
        p for p in (resources.files("manifests") / "data").iterdir() if p.name.endswith(".yaml")
    ]
