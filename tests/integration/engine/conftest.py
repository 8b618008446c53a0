"""An ``iii-supervisor up`` subprocess with just the worker listener, per test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support import EngineProcess, client_fixture, engine_fixture, wait_for


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[EngineProcess]:
    yield from engine_fixture(tmp_path, {"workers": []})


@pytest.fixture
def client(engine: EngineProcess) -> Iterator[Any]:
    yield from client_fixture(engine.url, "test-client")


def function_ids(client: Any) -> set[str]:
    result = client.trigger({"function_id": "engine::functions::list", "payload": {}})
    return {f["function_id"] for f in result["functions"]}


def wait_functions(client: Any, *ids: str, timeout: float = 15.0) -> None:
    wait_for(lambda: set(ids) <= function_ids(client), timeout)
