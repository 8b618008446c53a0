"""Restart policy: classify a worker's end and decide restart, exit or fail — no I/O, no clock.

Callers pass the monotonic time in (``now``), so tests drive it with plain numbers or trio's
``MockClock``. The rules are SUPERVISOR.md §5.2–§5.4:

* An end caused by ``health_timeout``, ``start_timeout``, ``memory_limit`` or ``spawn_error``
  is a failure whatever the exit status; otherwise it is clean when its code is in
  ``success_exit_codes`` or its signal in ``success_signals``. Stricter than systemd on
  purpose: an unexplained SIGTERM of a long-running service is worth knowing about.
* ``spawn_error`` and a ``restart_prevent_exit_codes`` exit (126/127 by default) while
  still starting are never retried: a missing binary does not fix itself.
* ``never``: clean → exited, failure → failed. ``on-failure``: clean → exited.
  ``always``: every end is restarted, subject to intensity.
* Intensity (OTP's ``intensity``/``period``): the automatic restarts begun within the last
  ``restart_window`` seconds; at ``max_restarts`` the next end is ``RESTART_INTENSITY``.
* Backoff before restart ``n``: ``min(max, initial·multiplier^(n−1))`` drawn uniformly within
  ``±jitter`` (so that N workers killed together do not restart in lockstep, the
  supervisord complaint). ``n`` goes back to 0 once the worker has been ready for
  ``reset_after`` seconds, as upstream's respawn loop and Kubernetes' CrashLoopBackOff do.
"""

from __future__ import annotations

import collections
import enum
import random
import signal

import attrs

from supervisor.config.model import Backoff, RestartMode, SuperviseSpec
from supervisor.supervision.states import EndCause, ErrorCode

__all__ = [
    "ExitStatus",
    "End",
    "Verdict",
    "Decision",
    "RestartPolicy",
    "backoff_delay",
    "backoff_bounds",
    "signal_name",
    "describe_exit",
]

# Causes that are failures whatever status the process died with (§5.2).
_ALWAYS_FAILURE = frozenset(
    {
        EndCause.HEALTH_TIMEOUT,
        EndCause.START_TIMEOUT,
        EndCause.MEMORY_LIMIT,
        EndCause.SPAWN_ERROR,
    }
)

_CAUSE_CODES = {
    EndCause.HEALTH_TIMEOUT: ErrorCode.HEALTH_TIMEOUT,
    EndCause.START_TIMEOUT: ErrorCode.START_TIMEOUT,
    EndCause.MEMORY_LIMIT: ErrorCode.MEMORY_LIMIT,
    EndCause.SPAWN_ERROR: ErrorCode.SPAWN_FAILED,
    EndCause.KILLED: ErrorCode.WORKER_KILLED,
}

# Exit codes with a dedicated error code when they end a worker before it is ready (POSIX
# shells use 127 for "not found" and 126 for "found but not executable").
_PREVENT_CODES = {
    127: ErrorCode.START_COMMAND_NOT_FOUND,
    126: ErrorCode.START_COMMAND_NOT_EXECUTABLE,
}


def signal_name(signo: int | None) -> str | None:
    if signo is None:
        return None
    try:
        return signal.Signals(signo).name
    except ValueError:
        return f"SIG{signo}"


@attrs.frozen
class ExitStatus:
    """How a worker process ended: an exit ``code`` or a ``signal`` (never both)."""

    code: int | None = None
    signal: int | None = None
    core: bool = False

    @classmethod
    def from_returncode(cls, returncode: int) -> ExitStatus:
        """From a ``subprocess``-style return code (negative for a signal)."""
        if returncode < 0:
            return cls(signal=-returncode)
        return cls(code=returncode)


def describe_exit(status: ExitStatus | None) -> str:
    if status is None:
        return "did not start"
    if status.signal is not None:
        core = " (core dumped)" if status.core else ""
        return f"killed by {signal_name(status.signal)}{core}"
    return f"exit {status.code}"


@attrs.frozen
class End:
    """One end of a worker process, as the controller observed it."""

    cause: EndCause
    status: ExitStatus | None = None  # None when nothing ran (spawn_error)
    before_ready: bool = False


class Verdict(enum.Enum):
    RESTART = "restart"  # → backoff, then starting
    EXIT = "exit"  # → exited
    FAIL = "fail"  # → failed


@attrs.frozen
class Decision:
    verdict: Verdict
    clean: bool
    delay: float | None = None  # seconds of backoff, for RESTART
    error_code: ErrorCode | None = None
    detail: str | None = None  # human text for last_error.message (no worker name)
    escalate: bool = False  # a critical worker failed: the supervisor must shut down (69)


def backoff_bounds(backoff: Backoff, n: int) -> tuple[float, float]:
    """The interval the delay before restart ``n`` (1-based) is drawn from."""
    n = max(1, n)
    # Compare exponents rather than computing a huge power: n can grow without bound in a
    # slow crash loop that never trips intensity.
    base = backoff.initial
    for _ in range(n - 1):
        base *= backoff.multiplier
        if base >= backoff.max:
            break
    d = min(backoff.max, base)
    return d * (1.0 - backoff.jitter), d * (1.0 + backoff.jitter)


