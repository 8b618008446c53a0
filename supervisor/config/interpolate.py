"""``${NAME}`` / ``${NAME:default}`` expansion, in the two flavours of WORKERS.md §1.3.

Flavour A rewrites a whole file's text before YAML parsing; flavour B walks a value's string leaves.
"""

from __future__ import annotations

import importlib.metadata
import re
from collections.abc import Mapping
from typing import Any

import attrs

from manifests.yamlsource import resolve_scalar

# NAME: one or more characters other than "}" and ":"; the first ":" starts DEFAULT, which runs to
# the first "}". No nesting, no escapes; "$X" and an unterminated "${X" never match.
PLACEHOLDER = re.compile(r"\$\{([^}:]+)(?::([^}]*))?\}")

ENGINE_VERSION_TOKEN = "__III_ENGINE_VERSION__"


def _engine_version() -> str:
    try:
        return importlib.metadata.version("iii-supervisor")
    except importlib.metadata.PackageNotFoundError:
        return "0.1.0"


ENGINE_VERSION = _engine_version()


@attrs.frozen
class MissingVariable:
    """A ``${NAME}`` with no default whose variable is unset, and the 1-based line it is on."""

    name: str
    line: int


def _resolve(match: re.Match[str], env: Mapping[str, str], engine_version: str) -> str | None:
    name, default = match.group(1), match.group(2)
    value = env.get(name)
    if value is not None:  # set, even to "", wins over any default
        return value
    if default is None:
        return None
    return engine_version if default == ENGINE_VERSION_TOKEN else default


def expand_text(
    text: str, env: Mapping[str, str], *, engine_version: str = ENGINE_VERSION
) -> tuple[str, list[MissingVariable]]:
    """Flavour A: substitute every placeholder in ``text`` (comments included).

    Placeholders that cannot be resolved are left as written and reported with their line, so
    the caller can still parse the file and report its other problems in the same pass.
    """
    missing: list[MissingVariable] = []

    def substitute(match: re.Match[str]) -> str:
        value = _resolve(match, env, engine_version)
        if value is None:
            line = text.count("\n", 0, match.start()) + 1
            missing.append(MissingVariable(match.group(1), line))
            return match.group(0)
        return value

    return PLACEHOLDER.sub(substitute, text), missing


def expand_string(
    text: str, env: Mapping[str, str], *, engine_version: str = ENGINE_VERSION
) -> tuple[Any, list[str]]:
    """Flavour B for one string: expanded text, or a typed scalar when the string is one placeholder.

    Returns ``(value, missing_names)``; a missing variable keeps its literal ``${NAME}``.
    """
    missing: list[str] = []

    def substitute(match: re.Match[str]) -> str:
        value = _resolve(match, env, engine_version)
        if value is None:
            missing.append(match.group(1))
            return match.group(0)
        return value

    whole = PLACEHOLDER.fullmatch(text.strip())
    expanded = PLACEHOLDER.sub(substitute, text)
    if whole is not None and not missing:
        value = _resolve(whole, env, engine_version)
        assert value is not None
        typed = resolve_scalar(value.strip())
        return (value if isinstance(typed, str) else typed), missing
    return expanded, missing


def expand_value(
    value: Any, env: Mapping[str, str], *, engine_version: str = ENGINE_VERSION
) -> tuple[Any, list[str]]:
    """Flavour B: expand every string leaf of a JSON-like value; object keys are left alone.

    Returns ``(expanded, missing_names)``, names in order of first appearance, each once.
    """
    missing: list[str] = []

    def walk(node: Any) -> Any:
        if isinstance(node, str):
            result, names = expand_string(node, env, engine_version=engine_version)
            missing.extend(n for n in names if n not in missing)
            return result
        if isinstance(node, dict):
            return {key: walk(item) for key, item in node.items()}
        if isinstance(node, list | tuple):
            return [walk(item) for item in node]
        return node

    return walk(value), missing
