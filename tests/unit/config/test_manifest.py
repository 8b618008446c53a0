"""``iii.worker.yaml`` validation: upstream's rules (SUPERVISOR.md §1.2–1.4) and the §17.7 rows.

Also the shipped manifests of the built-in actors.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from manifests import (
    ManifestError,
    builtin_manifest,
    load_manifest,
    parse_manifest,
)
from supervisor.config.builtins import builtin_worker
from supervisor.config.model import Manifest

VALID = """
name: api
description: An API worker.
scripts:
  install: npm ci
  start: npm start
env:
  LOG_LEVEL: info
  III_URL: ws://elsewhere:1
resources: {cpus: 2, memory: 512}
dependencies: {other: "^1.2.0"}
tags: [http, demo]
"""


def errors(write: Callable[[str, str], Path], text: str) -> str:
    path = write("w/iii.worker.yaml", text)
    report = parse_manifest(path, display="iii.worker.yaml")
    assert report.manifest is None
    return "\n".join(str(p) for p in report.errors)


def test_valid_manifest(write: Callable[[str, str], Path]) -> None:
    path = write("w/iii.worker.yaml", VALID)
    manifest = load_manifest(path)
    assert manifest == Manifest(
        path=path,
        name="api",
        description="An API worker.",
        start="npm start",
        install="npm ci",
        env={"LOG_LEVEL": "info"},  # III_URL dropped silently, as upstream does
        raw=manifest.raw,
    )
    assert manifest.raw["resources"] == {"cpus": 2, "memory": 512}


def test_start_not_a_string(write: Callable[[str, str], Path]) -> None:
    out = errors(write, "name: a\nscripts:\n  start: 123\n")
    assert "iii.worker.yaml:3: scripts.start: must be a command string" in out


def test_start_is_a_list_with_the_and_hint(write: Callable[[str, str], Path]) -> None:
    out = errors(write, "name: a\nscripts:\n  start: [a, b]\n")
    assert "scripts.start: must be a command string, got a list" in out
    assert "&&" in out


def test_unknown_key_with_did_you_mean(write: Callable[[str, str], Path]) -> None:
    out = errors(write, "name: a\nscripts:\n  start: x\n  strat: x\n")
    assert "iii.worker.yaml:4: scripts.strat: unknown key (did you mean scripts.start?)" in out


def test_unknown_keys_are_listed_sorted(write: Callable[[str, str], Path]) -> None:
    path = write("w/iii.worker.yaml", "name: a\nzeta: 1\nscripts: {start: x}\nalpha: 2\n")
    assert parse_manifest(path).unknown_keys == ("alpha", "zeta")


def test_env_value_must_be_a_string_with_quote_hint(write: Callable[[str, str], Path]) -> None:
    out = errors(write, "name: a\nscripts: {start: x}\nenv:\n  PORT: 8080\n")
    assert "iii.worker.yaml:4: env.PORT: must be a string" in out
    assert 'quote the value: PORT: "' in out


def test_reserved_env_in_manifest(write: Callable[[str, str], Path]) -> None:
    out = errors(write, "name: a\nscripts: {start: x}\nenv: {III_WORKER_NAME: x}\n")
    assert "env.III_WORKER_NAME: RESERVED_ENV_OVERRIDE" in out


def test_resources_memory_must_be_a_non_negative_integer(write: Callable[[str, str], Path]) -> None:
    out = errors(write, "name: a\nscripts: {start: x}\nresources:\n  memory: lots\n")
    assert "resources.memory: must be a non-negative integer" in out
    out = errors(write, "name: a\nscripts: {start: x}\nresources:\n  cpus: -1\n")
    assert "resources.cpus: must be a non-negative integer" in out


def test_duplicate_name_key_with_both_lines(write: Callable[[str, str], Path]) -> None:
    out = errors(write, "name: a\nscripts: {start: x}\nname: b\n")
    assert "duplicate key 'name'" in out
    assert "lines 1 and 3" in out


def test_name_with_dot_dot(write: Callable[[str, str], Path]) -> None:
    out = errors(write, "name: ../evil\nscripts: {start: x}\n")
    assert "iii.worker.yaml:1: name: " in out
    assert "contains '..'" in out


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        (".hidden", "must not start with '.'"),
        ("a/b", "may only contain"),
        ("", "must not be empty"),
    ],
)
def test_name_rule(write: Callable[[str, str], Path], name: str, problem: str) -> None:
    assert problem in errors(write, f"name: '{name}'\nscripts: {{start: x}}\n")


def test_no_name_and_no_start_both_reported(write: Callable[[str, str], Path]) -> None:
    out = errors(write, "description: nothing useful\n")
    assert "name: missing" in out
    assert "scripts.start: missing" in out


def test_yaml_syntax_error_has_file_line_and_column(write: Callable[[str, str], Path]) -> None:
    out = errors(write, "name: a\nscripts:\n  start: [x\n")
    assert out.startswith("iii.worker.yaml:")
    assert "column" in out


def test_size_cap_exact_message(write: Callable[[str, str], Path]) -> None:
    text = "description: " + "x" * (71680 - len("description: ") - 1) + "\n"
    path = write("w/iii.worker.yaml", text)
    assert path.stat().st_size == 71680
    out = "\n".join(str(p) for p in parse_manifest(path).errors)
    assert "iii.worker.yaml is 71680 bytes; the limit is 65536" in out


def test_empty_manifest_and_non_mapping(write: Callable[[str, str], Path]) -> None:
    assert "empty" in errors(write, "# nothing\n")
    assert "must be a mapping, got a list" in errors(write, "- a\n")


def test_shape_errors_name_the_type(write: Callable[[str, str], Path]) -> None:
    out = errors(write, "name: a\nruntime: [x]\nscripts: {start: x}\ntags: [1]\n")
    assert "runtime: must be a mapping, got a list" in out
    assert "tags[0]: must be a string, got an integer" in out


def test_dependencies_rules(write: Callable[[str, str], Path]) -> None:
    out = errors(
        write,
        "name: a\nscripts: {start: x}\ndependencies:\n  a: ^1.0.0\n  b: whatever\n  ../c: ^1\n",
    )
    assert "dependencies.a: a worker cannot depend on itself" in out
    assert "dependencies.b: is not a semver range" in out
    assert "contains '..'" in out


@pytest.mark.parametrize("spec", ["^1.2.0", ">=1.0, <2", "~0.3", "*", "1.x", "=1.2.3-rc.1"])
def test_semver_ranges_accepted(write: Callable[[str, str], Path], spec: str) -> None:
    path = write(
        "w/iii.worker.yaml", f"name: a\nscripts: {{start: x}}\ndependencies: {{b: '{spec}'}}\n"
    )
    assert parse_manifest(path).valid


def test_errors_sorted_by_line_and_all_reported(write: Callable[[str, str], Path]) -> None:
    path = write(
        "w/iii.worker.yaml",
        "name: a\nenv: {PORT: 1}\nscripts:\n  start: [x]\nresources: {memory: x}\n",
    )
    lines = [p.line or 0 for p in parse_manifest(path).errors]
    assert len(lines) == 3 and all(lines)
    assert lines == sorted(lines)


def test_legacy_runtime_kind_inference_and_deprecation(write: Callable[[str, str], Path]) -> None:
    path = write("w/iii.worker.yaml", "name: a\nruntime: {kind: python, entry: app.main}\n")
    report = parse_manifest(path)
    assert report.valid
    assert report.manifest is not None
    assert report.manifest.start == ".venv/bin/python -m app.main"
    assert report.manifest.install is not None and "-e ." in report.manifest.install
    assert report.deprecated_keys == ("runtime.kind", "runtime.entry")
    assert "deprecated keys: runtime.kind, runtime.entry" in str(report.warnings[0])
    assert parse_manifest(path, warn_deprecated=False).warnings == ()


@pytest.mark.parametrize(
    ("runtime", "start"),
    [
        ("{kind: rust}", "cargo run --release"),
        ("{kind: bun, entry: src/index.ts}", "bun run src/index.ts"),
        ("{kind: typescript, package_manager: pnpm, entry: src/a.ts}", "pnpm exec tsx src/a.ts"),
    ],
)
def test_other_legacy_kinds(write: Callable[[str, str], Path], runtime: str, start: str) -> None:
    path = write("w/iii.worker.yaml", f"name: a\nruntime: {runtime}\n")
    manifest = load_manifest(path)
    assert manifest.start == start


def test_legacy_kind_problems(write: Callable[[str, str], Path]) -> None:
    assert "runtime.kind: must be one of" in errors(write, "name: a\nruntime: {kind: cobol}\n")
    out = errors(write, "name: a\nruntime: {kind: javascript, entry: a.js}\n")
    assert "runtime.package_manager: missing" in out


def test_dry_run_json(write: Callable[[str, str], Path]) -> None:
    path = write("w/iii.worker.yaml", "name: a\nscripts: {start: x}\nbogus: 1\n")
    answer = parse_manifest(path, display="iii.worker.yaml").to_json()
    assert answer["valid"] is False
    assert answer["name"] is None
    assert answer["unknown_keys"] == ["bogus"]
    assert answer["errors"] == [
        {"file": "iii.worker.yaml", "line": 3, "path": "bogus", "message": "unknown key"}
    ]


def test_load_manifest_raises_with_every_problem(write: Callable[[str, str], Path]) -> None:
    path = write("w/iii.worker.yaml", "description: x\n")
    with pytest.raises(ManifestError) as info:
        load_manifest(path)
    assert len(info.value.problems) == 2


@pytest.mark.parametrize(
    ("name", "module"),
    [
        ("iii-http", "actors.http"),
        ("http", "actors.http"),
        ("iii-state", "actors.state"),
        ("state", "actors.state"),
        ("iii-pubsub", "actors.pubsub"),
        ("configuration", "actors.configuration"),
    ],
)
def test_builtin_manifests(name: str, module: str) -> None:
    builtin = builtin_worker(name)  # an alias names its built-in through the registry
    assert builtin is not None
    manifest = builtin.load_manifest()
    assert manifest.start == f"python -m {module}"
    assert manifest.name == {"http": "iii-http", "state": "iii-state"}.get(name, name)
    assert manifest.description


def test_unknown_builtin_manifest() -> None:
    with pytest.raises(KeyError):
        builtin_manifest("iii-nope")
