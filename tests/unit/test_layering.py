"""The layout of DESIGN.md, enforced: which room may import which, and no import cycles.

The checker reads every ``import`` statement (module level, inside functions and under
``TYPE_CHECKING`` alike: a cycle hidden in a function is still a cycle) of the application
packages and reports each arrow that goes against the tables, and every cycle between
modules. It runs on the real tree and on a synthetic one, which shows it can fail.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable
from pathlib import Path

import attrs

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("transport", "manifests", "storage", "actors", "supervisor")

# Top-level packages: who may import whom (DESIGN.md, "The layout").
PACKAGE_RULES: dict[str, frozenset[str]] = {
    "transport": frozenset(),
    "manifests": frozenset({"transport"}),
    "storage": frozenset({"transport"}),
    "actors": frozenset({"transport", "storage", "manifests"}),
    "supervisor": frozenset({"transport", "manifests"}),
}

# Rooms inside supervisor/ (DESIGN.md, "Inside supervisor/"). ``top`` is cli.py, app.py
# and the other modules directly in supervisor/: the composition root.
ROOM_RULES: dict[str, frozenset[str]] = {
    "config": frozenset(),
    "engine": frozenset({"config"}),
    "supervision": frozenset({"config"}),
    "status": frozenset({"supervision", "config"}),
    "top": frozenset({"config", "engine", "supervision", "status", "top"}),
}


@attrs.frozen
class Module:
    name: str  # dotted
    path: Path
    is_package: bool


def discover(root: Path, packages: Iterable[str]) -> dict[str, Module]:
    found: dict[str, Module] = {}
    for pkg in packages:
        base = root / pkg
        if not base.is_dir():
            continue
        for path in sorted(base.rglob("*.py")):
            rel = path.relative_to(root).with_suffix("")
            parts = list(rel.parts)
            is_package = parts[-1] == "__init__"
            if is_package:
                parts.pop()
            found[".".join(parts)] = Module(".".join(parts), path, is_package)
    return found


def imports_of(mod: Module, known: dict[str, Module]) -> set[str]:
    """The modules of ours that ``mod`` imports, resolved to the deepest known module."""
    tree = ast.parse(mod.path.read_text("utf-8"), filename=str(mod.path))
    package = mod.name if mod.is_package else mod.name.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(tree):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, node.module] if node.module else anchor)
            else:
                base = node.module or ""
            targets = [f"{base}.{alias.name}" for alias in node.names]
            targets.append(base)
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != mod.name:
                out.add(target)
    # ``from pkg import submodule`` also names pkg itself; keep only the deepest arrow.
    return {t for t in out if not any(o.startswith(t + ".") for o in out)}


def room_of(name: str) -> str | None:
    parts = name.split(".")
    if parts[0] != "supervisor":
        return None
    if len(parts) == 1:
        return "top"
    return parts[1] if parts[1] in ROOM_RULES and parts[1] != "top" else "top"


def arrow_problems(graph: dict[str, set[str]]) -> list[str]:
    problems: list[str] = []
    for src, targets in sorted(graph.items()):
        rooms = {room_of(d) for d in targets}
        if {"engine", "supervision"} <= rooms and src != "supervisor.app":
            problems.append(f"{src} imports engine and supervision: only supervisor.app may")
        src_pkg = src.split(".")[0]
        for dst in sorted(targets):
            dst_pkg = dst.split(".")[0]
            if src_pkg != dst_pkg:
                if dst_pkg not in PACKAGE_RULES[src_pkg]:
                    problems.append(f"{src} imports {dst}: {src_pkg}/ may not import {dst_pkg}/")
                continue
            src_room, dst_room = room_of(src), room_of(dst)
            if src_room is None or dst_room is None or src_room == dst_room:
                continue
            if dst_room not in ROOM_RULES[src_room]:
                problems.append(
                    f"{src} imports {dst}: supervisor/{src_room}/ may not import "
                    f"supervisor/{dst_room}/"
                )
    return problems


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0

    def visit(v: str) -> None:
        nonlocal counter
        index[v] = low[v] = counter
        counter += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp: list[str] = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(found)


def check(root: Path, packages: Iterable[str] = PACKAGES) -> list[str]:
    known = discover(root, packages)
    graph = {name: imports_of(mod, known) for name, mod in known.items()}
    problems = arrow_problems(graph)
    problems += ["import cycle: " + " <-> ".join(c) for c in cycles(graph)]
    # Sibling packages too (actors.state <-> actors.configuration), each collapsed to one node.
    collapsed: dict[str, set[str]] = {}
    for src, targets in graph.items():
        node = _package_node(src)
        collapsed.setdefault(node, set()).update(
            _package_node(t) for t in targets if _package_node(t) != node
        )
    problems += [
        "package cycle: " + " <-> ".join(c)
        for c in cycles(collapsed)
        if any(known[n].is_package for n in c if n in known)
    ]
    return problems


def _package_node(name: str) -> str:
    return ".".join(name.split(".")[:2])


def test_the_tree_follows_design_md_layout() -> None:
    problems = check(ROOT)
    assert problems == [], "\n".join(problems)


def test_the_rooms_exist_with_a_docstring_that_says_what_they_are_for() -> None:
    for room in ("config", "engine", "supervision", "status"):
        init = ROOT / "supervisor" / room / "__init__.py"
        assert init.is_file(), f"supervisor/{room}/ is not a package"
        doc = ast.get_docstring(ast.parse(init.read_text("utf-8")))
        assert doc and len(doc) > 40, f"supervisor/{room}/__init__.py says nothing of its room"


def _write(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def test_checker_reports_arrows_against_the_tables_and_cycles(tmp_path: Path) -> None:
    _write(
        tmp_path,
        {
            "transport/__init__.py": "",
            "transport/codec.py": "import storage.kv\n",  # transport imports nothing of ours
            "storage/__init__.py": "",
            "storage/kv.py": "from storage import redis_kv\n",
            "storage/redis_kv.py": "def f():\n    from storage.kv import X\n",  # cycle
            "actors/__init__.py": "",
            "actors/http.py": "from supervisor.engine import bus\n",  # actors never import supervisor
            "supervisor/__init__.py": "",
            "supervisor/app.py": "from supervisor.engine import bus\nimport supervisor.supervision\n",
            "supervisor/cli.py": "from supervisor.engine import bus\nimport supervisor.supervision\n",
            "supervisor/engine/__init__.py": "",
            "supervisor/engine/bus.py": (
                "from typing import TYPE_CHECKING\n"
                "if TYPE_CHECKING:\n    from supervisor.supervision.children import C\n"
            ),
            "supervisor/supervision/__init__.py": "",
            "supervisor/supervision/children.py": "from ..config import model\n",
            "supervisor/config/__init__.py": "",
            "supervisor/config/model.py": "from supervisor.status import client\n",
            "supervisor/status/__init__.py": "",
            "supervisor/status/client.py": "from supervisor.supervision import children\n",
            "actors/state/__init__.py": "from actors.configuration.adopt import A\n",
            "actors/configuration/__init__.py": "",
            "actors/configuration/adopt.py": "",
            "actors/configuration/service.py": "from actors.state.fanout import F\n",
            "actors/state/fanout.py": "",
        },
    )
    problems = check(tmp_path)
    assert problems == [
        "actors.http imports supervisor.engine.bus: actors/ may not import supervisor/",
        "supervisor.cli imports engine and supervision: only supervisor.app may",
        "supervisor.config.model imports supervisor.status.client: supervisor/config/ may not "
        "import supervisor/status/",
        "supervisor.engine.bus imports supervisor.supervision.children: supervisor/engine/ may "
        "not import supervisor/supervision/",
        "transport.codec imports storage.kv: transport/ may not import storage/",
        "import cycle: storage.kv <-> storage.redis_kv",
        "import cycle: supervisor.config.model <-> supervisor.status.client <-> "
        "supervisor.supervision.children",
        "package cycle: actors.configuration <-> actors.state",
        "package cycle: supervisor.config <-> supervisor.status <-> supervisor.supervision",
    ]


def test_checker_accepts_a_tree_that_follows_the_tables(tmp_path: Path) -> None:
    _write(
        tmp_path,
        {
            "transport/__init__.py": "",
            "transport/codec.py": "import orjson\n",
            "manifests/__init__.py": "",
            "manifests/blocks.py": "from transport import codec\n",
            "actors/__init__.py": "",
            "actors/state.py": "from manifests.blocks import X\nfrom transport.codec import y\n",
            "supervisor/__init__.py": "",
            "supervisor/cli.py": "from supervisor import app\n",
            "supervisor/app.py": "from supervisor.engine import bus\nfrom supervisor.status import s\n",
            "supervisor/engine/__init__.py": "from supervisor.engine.bus import Bus\n",
            "supervisor/engine/bus.py": "from supervisor.config.model import M\n",
            "supervisor/status/__init__.py": "",
            "supervisor/status/s.py": "from supervisor.supervision import c\n",
            "supervisor/supervision/__init__.py": "",
            "supervisor/supervision/c.py": "from supervisor.config import model\n",
            "supervisor/config/__init__.py": "",
            "supervisor/config/model.py": "from manifests import blocks\n",
        },
    )
    assert check(tmp_path) == []
