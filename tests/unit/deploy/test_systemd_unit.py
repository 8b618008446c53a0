"""The shipped systemd unit keeps the promises of docs/operations.md#systemd.

Type=notify with a SIGHUP ExecReload (systemd 249–252 know no notify-reload), KillMode=mixed,
a stop timeout above the supervisor's own deadline, no crash loop on an invalid config, a
created user, optional paths marked optional, and an ExecStart the CLI accepts.
"""

from __future__ import annotations

import shlex

from supervisor.app import EXIT_CONFIG, SHUTDOWN_DEADLINE
from supervisor.cli import build_parser
from supervisor.supervision.runtime import SupervisionOptions
from tests.unit.deploy import unitfile


def seconds(value: str) -> float:
    return float(value[:-1]) if value.endswith("s") else float(value)


def test_notify_with_a_sighup_reload_that_systemd_249_understands() -> None:
    unit = unitfile.load()
    assert unitfile.one(unit, "Service", "Type") == "notify"
    assert unitfile.one(unit, "Service", "NotifyAccess") == "main"
    assert unitfile.one(unit, "Service", "ExecReload") == "/bin/kill -HUP $MAINPID"
    assert "ReloadSignal" not in unit["Service"]
    assert seconds(unitfile.one(unit, "Service", "WatchdogSec")) > 0


def test_stop_is_the_supervisors_with_a_timeout_above_its_deadline() -> None:
    unit = unitfile.load()
    assert unitfile.one(unit, "Service", "KillMode") == "mixed"
    assert unitfile.one(unit, "Service", "KillSignal") == "SIGTERM"
    deadline = SupervisionOptions().shutdown_timeout + SHUTDOWN_DEADLINE
    assert seconds(unitfile.one(unit, "Service", "TimeoutStopSec")) > deadline


def test_restart_on_failure_but_not_on_an_invalid_config() -> None:
    unit = unitfile.load()
    assert unitfile.one(unit, "Service", "Restart") == "on-failure"
    prevented = unitfile.one(unit, "Service", "RestartPreventExitStatus").split()
    assert str(EXIT_CONFIG) in prevented


def test_the_user_is_created_and_the_directories_are_systemds() -> None:
    unit = unitfile.load()
    user = unitfile.one(unit, "Service", "User")
    assert unitfile.one(unit, "Service", "Group") == user
    sysusers = [
        line.split()
        for line in unitfile.SYSUSERS.read_text().splitlines()
        if line and not line.startswith("#")
    ]
    assert [fields[:2] for fields in sysusers] == [["u", user]]
    for key in ("StateDirectory", "RuntimeDirectory", "LogsDirectory"):
        assert unitfile.one(unit, "Service", key) == "iii-supervisor"
    assert unitfile.one(unit, "Service", "WorkingDirectory") == "/var/lib/iii-supervisor"


def test_optional_paths_cannot_fail_the_start() -> None:
    unit = unitfile.load()
    for key in ("ReadWritePaths", "ReadOnlyPaths", "EnvironmentFile"):
        for value in unit["Service"].get(key, []):
            assert all(p.startswith("-") for p in value.split()), f"{key}={value}"


def test_exec_start_is_a_command_line_the_cli_accepts() -> None:
    argv = shlex.split(unitfile.one(unitfile.load(), "Service", "ExecStart"))
    assert argv[0] == "/opt/iii/bin/iii-supervisor"
    args = build_parser().parse_args(argv[1:])
    assert args.command == "up"
    assert str(args.config) == "/etc/iii/config.yaml"
    assert args.log_format == "json"


def test_the_drop_in_switches_newer_systemd_to_notify_reload() -> None:
    drop_in = unitfile.load(unitfile.DROP_IN)
    assert drop_in["Service"] == {
        "Type": ["notify-reload"],
        "ReloadSignal": ["SIGHUP"],
        "ExecReload": [""],
    }
