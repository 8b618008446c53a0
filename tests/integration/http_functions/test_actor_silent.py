"""An ``iii-http-functions`` actor that never answers (stopped with SIGSTOP, so its link stays
open): a call of an HTTP-invoked function fails within the function's ``timeout_ms`` plus 2 s
with ``http_request_failed`` naming the actor, instead of waiting 75 s; once the actor runs
again the same function answers."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from typing import Any

import pytest
from iii import InvocationError

from tests.integration.http_functions.conftest import SECURITY, call, register, validated
from tests.integration.http_functions.endpoint import Endpoint
from tests.support import EngineProcess, client_fixture, engine_fixture, find_process, wait_for


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EngineProcess]:
    config = {"workers": [{"name": "iii-http-functions", "config": {"security": SECURITY}}]}
    yield from engine_fixture(tmp_path_factory.mktemp("httpfn-silent"), config)


@pytest.fixture(scope="module")
def client(engine: EngineProcess) -> Iterator[Any]:
    yield from client_fixture(engine.url, "ext-silent")


def test_a_call_the_actor_never_answers_fails_within_its_timeout(
    engine: EngineProcess, endpoint: Endpoint, client: Any
) -> None:
    assert engine.proc is not None
    function_id, _ = register(client, client, "silent", endpoint.url("/echo"), timeout_ms=1000)
    wait_for(lambda: validated(engine, function_id), 15.0)
    assert call(client, function_id, {"n": 1})["got"]["n"] == 1
    actor = find_process(engine.proc.pid, "actors.http_functions")
    os.kill(actor, signal.SIGSTOP)
    try:
        start = time.monotonic()
        with pytest.raises(InvocationError) as info:
            call(client, function_id, {"n": 2}, timeout_ms=20_000)
        elapsed = time.monotonic() - start
        assert info.value.code == "http_request_failed"
        assert info.value.message == (
            f"Cannot call {function_id}: iii-http-functions did not answer within 3000 ms "
            "(its timeout_ms plus 2000 ms)"
        )
        assert 2.8 < elapsed < 6
        # the engine serves everything else meanwhile
        listed = client.trigger({"function_id": "engine::functions::list", "payload": {}})
        assert function_id in {f["function_id"] for f in listed["functions"]}
    finally:
        os.kill(actor, signal.SIGCONT)

    def answers() -> bool:
        try:
            return bool(call(client, function_id, {"n": 3})["got"]["n"] == 3)
        except InvocationError:
            return False

    wait_for(answers, 15.0)
    assert find_process(engine.proc.pid, "actors.http_functions") == actor  # not restarted
