"""One pass over the configuration files: reading (with interpolation) and collecting every problem.

The loader's parts report through one :class:`Collector`, so a load lists all problems at once.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs

from manifests.problems import ConfigProblem, dotted
from manifests.yamlsource import YamlDoc, load_yaml
from supervisor.config.interpolate import expand_text

__all__ = ["EMBEDDED_DEFAULT", "Collector", "Source"]

EMBEDDED_DEFAULT = "default-config.yaml"


@attrs.define
class Source:
    """One file being read: what is shown in messages, its parsed document."""

    shown: str
    doc: YamlDoc


class Collector:
    """The problems of one load, and where it stands (the config directory, entries skipped)."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env
        self.errors: list[ConfigProblem] = []
        self.warnings: list[tuple[ConfigProblem, bool]] = []  # (warning, an error under --strict)
        self.file_order: list[str] = []
        self.base_dir = Path.cwd()
        self.config_shown = EMBEDDED_DEFAULT
        self.skipped: dict[str, bool] = {}  # entries not run: name → True when invalid

    # -- reporting -------------------------------------------------------------------------

    def error(self, src: Source, at: tuple[Any, ...], shown: str, message: str) -> None:
        self.errors.append(ConfigProblem(src.shown, src.doc.line_of(at), shown, message))

    def warn(
        self, src: Source, at: tuple[Any, ...], shown: str, message: str, *, strict: bool = False
    ) -> None:
        self.warnings.append(
            (ConfigProblem(src.shown, src.doc.line_of(at), shown, message), strict)
        )

    # -- files -----------------------------------------------------------------------------

    def read(self, path: Path | None, shown: str, text: str | None = None) -> Source | None:
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
        return Source(shown, doc)

    def shown(self, path: Path) -> str:
        """A file as messages show it: relative to the config directory when inside it."""
        try:
            rel = os.path.relpath(path.resolve(), self.base_dir)
        except ValueError:
            return str(path)
        return str(path) if rel.startswith("..") else rel
