"""``${VAR}`` / ``${VAR:default}`` expansion of configuration values (WORKERS.md §1.3, flavour B):
applied per string leaf at every read, never fatal.

A missing variable without default is left as literal text and reported as missing. When a
whole string (ignoring surrounding whitespace) is one placeholder, the substituted text is
re-read as a YAML 1.2 core scalar, so ``"${PORT:3111}"`` becomes the integer ``3111``; words,
leading-zero numbers (``007``) and YAML 1.1 booleans (``on``/``yes``) stay strings, and an empty
substitution stays ``""``.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from typing import Any, Final

import attrs

__all__ = ["Expanded", "coerce_scalar", "expand"]

PLACEHOLDER: Final = re.compile(r"\$\{([^}:]+)(?::([^}]*))?\}")
ENGINE_VERSION_DEFAULT: Final = "__III_ENGINE_VERSION__"

_BOOLS: Final = {
    "true": True,
    "True": True,
    "TRUE": True,
    "false": False,
    "False": False,
    "FALSE": False,
}
_NULLS: Final = frozenset({"null", "Null", "NULL", "~"})
_INT: Final = re.compile(r"[-+]?(0|[1-9][0-9]*)")
_HEX: Final = re.compile(r"0x[0-9a-fA-F]+")
_OCT: Final = re.compile(r"0o[0-7]+")
_FLOAT: Final = re.compile(r"[-+]?(0|[1-9][0-9]*)?(\.[0-9]*)?([eE][-+]?[0-9]+)?")
_I64: Final = (-(2**63), 2**64 - 1)


@attrs.frozen
class Expanded:
    value: Any
    missing: tuple[str, ...] = ()


def _engine_version() -> str:
    from importlib import metadata  # lazy: importlib.metadata costs ~30 ms at actor start

    try:
        return metadata.version("iii-supervisor")
    except metadata.PackageNotFoundError:
        return "0.0.0"


def coerce_scalar(text: str) -> Any:
    """``text`` as a YAML 1.2 core scalar, with the §1.3 exceptions (see module docstring)."""
    if text == "":
        return ""
    if text in _BOOLS:
        return _BOOLS[text]
    if text in _NULLS:
        return None
    number: int | float | None = None
    if _INT.fullmatch(text):
        number = int(text)
    elif _HEX.fullmatch(text):
        number = int(text[2:], 16)
    elif _OCT.fullmatch(text):
        number = int(text[2:], 8)
    elif _FLOAT.fullmatch(text) and any(ch.isdigit() for ch in text):
        number = float(text)
    if isinstance(number, int) and not _I64[0] <= number <= _I64[1]:
        return text
    if isinstance(number, float) and not math.isfinite(number):
        return text
    return text if number is None else number


def _expand_string(text: str, env: Mapping[str, str], missing: list[str]) -> Any:
    def replace(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if name in env:
            return env[name]
        if default is None:
            missing.append(name)
            return match.group(0)
        return _engine_version() if default == ENGINE_VERSION_DEFAULT else default

    stripped = text.strip()
    whole = PLACEHOLDER.fullmatch(stripped)
    before = len(missing)
    out = PLACEHOLDER.sub(replace, text)
    if whole is not None and len(missing) == before:
        return coerce_scalar(PLACEHOLDER.sub(replace, stripped))
    return out


def expand(value: Any, env: Mapping[str, str] | None = None) -> Expanded:
    """Expand every string leaf of a JSON value (object keys are left alone)."""
    environ = os.environ if env is None else env
    missing: list[str] = []

    def walk(node: Any) -> Any:
        if isinstance(node, str):
            return _expand_string(node, environ, missing) if "${" in node else node
        if isinstance(node, dict):
            return {k: walk(v) for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v) for v in node]
        return node

    result = walk(value)
    return Expanded(result, tuple(dict.fromkeys(missing)))
