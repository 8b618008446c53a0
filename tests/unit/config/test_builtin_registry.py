"""The registry of built-ins, row by row: a built-in actor has a manifest that parses and starts
its package, a block schema, and an actor that parses its block with that very class.

Every block is read three ways — the supervisor's validation, the actor's parse and the JSON
Schema the actor publishes to the configuration worker — and the three must agree.
"""

from __future__ import annotations

import importlib
from typing import Any

import attrs
import pytest

from actors.configuration.schema import check_schema, violations
from manifests.blocks import BlockError, json_schema, validate
from supervisor.config.blocks import validate_block
from supervisor.config.builtins import BUILTINS, Builtin
from supervisor.config.model import WorkerKind

ACTORS = [b for b in BUILTINS if b.kind is WorkerKind.ACTOR]
WITH_BLOCK = [b for b in BUILTINS if b.block is not None]
# JSON values of every kind, some out of the ranges blocks use.
CANDIDATES: tuple[Any, ...] = (True, 0, -1, 1.5, 70000, "x", "", [], ["x"], {}, None)


def name(row: Builtin) -> str:
    return row.name


@pytest.mark.parametrize("row", BUILTINS, ids=name)
def test_a_row_says_how_its_worker_runs(row: Builtin) -> None:
    if row.kind is WorkerKind.ACTOR:
        assert row.actor is not None and row.actor.startswith("actors.")
        assert row.manifest and row.block is not None and row.defaults is not None
    else:  # inside the supervisor: no process, so no manifest and no actor package
        assert row.actor is None and row.manifest is None
    if row.block is not None:
        assert row.defaults is not None


@pytest.mark.parametrize("row", ACTORS, ids=name)
def test_the_manifest_parses_and_starts_the_actor_package(row: Builtin) -> None:
    manifest = row.load_manifest()
    assert manifest.name == row.name
    assert manifest.start == f"python -m {row.actor}"
    assert manifest.description


@pytest.mark.parametrize("row", ACTORS, ids=name)
def test_the_actor_parses_its_block_with_the_rows_schema(row: Builtin) -> None:
    assert row.actor is not None and row.defaults is not None
    module = importlib.import_module(row.actor)
    assert module.BLOCK is row.block
    for raw in (row.defaults, None):
        assert type(module.parse_config(raw)) is row.block
    with pytest.raises(BlockError, match="no_such_key: unknown field"):
        module.parse_config({"no_such_key": 1})
    block, issues = validate_block(row.name, row.defaults)
    assert issues == [] and block == module.parse_config(row.defaults)


@pytest.mark.parametrize("row", WITH_BLOCK, ids=name)
def test_the_defaults_and_every_field_read_the_same_three_ways(row: Builtin) -> None:
    assert row.block is not None
    schema = json_schema(row.block, title=row.name)
    check_schema(schema)
    samples: list[Any] = [row.defaults, {}, {"no_such_key": 1}]
    samples += [{f.name: v} for f in attrs.fields(row.block) for v in CANDIDATES]
    for sample in samples:
        structured, issues = validate(row.block, sample)
        by_supervisor = validate_block(row.name, sample)[1] == []
        by_schema = violations(schema, sample) == []
        assert (structured is not None, by_supervisor) == (issues == [], issues == [])
        assert by_schema == by_supervisor, (sample, issues, violations(schema, sample))
