"""The docs cannot rot: every citation resolves, every link lands, the references cover the code.

* ``SUPERVISOR.md §13.1``-style citations anywhere in the tree name a heading in ``docs/spec/``;
* relative links (and their ``#anchors``) in README.md and ``docs/*.md`` exist;
* ``docs/configuration.md`` lists every ``supervise:`` field with the model's default, every
  supervisor-wide setting, and every field of every built-in block;
* ``docs/cli.md`` documents every verb and every option of the parser.
"""

from __future__ import annotations

import argparse
import re
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest
import yaml

from supervisor.cli import build_parser
from supervisor.config.builtins import BUILTINS
from supervisor.config.model import SuperviseSpec
from supervisor.config.supervise import SETTINGS_FIELDS, SUPERVISE_FIELDS

REPO = Path(__file__).resolve().parents[3]
DOCS = REPO / "docs"
SPEC = DOCS / "spec"
CITATION = re.compile(
    r"\b(SUPERVISOR|WORKERS|PROTOCOL|OBSERVE)\.md (§(\d+(?:\.\d+)*)|Appendix ([A-Z]))"
)
SOURCES = ("supervisor", "actors", "transport", "storage", "manifests", "tests", "deploy")
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def tree_files() -> Iterator[Path]:
    yield REPO / "README.md"
    yield REPO / "Dockerfile"
    yield from (p for p in DOCS.glob("*.md"))
    for top in SOURCES:
        for path in (REPO / top).rglob("*"):
            if path.is_file() and path.suffix in (
                ".py",
                ".md",
                ".yaml",
                ".yml",
                ".service",
                ".conf",
            ):
                if "node_modules" not in path.parts:
                    yield path


def prose_lines(text: str) -> Iterator[tuple[int, str]]:
    """(index, line) of the lines outside fenced code blocks: a ``# comment`` in a YAML
    example is not a heading."""
    fenced = False
    for index, line in enumerate(text.splitlines()):
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced:
            yield index, line


def headings(path: Path) -> list[str]:
    return [
        line for _, line in prose_lines(path.read_text(encoding="utf-8")) if line.startswith("#")
    ]


def test_every_spec_citation_names_a_section_in_docs_spec() -> None:
    missing = []
    for path in tree_files():
        text = path.read_text(encoding="utf-8", errors="replace")
        for m in CITATION.finditer(text):
            doc = SPEC / f"{m.group(1)}.md"
            if m.group(3):
                number = re.escape(m.group(3))
                pattern = re.compile(rf"^#+ {number}[. ]")
            else:
                pattern = re.compile(rf"^#+ Appendix {m.group(4)}\b")
            if not any(pattern.match(h) for h in headings(doc)):
                missing.append(f"{path.relative_to(REPO)}: {m.group(0)}")
    assert not missing, "citations with no such section in docs/spec/:\n" + "\n".join(missing)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower-case, punctuation dropped, spaces to hyphens."""
    text = heading.lstrip("#").strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def test_links_in_readme_and_docs_resolve() -> None:
    broken = []
    for page in (REPO / "README.md", *DOCS.glob("*.md")):
        for target in LINK.findall(page.read_text(encoding="utf-8")):
            if re.match(r"^[a-z]+:", target):
                continue
            file_part, _, anchor = target.partition("#")
            dest = (page.parent / file_part).resolve() if file_part else page
            if not dest.exists():
                broken.append(f"{page.relative_to(REPO)}: {target} (no such file)")
            elif anchor and dest.suffix == ".md" and anchor not in map(slug, headings(dest)):
                broken.append(f"{page.relative_to(REPO)}: {target} (no such heading)")
    assert not broken, "\n".join(broken)


# -- configuration.md --------------------------------------------------------------------------


def table_rows(text: str) -> dict[str, list[str]]:
    """``| `key` | cell | ... |`` rows of a markdown text, by their first cell's code span."""
    rows: dict[str, list[str]] = {}
    for line in text.splitlines():
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line.strip().strip("|"))]
        m = re.fullmatch(r"`([^`]+)`", cells[0]) if line.startswith("|") else None
        if m:
            rows[m.group(1)] = cells[1:]
    return rows


