"""SUPERVISOR.md §17.7: every invalid manifest or config is reported before anything starts.

One test per row of the table (the file-level rows), asserting the exact expected substrings.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from supervisor.config import check_config

from .conftest import report_of

Write = Callable[[str, str], Path]

# Each case's config.yaml: the third worker (workers[2]) is the one under test where it matters.
CONFIG_WITH_MANIFEST = """
workers:
  - name: iii-http
  - name: iii-state
  - name: api
    worker_path: ./workers/api
"""

MANIFEST_CASES = {
    "start_is_a_number": (
        "name: api\nscripts:\n  start: 123\n",
        ["workers/api/iii.worker.yaml:3: scripts.start: must be a command string"],
    ),
    "start_is_a_list": (
        "name: api\nscripts:\n  start: [a, b]\n",
        ["scripts.start: must be a command string, got a list", "chain commands with &&"],
    ),
    "start_misspelt": (
        "name: api\nscripts:\n  start: touch started-api\n  strat: x\n",
        ["iii.worker.yaml:4: scripts.strat: unknown key (did you mean scripts.start?)"],
    ),
    "env_value_not_a_string": (
        "name: api\nscripts: {start: x}\nenv: {PORT: 8080}\n",
        ["iii.worker.yaml:3: env.PORT: must be a string", 'quote the value: PORT: "'],
    ),
    "memory_not_an_integer": (
        "name: api\nscripts: {start: x}\nresources:\n  memory: lots\n",
        ["iii.worker.yaml:4: resources.memory: must be a non-negative integer"],
    ),
    "duplicate_name_key": (
        "name: api\nscripts: {start: x}\nname: other\n",
        ["iii.worker.yaml:3: name: duplicate key 'name' (lines 1 and 3)"],
    ),
    "name_with_dot_dot": (
        "name: ../evil\nscripts: {start: x}\n",
        ["iii.worker.yaml:1: name: ", "contains '..'"],
    ),
    "no_name_no_start": (
        "description: nothing\n",
        ["iii.worker.yaml:1: name: missing", "iii.worker.yaml:1: scripts.start: missing"],
    ),
    "manifest_syntax_error": (
        "name: api\nscripts:\n  start: [x\n",
        ["workers/api/iii.worker.yaml:", "YAML syntax error at line", "column"],
    ),
}


@pytest.mark.parametrize("case", sorted(MANIFEST_CASES))
def test_manifest_rows(write: Write, case: str) -> None:
    manifest, expected = MANIFEST_CASES[case]
    write("workers/api/iii.worker.yaml", manifest)
    out = report_of(Path(write("config.yaml", CONFIG_WITH_MANIFEST).name))
    for substring in expected:
        assert substring in out


def test_seventy_kib_manifest(write: Write, project: Path) -> None:
    body = "name: api\nscripts: {start: x}\ndescription: "
    text = body + "x" * (70 * 1024 - len(body) - 1) + "\n"
    write("workers/api/iii.worker.yaml", text)
    out = report_of(Path(write("config.yaml", CONFIG_WITH_MANIFEST).name))
    assert "iii.worker.yaml is 71680 bytes; the limit is 65536" in out


CONFIG_CASES = {
    "config_syntax_error": (
        "workers:\n  - name: a\n    supervise: {command: x\n",
        ["config.yaml:", "YAML syntax error at line", "column"],
    ),
    "supervisor_block_unknown_key": (
        "supervisor:\n  shutdown_timout: 30s\nworkers: []\n",
        ["config.yaml:2: supervisor.shutdown_timout: unknown key (did you mean shutdown_timeout?)"],
    ),
    "restart_sometimes": (
        "workers:\n  - name: a\n    supervise:\n      command: x\n      restart: sometimes\n",
        [
            "config.yaml:5: workers[0].supervise.restart: must be one of always, on-failure, "
            "never (or permanent, transient, temporary)"
        ],
    ),
    "stop_timeout_without_unit": (
        "workers:\n  - name: a\n    supervise:\n      command: x\n      stop_timeout: 30\n",
        ["config.yaml:5: workers[0].supervise.stop_timeout: duration needs a unit (e.g. 30s)"],
    ),
    "depends_on_unknown": (
        "workers:\n  - name: a\n    supervise:\n      command: x\n      depends_on: [nope]\n",
        ["config.yaml:5: workers[0].supervise.depends_on: unknown worker 'nope'"],
    ),
    "cycle": (
        "workers:\n"
        "  - name: a\n    supervise: {command: x, depends_on: [b]}\n"
        "  - name: b\n    supervise: {command: x, depends_on: [a]}\n",
        ["dependency cycle: a -> b -> a"],
    ),
    "unset_variable": (
        "workers:\n  - name: iii-http\n    config:\n      port: ${UNSET_VAR}\n",
        ["config.yaml:4: environment variable UNSET_VAR is not set and has no default"],
    ),
    "unset_variable_in_a_comment": (
        "# listen on ${UNSET_VAR}\nworkers: []\n",
        ["config.yaml:1: environment variable UNSET_VAR is not set and has no default"],
    ),
    "missing_worker_path": (
        "workers:\n  - name: iii-http\n  - name: iii-state\n  - name: api\n    worker_path: ./missing\n",
        ["config.yaml:5: workers[2].worker_path: directory ./missing does not exist"],
    ),
}


@pytest.mark.parametrize("case", sorted(CONFIG_CASES))
def test_config_rows(write: Write, case: str) -> None:
    text, expected = CONFIG_CASES[case]
    out = report_of(Path(write("config.yaml", text).name))
    for substring in expected:
        assert substring in out


def test_all_errors_of_every_file_in_one_report(write: Write) -> None:
    """A config and a manifest with many problems: one load reports all of them."""
    write(
        "workers/api/iii.worker.yaml",
        "scripts:\n  start: [a, b]\n  strat: x\nenv: {PORT: 8080}\nresources: {memory: lots}\n",
    )
    write(
        "config.yaml",
        """
        # ${UNSET_VAR}
        supervisor: {sockt: x}
        workers:
          - name: iii-http
            config: {port: abc}
          - name: c
            supervise: {command: x, restart: sometimes, stop_timeout: 30, depends_on: [nope]}
          - name: missing
            worker_path: ./missing
          - name: api
            worker_path: ./workers/api
          - name: a
            supervise: {command: x, depends_on: [b]}
          - name: b
            supervise: {command: x, depends_on: [a]}
        """,
    )
    expected = [
        "config.yaml:1: environment variable UNSET_VAR is not set and has no default",
        "config.yaml:2: supervisor.sockt: unknown key (did you mean socket?)",
        "config.yaml:5: workers[0] (iii-http): port: expected int, got 'abc'",
        "config.yaml:7: workers[1].supervise.restart: must be one of always",
        "config.yaml:7: workers[1].supervise.stop_timeout: duration needs a unit (e.g. 30s)",
        "config.yaml:7: workers[1].supervise.depends_on: unknown worker 'nope'",
        "config.yaml:9: workers[2].worker_path: directory ./missing does not exist",
        "config.yaml:13: workers[4].supervise.depends_on: dependency cycle: a -> b -> a",
        "workers/api/iii.worker.yaml:1: name: missing",
        "workers/api/iii.worker.yaml:2: scripts.start: must be a command string, got a list",
        "workers/api/iii.worker.yaml:3: scripts.strat: unknown key (did you mean scripts.start?)",
        "workers/api/iii.worker.yaml:4: env.PORT: must be a string",
        "workers/api/iii.worker.yaml:5: resources.memory: must be a non-negative integer",
    ]
    out = report_of(Path("config.yaml")).splitlines()
    assert len(out) == len(expected)
    for line, substring in zip(out, expected, strict=True):
        assert line.startswith(substring)
    report = check_config(Path("config.yaml"), env={})
    assert report.to_json()["valid"] is False
    assert [str(p) for p in report.errors] == out


def test_a_user_worker_name_used_twice_is_an_error(write: Write) -> None:
    path = write(
        "config.yaml",
        """
