"""A real engine plus the ``iii-http`` actor, and an official SDK client, per test module.

``start_stack`` is the one place that decides how the actor runs. Today the engine runs with
only its listener and the actor is started as its own process against it (the way the
supervisor will start it: ``python -m actors.http`` with ``III_URL`` / ``III_CONFIG``). Once
``iii-supervisor up`` spawns ``actors.http`` from ``config.yaml`` itself, flip
``SPAWN_BY_ENGINE`` and nothing else changes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import httpx
import pytest

from tests.support import (
    REPO,
    EngineProcess,
    client_fixture,
    free_port,
    wait_for,
    wait_port,
)

SPAWN_BY_ENGINE = True


@attrs.define
class HttpStack:
    engine: EngineProcess
    port: int
    tmp: Path
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def actor_log(self) -> str:
        if self.log_path is not None and self.log_path.exists():
            return self.log_path.read_text(errors="replace")
        return self.engine.log_text()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.engine.stop()


def start_stack(tmp: Path, http_config: dict[str, Any]) -> HttpStack:
    port = free_port()
    config = {"host": "127.0.0.1", **http_config, "port": port}
    if SPAWN_BY_ENGINE:
        engine = EngineProcess({"workers": [{"name": "iii-http", "config": config}]}, tmp).start()
        stack = HttpStack(engine, port, tmp)
        try:
            wait_port(port, 30, engine.proc)
        except Exception:
            stack.stop()
            raise
        return stack
    engine = EngineProcess({"workers": []}, tmp).start()
    config_path = tmp / "iii-http.json"
    config_path.write_text(json.dumps(config))
    log_path = tmp / "iii-http.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "actors.http"],
            cwd=REPO,
            env={
                **os.environ,
                "III_URL": engine.url,
                "III_ENGINE_URL": engine.url,
                "III_CONFIG": str(config_path),
                "III_DATA_DIR": str(tmp / "data"),
            },
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    stack = HttpStack(engine, port, tmp, proc, log_path)
    try:
        wait_port(port, 30, proc)
    except Exception:
        stack.stop()
        raise
    return stack


@pytest.fixture(scope="module")
def http_config() -> dict[str, Any]:
    """The actor's config block; a test module overrides this fixture to change it."""
    return {}


@pytest.fixture(scope="module")
def stack(
    tmp_path_factory: pytest.TempPathFactory, http_config: dict[str, Any]
) -> Iterator[HttpStack]:
    s = start_stack(tmp_path_factory.mktemp("http"), http_config)
    try:
        yield s
    finally:
        s.stop()


@pytest.fixture(scope="module")
def client(stack: HttpStack) -> Iterator[Any]:
    yield from client_fixture(stack.engine.url, "http-test-client")


@pytest.fixture
def http(stack: HttpStack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=stack.base, timeout=30.0) as c:
        yield c


def route_live(http: httpx.Client, path: str) -> bool:
    """True once some route serves ``path``: an OPTIONS probe (no pre-flight header, so it
    reaches the router) gets 405 instead of 404 without calling any handler."""
    return http.request("OPTIONS", path).status_code != 404


def wait_route(http: httpx.Client, path: str, timeout: float = 15.0) -> None:
    wait_for(lambda: route_live(http, path), timeout)


def wait_gone(http: httpx.Client, path: str, timeout: float = 15.0) -> None:
    wait_for(lambda: not route_live(http, path), timeout)


def add_route(
    client: Any,
    http: httpx.Client,
    function_id: str,
    handler: Any,
    api_path: str,
    method: str = "GET",
    probe: str | None = None,
    **extra: Any,
) -> Any:
    """Register ``handler`` and an ``http`` trigger for it; wait until the route serves."""
    client.register_function(function_id, handler)
    trigger = client.register_trigger(
        {
            "type": "http",
            "function_id": function_id,
            "config": {"api_path": api_path, "http_method": method, **extra},
        }
    )
    wait_route(http, probe or "/" + api_path.lstrip("/"))
    return trigger


def settle(seconds: float = 0.3) -> None:
    time.sleep(seconds)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """A failing test here shows the engine's log tail (actor exits, restarts, warnings):
    a dropped HTTP connection is otherwise a bare ``RemoteProtocolError``."""
    report = yield
    stack = getattr(item, "funcargs", {}).get("stack")
    if report.failed and isinstance(stack, HttpStack):
        lines = stack.actor_log().splitlines()[-LOG_TAIL:]
        report.sections.append(("engine log (tail)", "\n".join(lines)))
    return report


LOG_TAIL = 80
