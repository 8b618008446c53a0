"""Environment and command resolution for a spawn (§7.1, §7.2)."""

from __future__ import annotations

from pathlib import Path

from supervisor.config.model import Manifest, SuperviseSpec, WorkerEntry, WorkerKind
from supervisor.supervision.childenv import build_env, flatten_config, resolve_command


def entry(command: object = None, **kw: object) -> WorkerEntry:
    return WorkerEntry(
        name="api",
        kind=WorkerKind.COMMAND,
        supervise=SuperviseSpec(command=command, **kw),  # type: ignore[arg-type]
    )


def test_flatten_config_uses_upstreams_rule() -> None:
    flat = flatten_config(
        {"db": {"port": 5432, "host": "x"}, "debug": True, "tags": ["a"], "n": None}
    )
    assert flat == {
        "DB_PORT": "5432",
        "DB_HOST": "x",
        "DEBUG": "true",
        "TAGS": '["a"]',
        "N": "null",
    }


def test_plain_command_is_argv_and_shell_syntax_goes_through_sh() -> None:
    assert resolve_command(entry("python app.py --port 8")) == (
        ("python", "app.py", "--port", "8"),
        None,
    )
    assert resolve_command(entry('run --port "$PORT"')) == (None, 'run --port "$PORT"')
    assert resolve_command(entry("a && b")) == (None, "a && b")
    assert resolve_command(entry(["x", "y z"])) == (("x", "y z"), None)


def test_env_layers_and_stripping() -> None:
    e = WorkerEntry(
        name="api",
        kind=WorkerKind.MANIFEST,
        config={"port": 8080},
        manifest=Manifest(
            path=Path(__file__),
            start="x",
            env={"FROM_MANIFEST": "1", "III_URL": "nope", "PORT": "1"},
        ),
        supervise=SuperviseSpec(env={"OPERATOR": "yes"}),
    )
    base = {
        "PATH": "/bin",
        "NOTIFY_SOCKET": "/run/n",
        "WATCHDOG_USEC": "1",
        "III_SUPERVISOR_SOCKET": "/x",
        "JOURNAL_STREAM": "8:1",
        "INVOCATION_ID": "abc",
        "KEEP": "me",
    }
    env = build_env(
        e, base=base, reserved={"III_URL": "ws://127.0.0.1:1", "III_WORKER_NAME": "api"}
    )
    for gone in (
        "NOTIFY_SOCKET",
        "WATCHDOG_USEC",
        "III_SUPERVISOR_SOCKET",
        "JOURNAL_STREAM",
        "INVOCATION_ID",
    ):
        assert gone not in env
    assert env["KEEP"] == "me" and env["FROM_MANIFEST"] == "1"
    assert env["PORT"] == "8080"  # flattened config overrides the manifest env
    assert env["III_URL"] == "ws://127.0.0.1:1"
    assert env["OPERATOR"] == "yes" and env["PYTHONUNBUFFERED"] == "1"


def test_inherit_env_false_keeps_only_the_baseline() -> None:
    env = build_env(
        entry("x", inherit_env=False), base={"PATH": "/bin", "SECRET": "s"}, reserved={}
    )
    assert env == {"PATH": "/bin", "PYTHONUNBUFFERED": "1"}
