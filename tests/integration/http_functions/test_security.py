"""The URL security of ``iii-http-functions`` with upstream's defaults (WORKERS.md §4.1, §4.4):
https required and private addresses blocked — IP literals and names that resolve to them
(a real lookup of ``localhost``) — each refusal logged with its reason and the function never
listed; and an engine without the worker drops such registrations ("HTTP functions module not
loaded"); an invalid allowlist glob is a config error naming its place."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from iii_helpers.http import HttpInvocationConfig

from tests.integration.http_functions.conftest import failure, fresh, listed, refused_in_log
from tests.integration.http_functions.endpoint import Endpoint
from tests.support import (
    BIN,
    REPO,
    EngineProcess,
    client_fixture,
    engine_fixture,
    sdk_client,
    wait_for,
)


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EngineProcess]:
    config = {"workers": [{"name": "iii-http-functions"}]}  # no block: upstream's defaults
    yield from engine_fixture(tmp_path_factory.mktemp("httpfn-strict"), config)


@pytest.fixture(scope="module")
def client(engine: EngineProcess) -> Iterator[Any]:
    yield from client_fixture(engine.url, "ext-strict")


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://127.0.0.1:{port}/echo", "HTTPS is required: 'http://127.0.0.1:{port}/echo'"),
        ("https://127.0.0.1:{port}/echo", "Private IP blocked: 127.0.0.1"),
        ("https://10.20.30.40/echo", "Private IP blocked: 10.20.30.40"),
        ("https://[::1]:{port}/echo", "Private IP blocked: ::1"),
        ("https://169.254.169.254/latest/meta-data", "Private IP blocked: 169.254.169.254"),
        ("https://localhost:{port}/echo", "Private IP blocked: 'localhost' resolves to"),
    ],
)
def test_https_and_public_addresses_are_required_by_default(
    engine: EngineProcess, endpoint: Endpoint, client: Any, url: str, reason: str
) -> None:
    function_id = fresh("strict")
    target = url.format(port=endpoint.port)
    client.register_function(function_id, HttpInvocationConfig(url=target))
    line = refused_in_log(engine, function_id)
    assert line["code"] == "url_validation_failed"
    assert line["reason"].startswith(reason.format(port=endpoint.port))
    assert function_id not in listed(client)
    assert failure(client, function_id).code == "function_not_found"
    assert endpoint.requests_to("/echo") == []


def test_without_the_worker_configured_registrations_are_dropped(
    tmp_path_factory: pytest.TempPathFactory, endpoint: Endpoint
) -> None:
    eng = EngineProcess({"workers": []}, tmp_path_factory.mktemp("httpfn-none")).start()
    client = sdk_client(eng.url, "ext-none")
    try:
        function_id = fresh("unloaded")
        client.register_function(function_id, HttpInvocationConfig(url=endpoint.url("/echo")))

        def dropped() -> bool:
            return any(
                function_id in line and "HTTP functions module not loaded" in line
                for line in eng.log_text().splitlines()
            )

        wait_for(dropped, 15.0)
        assert function_id not in listed(client)
        assert failure(client, function_id).code == "function_not_found"
    finally:
        client.shutdown()
        eng.stop()


def test_an_invalid_allowlist_glob_stops_the_config_with_its_place(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(
        "workers:\n  - name: iii-http-functions\n    config:\n      security:\n"
        '        url_allowlist: ["ok.example", "[bad"]\n'
    )
    done = subprocess.run(
        [str(BIN / "iii-supervisor"), "check", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert done.returncode != 0
    assert (
        "config.yaml:5: workers[0] (iii-http-functions): security.url_allowlist[1]: "
        "invalid pattern '[bad': unclosed `[`"
    ) in done.stdout + done.stderr


def test_a_second_iii_http_functions_entry_stops_up_with_both_places(tmp_path: Path) -> None:
    """Two entries would start two actors, the second's functions refused by the first's
    lease and its security never applied: ``up`` refuses the config before starting."""
    config = tmp_path / "config.yaml"
    config.write_text(
        "workers:\n"
        "  - name: iii-http-functions\n"
        "    config: {security: {url_allowlist: [localhost]}}\n"
        "  - name: iii-http-functions\n"
        "    config: {security: {require_https: false}}\n"
    )
    done = subprocess.run(
        [str(BIN / "iii-supervisor"), "up", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(REPO), "III_SUPERVISOR_STATE_DIR": str(tmp_path)},
        cwd=tmp_path,
    )
    assert done.returncode == 78
    assert (
        "config.yaml:4: workers[1].name: iii-http-functions is already configured by "
        "workers[0] (line 2): it may be listed once"
    ) in done.stdout + done.stderr