workers:
  - name: api
    supervise: {command: "sleep 60"}
  - name: api
    supervise: {command: "sleep 60"}
""",
    )
    text = report_of(path)
    assert text.count("worker name 'api' is already used by workers[0]") == 1
    assert "write 'api#2' to run a second instance" in text
    report = check_config(path)
    assert not report.valid and len(report.errors) == 1


def test_an_explicit_instance_suffix_runs_a_second_copy(write: Write) -> None:
    path = write(
        "config.yaml",
        """
workers:
  - name: api
    supervise: {command: "sleep 60"}
  - name: api#2
    supervise: {command: "sleep 60"}
""",
    )
    report = check_config(path)
    assert report.valid, report.errors


def test_iii_http_functions_listed_twice_is_an_error_naming_both_entries(write: Write) -> None:
    """One actor owns iii-http-functions::register/::invoke: a second entry would start a
    second actor whose functions conflict and whose security settings would never apply."""
    path = write(
        "config.yaml",
        """
workers:
  - name: iii-http-functions
    config:
      security: {url_allowlist: [localhost]}
  - name: iii-state
  - name: iii-http-functions
    config:
      security: {require_https: false}
""",
    )
    text = report_of(path)
    assert (
        "config.yaml:6: workers[2].name: iii-http-functions is already configured by "
        "workers[0] (line 2): it may be listed once"
    ) in text
    assert "Merge the two entries' security settings into one" in text
    report = check_config(path)
    assert not report.valid and len(report.errors) == 1


def test_a_second_iii_http_functions_under_an_instance_name_is_refused_too(write: Write) -> None:
    path = write(
        "config.yaml",
        """
workers:
  - name: iii-http-functions
  - name: iii-http-functions#2
""",
    )
    assert "workers[1].name: iii-http-functions is already configured by workers[0]" in (
        report_of(path)
    )


def test_other_built_ins_listed_twice_still_run_twice(write: Write) -> None:
    path = write(
        "config.yaml",
        """
workers:
  - name: iii-worker-manager
    config: {port: 49134}
  - name: iii-worker-manager
    config: {port: 49135}
""",
    )
    assert check_config(path).valid
