"""The keeper: a tiny stdlib-only parent for one worker process, leading its process group.

It runs as ``python -I <path>/keeper.py`` (no site, no cwd on ``sys.path``: this file imports
the standard library only) between the supervisor and every worker, and holds the three
orphan defences of SUPERVISOR.md §3.3 and §10 in one place: it leads the worker's group, it
is the subreaper of the worker's tree, and EOF on its control socket (the kernel closes the
supervisor's end when the supervisor dies, even by SIGKILL) makes it end the whole tree.
``PR_SET_PDEATHSIG`` is deliberately not used: trio forks from a short-lived worker thread
and the death signal follows the *thread*, so it would kill healthy workers (§3.2).

Control protocol on ``III_KEEPER_FD`` (an AF_UNIX stream socket, JSON lines):

    supervisor → keeper   {"op":"run","argv":[…]} | {"op":"run","shell":"…"}
                          + "supervisor_pid", "pass_fds", "rlimits", "nice", "sweep_grace",
                            "orphan_grace", "catch_signals"
                          {"op":"kill"}   SIGKILL the whole tree now, then report as usual
    keeper → supervisor   {"ev":"hello","keeper_pid":…,"pgid":…,"start_time":…}
                          {"ev":"spawned","pid":…,"start_time":…}
                          {"ev":"exec_failed","errno":2,"error":"ENOENT","path":"…","message":"…"}
                          {"ev":"log","line":"…"}
                          {"ev":"exited","pid":…,"code":N|null,"signal":S|null,"core":bool}

The keeper exits with the worker's code (or 128+signal); 125 when the supervisor vanished
during the spawn; 126/127 after ``exec_failed``.
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import select
import signal
import socket
import subprocess
import sys
import time
from typing import Any

PR_SET_CHILD_SUBREAPER = 36
EXIT_SUPERVISOR_GONE = 125
_BASE_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR2, signal.SIGCHLD)
_POLL = 0.05  # seconds between /proc scans while waiting for a group to empty


class _Flags:
    usr2 = False


def _noop(signo: int, frame: object) -> None:
    # Group signals are for the worker; the keeper leaves once the worker has left. A
    # handler (not SIG_IGN) so that the disposition does not survive exec into the worker.
    if signo == signal.SIGUSR2:
        _Flags.usr2 = True


def _proc_stat(pid: int | str) -> tuple[str, int, int, int] | None:
    """(state, ppid, pgrp, starttime) of a process from /proc, or None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    # The command name may contain spaces and parentheses: split after the last ')'.
    rest = data[data.rfind(b")") + 2 :].split()
    try:
        return rest[0].decode(), int(rest[1]), int(rest[2]), int(rest[19])
    except (IndexError, ValueError):
        return None