def section(text: str, heading: str) -> str:
    """The text under ``heading`` up to the next heading of its level or above."""
    lines = text.splitlines()
    level = len(heading.split(" ", 1)[0])
    start = next(i for i, line in prose_lines(text) if line == heading)
    end = next(
        (i for i, line in prose_lines(text) if i > start and re.match(rf"^#{{1,{level}}} ", line)),
        len(lines),
    )
    return "\n".join(lines[start + 1 : end])


def nested_fields(table: dict[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    for key, spec in table.items():
        if isinstance(spec, dict):
            yield from nested_fields(spec, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", spec


def model_default(dotted: str) -> Any:
    value: Any = SuperviseSpec()
    for part in dotted.split("."):
        value = getattr(value, part)
    return value


CONFIGURATION = (DOCS / "configuration.md").read_text(encoding="utf-8")


def test_every_supervise_field_is_documented_with_its_default() -> None:
    rows = table_rows(section(CONFIGURATION, "## `supervise:`"))
    fields = dict(nested_fields(SUPERVISE_FIELDS))
    assert sorted(set(fields) - set(rows)) == [], "supervise: fields missing from the table"
    assert sorted(set(rows) - set(fields)) == [], "documented fields the loader does not know"
    for name, parse in fields.items():
        cell = rows[name][0]
        m = re.fullmatch(r"`([^`]*)`", cell)
        if cell == "none":
            assert model_default(name) is None, f"{name}: documented as none"
        elif m:
            documented = parse(yaml.safe_load(m.group(1)))
            assert documented == model_default(name), f"{name}: docs say {cell}"
        else:
            assert name == "working_dir", f"{name}: default {cell!r} is prose, not a value"


def test_every_supervisor_setting_is_documented() -> None:
    rows = table_rows(section(CONFIGURATION, "## Supervisor-wide settings"))
    assert sorted(set(SETTINGS_FIELDS) - set(rows)) == []
    assert sorted(set(rows) - set(SETTINGS_FIELDS)) == []


BLOCKS = {b.name: b.block for b in BUILTINS if b.block is not None}


@pytest.mark.parametrize("name", sorted(BLOCKS))
def test_every_builtin_block_field_is_documented(name: str) -> None:
    text = section(CONFIGURATION, f"### `{name}`")
    rows = table_rows(text)
    for field in attrs.fields(BLOCKS[name]):
        if (name, field.name) == ("configuration", "entries"):
            continue  # filled in by the supervisor from config.yaml, not written by users
        assert f"`{field.name}`" in text, f"{name}.{field.name} is not documented"
        cell = rows.get(field.name, [""])[0]
        m = re.match(r"`([^`]*)`", cell)
        default = field.default
        if m and isinstance(default, str | int | float | bool):
            assert yaml.safe_load(m.group(1)) == default, f"{name}.{field.name}: docs say {cell}"


def adapters() -> Iterator[tuple[str, type | None]]:
    """(adapter name, its config class) for every adapter a built-in's block accepts."""
    for block in BLOCKS.values():
        hints = typing.get_type_hints(block)
        for member in typing.get_args(hints.get("adapter")):
            if attrs.has(member):
                name = str(attrs.fields_dict(member)["name"].default)
                config = typing.get_type_hints(member).get("config")
                yield name, next((c for c in typing.get_args(config) if attrs.has(c)), None)


def test_every_storage_adapter_and_its_keys_are_documented() -> None:
    rows = table_rows(section(CONFIGURATION, "## Storage adapters"))
    found = list(adapters())
    assert {"kv", "redis", "local", "fs"} <= {name for name, _ in found}
    for name, config in found:
        assert name in rows, f"adapter {name} is not documented"
        for field in attrs.fields(config) if config is not None else ():
            assert f"`{field.name}" in rows[name][1], f"{name}.{field.name} is not documented"


# -- cli.md ------------------------------------------------------------------------------------


def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def test_cli_reference_covers_every_verb_and_option() -> None:
    text = (DOCS / "cli.md").read_text(encoding="utf-8")
    verb_headings = " ".join(h for h in headings(DOCS / "cli.md") if h.startswith("## "))
    parser = build_parser()
    missing = []
    for verb, sub in subcommands(parser).items():
        if f"`{verb}`" not in verb_headings and f" {verb}" not in verb_headings:
            missing.append(f"verb {verb}")
        for action in sub._actions:
            for option in action.option_strings:
                if option.startswith("--") and option != "--help" and option not in text:
                    missing.append(f"{verb} {option}")
    assert not missing, "undocumented in docs/cli.md: " + ", ".join(missing)
