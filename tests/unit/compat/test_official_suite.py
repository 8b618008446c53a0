"""The runner of the official SDK suite (tests/compat/official_suite.py): its engine config
loads, strictly, for both backends, and its tally reads each outcome of a JUnit report."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from supervisor.config import load
from tests.compat.official_suite import fixture_config, tally

PORTS = {"ws": 41001, "rbac": 41002, "http": 41003, "stream": 41004}


@pytest.mark.parametrize("services", [False, True])
def test_the_fixture_config_loads_strictly(tmp_path: Path, services: bool) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(fixture_config(PORTS, services)))
    loaded = load(path, env={}, strict=True)
    names = {w.name for w in loaded.engine.workers}
    for name in ("iii-stream", "iii-state", "iii-http", "iii-pubsub", "iii-queue", "iii-cron"):
        assert name in names
    assert {listener.port for listener in loaded.engine.listeners} == {41001, 41002}


def test_tally_counts_each_outcome_per_file(tmp_path: Path) -> None:
    report = tmp_path / "junit.xml"
    report.write_text(
        """<testsuites><testsuite>
        <testcase classname="test_streams" name="a"/>
        <testcase classname="test_streams" name="b"><failure message="x"/></testcase>
        <testcase classname="test_rbac_workers.TestRbacWorkers" name="c"/>
        <testcase classname="test_rbac_workers.TestRbacWorkers" name="d"><error/></testcase>
        <testcase classname="test_api_triggers" name="e"><skipped/></testcase>
        </testsuite></testsuites>"""
    )
    rows = tally(report)
    assert rows["test_streams.py"] == {"passed": 1, "failed": 1}
    assert rows["test_rbac_workers.py"] == {"passed": 1, "error": 1}
    assert rows["test_api_triggers.py"] == {"skipped": 1}