def _process_table() -> dict[int, tuple[str, int, int]]:
    table: dict[int, tuple[str, int, int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        st = _proc_stat(name)
        if st is not None:
            table[int(name)] = (st[0], st[1], st[2])
    return table


class Keeper:
    def __init__(self, ctl: socket.socket) -> None:
        self.ctl = ctl
        self.pid = os.getpid()
        self.pgid = os.getpgid(0)
        self.buf = b""
        self.main_pid: int | None = None
        self.main_status: int | None = None
        self.supervisor_pid = int(os.environ.get("III_ENGINE_PID", "0") or 0)
        self.wake_r, self.wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self.sweep_grace = 2.0
        self.orphan_grace = 3.0
        self.ctl_open = True

    # -- wire -----------------------------------------------------------------------------

    def send(self, **msg: Any) -> None:
        if not self.ctl_open:
            return
        try:
            self.ctl.sendall(json.dumps(msg, separators=(",", ":")).encode() + b"\n")
        except OSError:
            self.ctl_open = False

    def read_message(self, timeout: float) -> dict[str, Any] | None:
        """The next control line; None on EOF or timeout."""
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            r, _, _ = select.select([self.ctl], [], [], left)
            if not r:
                continue
            chunk = self.ctl.recv(65536)
            if not chunk:
                return None
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        try:
            msg = json.loads(line)
        except ValueError:
            return {}
        return msg if isinstance(msg, dict) else {}

    # -- process tree ---------------------------------------------------------------------

    def others(self) -> list[int]:
        """Live members of our group and every descendant (escaped or not), except us."""
        table = _process_table()
        found = {
            pid
            for pid, (state, _ppid, pgrp) in table.items()
            if pgrp == self.pgid and pid != self.pid and state != "Z"
        }
        children: dict[int, list[int]] = {}
        for pid, (_state, ppid, _pgrp) in table.items():
            children.setdefault(ppid, []).append(pid)
        stack = list(children.get(self.pid, ()))
        while stack:
            pid = stack.pop()
            if table[pid][0] != "Z":
                found.add(pid)
            stack.extend(children.get(pid, ()))
        return sorted(found)

    def escaped(self) -> list[int]:
        return [p for p in self.others() if _pgrp(p) != self.pgid]

    def reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if pid == self.main_pid and self.main_status is None:
                self.main_status = status

    def signal_pids(self, pids: list[int], *signals: int) -> None:
        for pid in pids:
            for sig in signals:
                try:
                    os.kill(pid, sig)
                except OSError:
                    pass

    def wait_until_empty(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while True:
            self.reap()
            if not self.others():
                return True
            if time.monotonic() >= deadline:
                return False
            self.pause(_POLL)

    def pause(self, timeout: float) -> None:
        try:
            select.select([self.wake_r], [], [], timeout)
        except InterruptedError:
            pass
        self.drain_wakeups()

    def drain_wakeups(self) -> None:
        try:
            while os.read(self.wake_r, 4096):
                pass
        except OSError:
            pass

    # -- the run --------------------------------------------------------------------------

    def run(self) -> int:
        if self.pgid != self.pid:
            try:
                os.setpgid(0, 0)
                self.pgid = self.pid
            except OSError:
                self.send(ev="log", line="keeper: could not lead a process group")
        signal.set_wakeup_fd(self.wake_w, warn_on_full_buffer=False)
        for sig in _BASE_SIGNALS:
            signal.signal(sig, _noop)
        if self.supervisor_pid and os.getppid() != self.supervisor_pid:
            self.kill_group_and_exit()
        msg = self.read_message(timeout=30.0)
        if not msg or msg.get("op") != "run":
            # EOF before any work: the supervisor died during the spawn.
            return EXIT_SUPERVISOR_GONE
        if msg.get("supervisor_pid"):
            self.supervisor_pid = int(msg["supervisor_pid"])
        self.sweep_grace = float(msg.get("sweep_grace", self.sweep_grace))
        self.orphan_grace = float(msg.get("orphan_grace", self.orphan_grace))
        for signo in msg.get("catch_signals", ()):
            try:
                signal.signal(int(signo), _noop)
            except (OSError, ValueError):
                pass
        _set_subreaper(self)
        st = _proc_stat(self.pid)
        self.send(ev="hello", keeper_pid=self.pid, pgid=self.pgid, start_time=st[3] if st else None)
        code = self.spawn(msg)
        if code is not None:
            return code
        return self.watch()

    def spawn(self, msg: dict[str, Any]) -> int | None:
        pass_fds = tuple(int(fd) for fd in msg.get("pass_fds", ()))
        rlimits = msg.get("rlimits") or {}
        env = dict(os.environ)
        env.pop("III_KEEPER_FD", None)
        if "shell" in msg:
            argv = ["/bin/sh", "-c", str(msg["shell"])]
        else:
            argv = [str(a) for a in msg.get("argv", ())]
        nice = msg.get("nice")
        if nice is not None:
            self.set_nice(int(nice))
        signal.pthread_sigmask(signal.SIG_SETMASK, [])
        try:
            proc = subprocess.Popen(
                argv,
                env=env,
                close_fds=True,
                pass_fds=pass_fds,
                restore_signals=True,  # SIGPIPE, SIGXFSZ back to their defaults
                preexec_fn=_rlimit_setter(rlimits) if rlimits else None,  # single-threaded here
            )
        except OSError as exc:
            num = exc.errno or 0
            self.send(
                ev="exec_failed",
                errno=num,
                error=errno.errorcode.get(num, str(num)),
                path=exc.filename or (argv[0] if argv else ""),
                message=exc.strerror or str(exc),
            )
            return 127 if num == errno.ENOENT else 126
        finally:
            for fd in pass_fds:
                try:
                    os.close(fd)  # the worker holds them now; the bus link must EOF with it
                except OSError:
                    pass
        self.main_pid = proc.pid
        # The Popen object is never waited on: waitpid(-1) below reaps everything.
        proc.returncode = 0
        st = _proc_stat(proc.pid)
        self.send(ev="spawned", pid=proc.pid, start_time=st[3] if st else None)
        return None

    def set_nice(self, nice: int) -> None:
        """The keeper's own niceness, which the worker inherits at fork: set before the worker
        runs any code, and a refusal (a negative value without CAP_SYS_NICE) is reported
        rather than fatal, as the worker still runs, at the supervisor's priority."""
        try:
            os.setpriority(os.PRIO_PROCESS, 0, nice)
        except OSError as exc:
            current = os.getpriority(os.PRIO_PROCESS, 0)
            self.send(
                ev="log",
                line=f"keeper: nice {nice} refused ({exc.strerror}); the worker runs at nice "
                f"{current}: a negative nice needs root or CAP_SYS_NICE",
            )

    def watch(self) -> int:
        while True:
            self.reap()
            if self.main_status is not None:
                return self.finish()
            if _Flags.usr2:
                _Flags.usr2 = False
                if os.getppid() != self.supervisor_pid:
                    self.orphan_path()
            elif self.supervisor_pid and os.getppid() != self.supervisor_pid:
                self.orphan_path()
            readable: list[Any] = [self.wake_r]
            if self.ctl_open:
                readable.append(self.ctl)
            try:
                r, _, _ = select.select(readable, [], [], 1.0)
            except InterruptedError:
                r = []
            if self.wake_r in r:
                self.drain_wakeups()
            if self.ctl in r:
                self.read_control()

    def read_control(self) -> None:
        try:
            chunk = self.ctl.recv(65536)
        except OSError:
            chunk = b""
        if not chunk:
            self.ctl_open = False
            self.orphan_path()
        self.buf += chunk
        while b"\n" in self.buf:
            line, self.buf = self.buf.split(b"\n", 1)
            try:
                msg = json.loads(line)
            except ValueError:
                continue
            if isinstance(msg, dict) and msg.get("op") == "kill":
                self.kill_tree()

    def kill_tree(self) -> None:
        self.signal_pids(self.others(), signal.SIGKILL)

    def finish(self) -> int:
        """The main process has exited: sweep what it left behind, then report."""
        leftovers = self.others()
        if leftovers:
            self.signal_pids(leftovers, signal.SIGTERM, signal.SIGCONT)  # by pid: never killpg
            if not self.wait_until_empty(self.sweep_grace):
                self.signal_pids(self.others(), signal.SIGKILL)
                self.wait_until_empty(2.0)
        status = self.main_status or 0
        if os.WIFSIGNALED(status):
            sig = os.WTERMSIG(status)
            self.send(
                ev="exited", pid=self.main_pid, code=None, signal=sig, core=os.WCOREDUMP(status)
            )
            return 128 + sig
        code = os.WEXITSTATUS(status) if os.WIFEXITED(status) else 1
        self.send(ev="exited", pid=self.main_pid, code=code, signal=None, core=False)
        return code

    def orphan_path(self) -> None:
        """The supervisor is gone: TERM the tree, wait ``orphan_grace``, KILL it, with us."""
        escaped = self.escaped()
        for sig in (signal.SIGTERM, signal.SIGCONT):
            try:
                os.killpg(self.pgid, sig)  # our own no-op handler absorbs the SIGTERM
            except OSError:
                pass
        self.signal_pids(escaped, signal.SIGTERM, signal.SIGCONT)
        self.wait_until_empty(self.orphan_grace)
        self.signal_pids(self.escaped(), signal.SIGKILL)
        self.kill_group_and_exit()

    def kill_group_and_exit(self) -> None:
        try:
            os.killpg(self.pgid, signal.SIGKILL)  # ends the keeper as well
        except OSError:
            pass
        os._exit(EXIT_SUPERVISOR_GONE)


def _pgrp(pid: int) -> int | None:
    st = _proc_stat(pid)
    return st[2] if st else None


def _set_subreaper(keeper: Keeper) -> None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
            keeper.send(
                ev="log", line=f"keeper: PR_SET_CHILD_SUBREAPER failed: errno {ctypes.get_errno()}"
            )
    except (OSError, AttributeError) as exc:
        keeper.send(ev="log", line=f"keeper: no subreaper: {exc}")


def _rlimit_setter(rlimits: dict[str, Any]) -> Any:
    import resource

    def apply() -> None:
        nofile = rlimits.get("nofile")
        if nofile:
            n = int(nofile)
            _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
            soft = n if hard == resource.RLIM_INFINITY else min(n, hard)
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))

    return apply


def main() -> int:
    raw = os.environ.get("III_KEEPER_FD")
    if not raw:
        print(
            "keeper: III_KEEPER_FD is not set; the keeper is started by iii-supervisor",
            file=sys.stderr,
        )
        return 2
    ctl = socket.socket(fileno=int(raw))
    os.set_inheritable(ctl.fileno(), False)
    return Keeper(ctl).run()


if __name__ == "__main__":
    sys.exit(main())
