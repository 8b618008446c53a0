"""YAML loading that remembers where every value came from and refuses duplicate keys.

Plain scalars resolve by the YAML 1.2 core schema (as upstream's serde_yaml does), not PyYAML's 1.1.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any

import attrs
import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from manifests.problems import PathPart, clean_key

_NULL = re.compile(r"~|null|Null|NULL")
_BOOL = {"true": True, "True": True, "TRUE": True, "false": False, "False": False, "FALSE": False}
_INT = re.compile(r"[-+]?[0-9]+")
_LEADING_ZERO = re.compile(r"[-+]?0[0-9]")
_OCT = re.compile(r"0o[0-7]+")
_HEX = re.compile(r"0x[0-9a-fA-F]+")
_FLOAT = re.compile(r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?")
_INF = re.compile(r"([-+]?)\.(inf|Inf|INF)")
_NAN = re.compile(r"\.(nan|NaN|NAN)")


def resolve_scalar(text: str) -> Any:
    """Type a plain scalar by the YAML 1.2 core schema; leading-zero numbers such as 007 stay text.

    The empty string stays the empty string (flavour B coercion needs exactly that).
    """
    if text == "":
        return ""
    if _NULL.fullmatch(text):
        return None
    if text in _BOOL:
        return _BOOL[text]
    if _LEADING_ZERO.match(text):
        return text
    if _INT.fullmatch(text):
        return int(text)
    if _OCT.fullmatch(text):
        return int(text[2:], 8)
    if _HEX.fullmatch(text):
        return int(text[2:], 16)
    if _FLOAT.fullmatch(text):
        return float(text)
    if m := _INF.fullmatch(text):
        return -math.inf if m.group(1) == "-" else math.inf
    if _NAN.fullmatch(text):
        return math.nan
    return text


class _CoreLoader(yaml.SafeLoader):
    """A SafeLoader whose implicit typing is YAML 1.2 core; values are built by :func:`load_yaml`."""


_CoreLoader.yaml_implicit_resolvers = {}
_CoreLoader.add_implicit_resolver("tag:yaml.org,2002:merge", re.compile(r"^<<$"), ["<"])
_CoreLoader.add_implicit_resolver(
    "tag:yaml.org,2002:core", re.compile(r"^.*$", re.DOTALL), list("~nNtTfF-+0123456789.")
)


def _construct_core(loader: yaml.SafeLoader, node: ScalarNode) -> Any:
    return resolve_scalar(loader.construct_scalar(node))


def _construct_null(loader: yaml.SafeLoader, node: ScalarNode) -> Any:
    return None


_CoreLoader.add_constructor("tag:yaml.org,2002:core", _construct_core)
_CoreLoader.add_constructor("tag:yaml.org,2002:null", _construct_null)
_CoreLoader.add_implicit_resolver("tag:yaml.org,2002:null", re.compile(r"^$"), [""])


@attrs.define
class YamlIssue:
    """A problem found while reading: 1-based line (or None), the path it concerns, the text."""

    line: int | None
    path: tuple[PathPart, ...]
    message: str


@attrs.define
class YamlDoc:
    """A parsed document: plain Python data plus the line of every key and list item."""

    data: Any
    lines: dict[tuple[PathPart, ...], int] = attrs.field(factory=dict)
    issues: list[YamlIssue] = attrs.field(factory=list)
    syntax_error: bool = False

    def line_of(self, path: Sequence[PathPart]) -> int | None:
        """The line of ``path``, or of its nearest ancestor that has one."""
        path = tuple(path)
        while True:
            if path in self.lines:
                return self.lines[path]
            if not path:
                return None
            path = path[:-1]


def load_yaml(text: str) -> YamlDoc:
    """Parse one YAML document, collecting duplicate keys and syntax errors instead of raising."""
    loader = _CoreLoader(text)
    doc = YamlDoc(data=None)
    try:
        try:
            root = loader.get_single_node()
        except yaml.MarkedYAMLError as exc:
            doc.syntax_error = True
            doc.issues.append(_syntax_issue(exc))
            return doc
        if root is None:
            return doc
        doc.lines[()] = root.start_mark.line + 1
        doc.data = _Builder(loader, doc).build(root, ())
        return doc
    finally:
        loader.dispose()


def _syntax_issue(exc: yaml.MarkedYAMLError) -> YamlIssue:
    mark = exc.problem_mark or exc.context_mark
    problem = exc.problem or "invalid YAML"
    if mark is None:
        return YamlIssue(None, (), f"YAML syntax error: {problem}")
    where = f"line {mark.line + 1}, column {mark.column + 1}"
    context = ""
    if exc.context and exc.context_mark is not None and exc.context_mark is not mark:
        context = f" ({exc.context} at line {exc.context_mark.line + 1})"
    return YamlIssue(mark.line + 1, (), f"YAML syntax error at {where}: {problem}{context}")


class _Builder:
    """Turns composed nodes into dicts, lists and scalars, recording lines and duplicates."""

    def __init__(self, loader: yaml.SafeLoader, doc: YamlDoc) -> None:
        self._loader = loader
        self._doc = doc
        self._active: set[int] = set()

    def build(self, node: Node, path: tuple[PathPart, ...]) -> Any:
        if id(node) in self._active:
            self._issue(node, path, "recursive YAML alias")
            return None
        self._active.add(id(node))
        try:
            if isinstance(node, MappingNode):
                return self._mapping(node, path)
            if isinstance(node, SequenceNode):
                items = []
                for index, item in enumerate(node.value):
                    self._doc.lines.setdefault(path + (index,), item.start_mark.line + 1)
                    items.append(self.build(item, path + (index,)))
                return items
            return self._scalar(node, path)
        finally:
            self._active.discard(id(node))

    def _scalar(self, node: Node, path: tuple[PathPart, ...]) -> Any:
        try:
            return self._loader.construct_object(node, deep=True)
        except yaml.YAMLError as exc:
            problem = getattr(exc, "problem", None) or str(exc)
            self._issue(node, path, f"cannot read this value: {problem}")
            return None

    def _mapping(self, node: MappingNode, path: tuple[PathPart, ...]) -> dict[Any, Any]:
        result: dict[Any, Any] = {}
        first_line: dict[Any, int] = {}
        merges: list[Node] = []
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                merges.append(value_node)
                continue
            if not isinstance(key_node, ScalarNode):
                self._issue(key_node, path, "mapping keys must be plain scalars")
                continue
            key = self._scalar(key_node, path)
            if isinstance(key, float) and math.isnan(key):
                key = str(key_node.value)
            line = key_node.start_mark.line + 1
            if key in first_line:  # an error, not last-one-wins (SUPERVISOR.md §1.3)
                message = f"duplicate key '{clean_key(key)}' (lines {first_line[key]} and {line})"
                self._doc.issues.append(YamlIssue(line, path + (key,), message))
                continue
            first_line[key] = line
            self._doc.lines.setdefault(path + (key,), line)
            result[key] = self.build(value_node, path + (key,))
        for merge in merges:
            sources = merge.value if isinstance(merge, SequenceNode) else [merge]
            for source in sources:
                if not isinstance(source, MappingNode):
                    self._issue(source, path, "a merge key (<<) needs a mapping")
                    continue
                merged = self.build(source, path)
                for key, value in merged.items():
                    result.setdefault(key, value)
        return result

    def _issue(self, node: Node, path: tuple[PathPart, ...], message: str) -> None:
        self._doc.issues.append(YamlIssue(node.start_mark.line + 1, path, message))
