"""The supervision and status rooms' public names: each resolves to the object its module
defines, the type checker sees the same list, and the CLI's client-side imports stay light."""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
ROOMS = ("supervisor.supervision", "supervisor.status")


@pytest.mark.parametrize("room", ROOMS)
def test_every_public_name_is_its_modules_object(room: str) -> None:
    package = importlib.import_module(room)
    exports: dict[str, str] = package._EXPORTS
    assert package.__all__ == sorted(exports)
    for name, module in exports.items():
        assert getattr(package, name) is getattr(importlib.import_module(f"{room}.{module}"), name)
    with pytest.raises(AttributeError):
        package.NoSuchName  # noqa: B018


@pytest.mark.parametrize("room", ROOMS)
def test_the_type_checker_sees_the_same_names(room: str) -> None:
    init = ROOT / Path(*room.split(".")) / "__init__.py"
    tree = ast.parse(init.read_text("utf-8"))
    seen: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith(room):
            for alias in node.names:
                assert alias.asname == alias.name, f"{alias.name} is not re-exported explicitly"
                seen[alias.name] = node.module.removeprefix(room + ".")
    assert seen == importlib.import_module(room)._EXPORTS


def test_the_clients_imports_do_not_load_trio_or_the_child_manager() -> None:
    code = (
        "import sys\n"
        "import supervisor.status, supervisor.supervision\n"
        "from supervisor.status.client import StatusClient\n"
        "from supervisor.supervision.statedir import resolve_state_dir\n"
        "heavy = [m for m in ('trio', 'supervisor.supervision.children') if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == ""
