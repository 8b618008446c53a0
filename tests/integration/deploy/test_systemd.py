"""The shipped unit under systemd's own tools, and its exact ExecStart speaking sd_notify.

* ``systemd-analyze verify`` accepts the unit with no warning (an unknown key such as
  ``ReloadSignal=`` on systemd 252 is one), with ExecStart pointed at the installed binary;
* ``systemd-analyze security`` scores it at most 2.5 (recorded as a test property);
* the unit's ExecStart, run as systemd would (the directories' variables set, ``NOTIFY_SOCKET``
  a datagram socket this test owns, a shorter watchdog), sends ``READY=1``, ``WATCHDOG=1``,
  ``RELOADING=1`` when its ExecReload line runs, and ``STOPPING=1`` on the KillSignal.

systemd-analyze comes from Debian's ``systemd`` package (``make deploy-tools``); without it
the first two tests skip and say so.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml

from tests.support import BIN, NotifyReceiver, free_port
from tests.unit.deploy import unitfile

INSTALLED = "/opt/iii/bin/iii-supervisor"  # what the unit names; the tests use BIN's
SECURITY_LIMIT = 2.5


def systemd_analyze() -> str:
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.skip("systemd-analyze is not installed (`make deploy-tools` installs systemd)")
    return tool


def systemd_version(tool: str) -> int:
    out = subprocess.run([tool, "--version"], capture_output=True, text=True, check=True).stdout
    m = re.match(r"systemd (\d+)", out)
    assert m, out
    return int(m.group(1))


def installed_unit(tmp: Path) -> Path:
    """The unit as installed here: ExecStart names this checkout's binary."""
    text = unitfile.UNIT.read_text().replace(INSTALLED, str(BIN / "iii-supervisor"))
    path = tmp / "iii-supervisor.service"
    path.write_text(text)
    return path


def test_systemd_analyze_verify_accepts_the_unit(tmp_path: Path) -> None:
    tool = systemd_analyze()
    done = subprocess.run(
        [tool, "verify", str(installed_unit(tmp_path))], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "" and done.stderr.strip() == "", done.stdout + done.stderr


def test_systemd_analyze_verify_accepts_the_notify_reload_drop_in(tmp_path: Path) -> None:
    tool = systemd_analyze()
    version = systemd_version(tool)
    if version < 253:
        pytest.skip(f"systemd {version} has no Type=notify-reload (the drop-in is for >= 253)")
    unit = installed_unit(tmp_path)
    drop_ins = tmp_path / "iii-supervisor.service.d"
    drop_ins.mkdir()
    shutil.copy(unitfile.DROP_IN, drop_ins / "notify-reload.conf")
    done = subprocess.run([tool, "verify", str(unit)], capture_output=True, text=True)
    assert done.returncode == 0 and not done.stderr.strip(), done.stderr


def test_systemd_analyze_security_scores_at_most_2_5(
    tmp_path: Path, record_property: Callable[[str, object], None]
) -> None:
    tool = systemd_analyze()
    done = subprocess.run(
        [tool, "security", "--offline=true", "--no-pager", str(installed_unit(tmp_path))],
        capture_output=True,
        text=True,
    )
    m = re.search(r"Overall exposure level for \S+: (\d+(?:\.\d+)?)", done.stdout + done.stderr)
    assert m, done.stdout + done.stderr
    score = float(m.group(1))
    record_property("systemd_security_exposure", score)
    print(f"systemd-analyze security: exposure {score} (systemd {systemd_version(tool)})")
    assert score <= SECURITY_LIMIT, done.stdout


# -- the exact ExecStart under a fake systemd ----------------------------------------------------


@pytest.fixture
def notify(tmp_path: Path) -> Iterator[NotifyReceiver]:
    receiver = NotifyReceiver(tmp_path / "notify.sock")
    yield receiver
    receiver.close()


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    """A directory with a short path: the status socket under it must fit AF_UNIX's 107 bytes,
    which pytest's own (per-xdist-worker) tmp paths can exceed."""
    path = Path(tempfile.mkdtemp(prefix="iii-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def test_exec_start_sends_ready_watchdog_reloading_and_stopping(
    tmp_path: Path, short_tmp: Path, notify: NotifyReceiver
) -> None:
    unit = unitfile.load()
    service = unit["Service"]
    config = tmp_path / "etc" / "config.yaml"
    config.parent.mkdir()
    port = free_port()
    config.write_text(
        yaml.safe_dump(
            {
                "workers": [
                    {"name": "iii-worker-manager", "config": {"host": "127.0.0.1", "port": port}}
                ]
            }
        )
    )
    argv = shlex.split(unitfile.one(unit, "Service", "ExecStart"))
    assert argv[0] == INSTALLED
    argv = [
        str(BIN / "iii-supervisor"),
        *(str(config) if a == "/etc/iii/config.yaml" else a for a in argv[1:]),
    ]
    # What systemd puts in the environment for this unit (StateDirectory= and friends).
    dirs = {}
    for key, var in (
        ("StateDirectory", "STATE_DIRECTORY"),
        ("RuntimeDirectory", "RUNTIME_DIRECTORY"),
        ("LogsDirectory", "LOGS_DIRECTORY"),
    ):
        path = short_tmp / key / unitfile.one(unit, "Service", key)
        path.mkdir(parents=True, mode=0o750)
        dirs[var] = str(path)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("III_", "WATCHDOG_"))}
    env.update(dirs)
    env.update(
        NOTIFY_SOCKET=str(notify.path),
        # The unit's WatchdogSec=30 pings every 15 s; a 1 s watchdog keeps the test short.
        WATCHDOG_USEC="1000000",
        INVOCATION_ID="0123456789abcdef0123456789abcdef",
    )
    assert "WatchdogSec" in service
    log = tmp_path / "up.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            argv,
            cwd=tmp_path,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    try:
        ready = notify.wait("READY=1", timeout=30)
        notify.wait("WATCHDOG=1", after=ready, timeout=5)
        # The operator's CLI finds the socket the way ExecReload would: $RUNTIME_DIRECTORY.
        status = subprocess.run(
            [str(BIN / "iii-supervisor"), "status"], env=env, capture_output=True, text=True
        )
        assert status.returncode == 0, status.stdout + status.stderr
        assert Path(dirs["RUNTIME_DIRECTORY"], "control.sock").is_socket()

        reload_line = unitfile.one(unit, "Service", "ExecReload").replace("$MAINPID", str(proc.pid))
        subprocess.run(shlex.split(reload_line), check=True, timeout=10)
        reloading = notify.wait("RELOADING=1", after=ready)
        notify.wait("READY=1", after=reloading + 1)
        assert proc.poll() is None, log.read_text()

        kill_signal = unitfile.one(unit, "Service", "KillSignal")
        proc.send_signal(signal.Signals[kill_signal])
        notify.wait("STOPPING=1", after=reloading)
        stop_timeout = float(unitfile.one(unit, "Service", "TimeoutStopSec").rstrip("s"))
        assert proc.wait(stop_timeout) == 0, log.read_text()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)
