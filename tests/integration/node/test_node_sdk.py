"""The npm ``iii-sdk`` against the engine: the engine is not tuned to one client.

A Node worker and a Python SDK worker call each other through ``iii-supervisor up``. Needs
``node``/``npm`` (skipped without them); the package is installed once into this folder.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.support import EngineProcess, sdk_client, wait_for

HERE = Path(__file__).parent


@pytest.fixture(scope="module")
def node_sdk() -> Path:
    if not shutil.which("node") or not shutil.which("npm"):
        pytest.skip("node/npm are not installed")
    if not (HERE / "node_modules" / "iii-sdk").exists():
        done = subprocess.run(
            ["npm", "install", "--no-audit", "--no-fund", "--ignore-scripts"],
            cwd=HERE,
            capture_output=True,
            text=True,
            timeout=300,
        )
        if done.returncode != 0:
            pytest.fail(f"npm install iii-sdk failed:\n{done.stderr[-2000:]}")
    return HERE


def test_node_and_python_workers_call_each_other(node_sdk: Path, tmp_path: Path) -> None:
    engine = EngineProcess({"workers": []}, tmp_path).start()
    py = sdk_client(engine.url, "py-smoke")
    log = tmp_path / "node.log"
    node = subprocess.Popen(
        [shutil.which("node") or "node", str(node_sdk / "worker.mjs")],
        cwd=node_sdk,
        env={**os.environ, "III_URL": engine.url, "OTEL_ENABLED": "false"},
        stdout=open(log, "wb"),  # noqa: SIM115 - closed with the process
        stderr=subprocess.STDOUT,
    )
    try:
        py.register_function("py::double", lambda data: data["n"] * 2)

        def lines() -> list[dict[str, Any]]:
            out = []
            for line in log.read_text(errors="replace").splitlines():
                try:
                    out.append(json.loads(line))
                except ValueError:
                    pass
            return out

        wait_for(lambda: any("missing" in x for x in lines()), 30)
        outcomes = lines()
        assert {"doubled": 42} in outcomes, log.read_text()
        assert {"missing": "function_not_found"} in outcomes, log.read_text()

        def greet() -> Any:
            try:
                return py.trigger({"function_id": "node::greet", "payload": {"name": "iii"}})
            except Exception:
                return None

        assert wait_for(greet, 15) == {"greeting": "hello iii"}
        workers = py.trigger({"function_id": "engine::workers::list", "payload": {}})["workers"]
        node_rows = [w for w in workers if w["name"] == "node-smoke"]
        assert node_rows and node_rows[0]["runtime"] == "node"
    finally:
        node.terminate()
        node.wait(10)
        py.shutdown()
        engine.stop()


def test_node_worker_gauges_show_as_latest_metrics(node_sdk: Path, tmp_path: Path) -> None:
    """The Node SDK sends its worker gauges (MTRC) by itself; engine::workers::info shows the
    latest sample (PROTOCOL.md §12.2.5)."""
    engine = EngineProcess({"workers": []}, tmp_path).start()
    py = sdk_client(engine.url, "py-gauges")
    log = tmp_path / "node-gauges.log"
    node = subprocess.Popen(
        [shutil.which("node") or "node", str(node_sdk / "gauges.mjs")],
        cwd=node_sdk,
        env={**os.environ, "III_URL": engine.url, "OTEL_ENABLED": "true"},
        stdout=open(log, "wb"),  # noqa: SIM115 - closed with the process
        stderr=subprocess.STDOUT,
    )
    try:

        def latest() -> Any:
            try:
                info = py.trigger(
                    {"function_id": "engine::workers::info", "payload": {"name": "node-gauges"}}
                )
            except Exception:
                return None
            return info["worker"].get("latest_metrics")

        sample = wait_for(latest, 30, interval=0.2)
        assert sample["memory_rss"] > 0 and sample["memory_heap_used"] > 0, sample
        assert {"cpu_percent", "uptime_seconds", "timestamp_ms"} <= set(sample), sample
    finally:
        node.terminate()
        node.wait(10)
        py.shutdown()
        engine.stop()
