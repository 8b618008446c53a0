"""A SIGKILLed ``iii-http-functions`` actor loses nothing: the engine keeps the registrations
(owned by the workers that made them), the supervisor restarts the actor, and the functions
registered before are callable again without the worker re-registering; one registered while
the actor was down is held and validated once it is back."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from typing import Any

import pytest
from iii_helpers.http import HttpInvocationConfig

from tests.integration.http_functions.conftest import SECURITY, call, fresh, listed, register
from tests.integration.http_functions.endpoint import Endpoint
from tests.support import (
    EngineProcess,
    client_fixture,
    engine_fixture,
    find_process,
    wait_for,
)


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EngineProcess]:
    config = {"workers": [{"name": "iii-http-functions", "config": {"security": SECURITY}}]}
    yield from engine_fixture(tmp_path_factory.mktemp("httpfn-restart"), config)


@pytest.fixture(scope="module")
def client(engine: EngineProcess) -> Iterator[Any]:
    yield from client_fixture(engine.url, "ext-restart")


def test_a_killed_actor_comes_back_serving_every_registration(
    engine: EngineProcess, endpoint: Endpoint, client: Any
) -> None:
    assert engine.proc is not None
    before, _ = register(client, client, "before", endpoint.url("/echo"))
    assert call(client, before, {"n": 1})["got"]["n"] == 1
    actor = find_process(engine.proc.pid, "actors.http_functions")

    os.kill(actor, signal.SIGKILL)
    during = fresh("during")
    client.register_function(during, HttpInvocationConfig(url=endpoint.url("/echo")))
    assert before in listed(client)  # the engine keeps it: its owner is still connected

    wait_for(lambda: find_process(engine.proc.pid, "actors.http_functions") != actor, 20.0)
    wait_for(lambda: during in listed(client), 20.0)

    def answers() -> bool:
        try:
            return bool(call(client, before, {"n": 2})["got"]["n"] == 2)
        except Exception:
            return False

    wait_for(answers, 20.0)
    assert call(client, during, {"n": 3})["got"]["n"] == 3