def backoff_delay(backoff: Backoff, n: int, rng: random.Random) -> float:
    low, high = backoff_bounds(backoff, n)
    if low == high:
        return low
    return rng.uniform(low, high)


class RestartPolicy:
    """Per-worker restart bookkeeping: intensity window, backoff counter, stability."""

    def __init__(self, spec: SuperviseSpec, rng: random.Random | None = None) -> None:
        self.spec = spec
        self.rng = rng if rng is not None else random.Random()
        self.consecutive = 0  # backoff exponent: automatic restarts since last stable
        self.total_restarts = 0  # automatic restarts since the supervisor started
        self._restarts: collections.deque[float] = collections.deque()  # start times
        self._spawns: collections.deque[float] = collections.deque()
        self._ready_since: float | None = None

    # -- observations ---------------------------------------------------------------------

    def on_spawn(self, now: float) -> None:
        self._spawns.append(now)
        self._prune(now)

    def on_ready(self, now: float) -> None:
        self._ready_since = now

    def reset(self) -> None:
        """An operator start/restart/reset-failed: counters cleared (§13.3)."""
        self.consecutive = 0
        self._restarts.clear()
        self._spawns.clear()
        self._ready_since = None

    # -- queries --------------------------------------------------------------------------

    def stable(self, now: float) -> bool:
        return (
            self._ready_since is not None
            and now - self._ready_since >= self.spec.backoff.reset_after
        )

    def consecutive_failures(self, now: float) -> int:
        return 0 if self.stable(now) else self.consecutive

    def restarts_in_window(self, now: float) -> int:
        self._prune(now)
        return len(self._restarts)

    def is_clean(self, end: End) -> bool:
        if end.cause is EndCause.REQUESTED:
            return True
        if end.cause in _ALWAYS_FAILURE or end.status is None:
            return False
        if end.status.signal is not None:
            return end.status.signal in self.spec.success_signals
        return end.status.code in self.spec.success_exit_codes

    # -- the decision ---------------------------------------------------------------------

    def decide(self, end: End, now: float) -> Decision:
        """What to do after an end that was not requested (§5.3)."""
        spec = self.spec
        clean = self.is_clean(end)
        was_stable = self.stable(now)
        self._ready_since = None
        code, detail = self._error_for(end, clean)

        # 1. Failures that must not be retried.
        if end.cause is EndCause.SPAWN_ERROR:
            return self._fail(clean, code, detail)
        status = end.status
        if (
            end.before_ready
            and end.cause is EndCause.EXITED
            and status is not None
            and status.code is not None
            and status.code in spec.restart_prevent_exit_codes
        ):
            code = _PREVENT_CODES.get(status.code, ErrorCode.EXITED_BEFORE_READY)
            return self._fail(False, code, f"{detail}; not retried (restart_prevent_exit_codes)")

        # 2. The restart mode.
        if spec.restart is RestartMode.NEVER:
            if clean:
                return Decision(Verdict.EXIT, clean=True, error_code=code, detail=detail)
            return self._fail(clean, code, detail)
        if spec.restart is RestartMode.ON_FAILURE and clean:
            return Decision(Verdict.EXIT, clean=True, error_code=code, detail=detail)

        # 3. Intensity over a sliding window on the monotonic clock.
        self._prune(now)
        if len(self._restarts) >= spec.max_restarts:
            ends = len(self._restarts) + 1
            first = self._spawns[0] if self._spawns else now
            why = f"{ends} ends in {now - first:.1f}s, limit {spec.max_restarts} restarts per {_fmt_seconds(spec.restart_window)}"
            last = f" (last: {detail})" if detail else ""
            return self._fail(clean, ErrorCode.RESTART_INTENSITY, why + last)

        if was_stable:
            self.consecutive = 0
        self.consecutive += 1
        delay = backoff_delay(spec.backoff, self.consecutive, self.rng)
        self._restarts.append(now + delay)
        self.total_restarts += 1
        return Decision(Verdict.RESTART, clean=clean, delay=delay, error_code=code, detail=detail)

    # -- helpers --------------------------------------------------------------------------

    def _fail(self, clean: bool, code: ErrorCode | None, detail: str | None) -> Decision:
        return Decision(
            Verdict.FAIL,
            clean=clean,
            error_code=code,
            detail=detail,
            escalate=self.spec.critical,
        )

    def _error_for(self, end: End, clean: bool) -> tuple[ErrorCode | None, str | None]:
        what = describe_exit(end.status)
        if clean:
            return None, what
        if end.cause in _CAUSE_CODES:
            code = _CAUSE_CODES[end.cause]
            if end.cause is EndCause.KILLED:
                return code, f"{what} (not sent by the supervisor)"
            return code, f"{end.cause.value.replace('_', ' ')}; {what}"
        if end.before_ready:
            return ErrorCode.EXITED_BEFORE_READY, f"{what} before it was ready"
        return ErrorCode.WORKER_EXITED, what

    def _prune(self, now: float) -> None:
        horizon = now - self.spec.restart_window
        while self._restarts and self._restarts[0] < horizon:
            self._restarts.popleft()
        while self._spawns and self._spawns[0] < horizon:
            self._spawns.popleft()


def _fmt_seconds(value: float) -> str:
    return f"{value:g}s"
