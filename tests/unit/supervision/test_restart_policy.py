"""RestartPolicy: backoff growth, jitter bounds, reset, intensity window, modes, 126/127.

Time is a plain number (the policy takes ``now``), advanced by trio's MockClock where a
test sleeps: no real sleeps anywhere.
"""

from __future__ import annotations

import random
import signal

import pytest
import trio

from supervisor.config.model import Backoff, RestartMode, SuperviseSpec
from supervisor.supervision.restart import (
    End,
    ExitStatus,
    RestartPolicy,
    Verdict,
    backoff_bounds,
    backoff_delay,
)
from supervisor.supervision.states import EndCause, ErrorCode

NO_JITTER = Backoff(initial=0.5, max=30.0, multiplier=2.0, jitter=0.0, reset_after=60.0)


def crash(code: int = 1, *, before_ready: bool = False) -> End:
    return End(EndCause.EXITED, ExitStatus(code=code), before_ready=before_ready)


def policy(**kw: object) -> RestartPolicy:
    kw.setdefault("backoff", NO_JITTER)
    return RestartPolicy(SuperviseSpec(**kw), random.Random(7))  # type: ignore[arg-type]


def test_backoff_grows_exponentially_to_the_cap() -> None:
    delays = [backoff_bounds(Backoff(jitter=0.0), n)[0] for n in range(1, 10)]
    assert delays == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0]


def test_backoff_survives_a_huge_exponent() -> None:
    assert backoff_bounds(Backoff(jitter=0.0), 10_000) == (30.0, 30.0)


def test_jitter_stays_within_twenty_percent_and_spreads() -> None:
    rng = random.Random(1)
    backoff = Backoff()  # ±20 %
    for n in (1, 3, 8):
        low, high = backoff_bounds(backoff, n)
        samples = [backoff_delay(backoff, n, rng) for _ in range(500)]
        assert all(low <= s <= high for s in samples)
        assert max(samples) - min(samples) > (high - low) * 0.8  # not in lockstep
    assert backoff_bounds(backoff, 1) == pytest.approx((0.4, 0.6))


def test_injected_rng_makes_delays_reproducible() -> None:
    a = [backoff_delay(Backoff(), n, random.Random(42)) for n in range(1, 6)]
    b = [backoff_delay(Backoff(), n, random.Random(42)) for n in range(1, 6)]
    assert a == b


def test_default_crash_loop_timeline_matches_the_spec() -> None:
    """0.5, 1, 2, 4, 8 s of backoff; the sixth end (~15.7 s after the first start) fails."""
    p = policy()
    now = 0.0
    delays = []
    for _ in range(5):
        p.on_spawn(now)
        now += 0.05  # the process runs for 50 ms
        d = p.decide(crash(before_ready=True), now)
        assert d.verdict is Verdict.RESTART
        delays.append(d.delay)
        now += d.delay  # type: ignore[operator]
    assert delays == [0.5, 1.0, 2.0, 4.0, 8.0]
    p.on_spawn(now)
    now += 0.05
    final = p.decide(crash(before_ready=True), now)
    assert final.verdict is Verdict.FAIL
    assert final.error_code is ErrorCode.RESTART_INTENSITY
    assert "6 ends in 15.8s" in (final.detail or "")
    assert "limit 5 restarts per 60s" in (final.detail or "")


async def test_intensity_window_slides_on_the_clock(autojump_clock: trio.testing.MockClock) -> None:
    """A slow crash loop (one end every 20 s) is throttled, never abandoned."""
    p = policy(max_restarts=3, restart_window=30.0)
    for _ in range(10):
        p.on_spawn(trio.current_time())
        await trio.sleep(20.0)
        d = p.decide(crash(), trio.current_time())
        assert d.verdict is Verdict.RESTART
        await trio.sleep(d.delay or 0)
    assert p.total_restarts == 10


async def test_intensity_counts_restarts_within_the_window(
    autojump_clock: trio.testing.MockClock,
) -> None:
    p = policy(max_restarts=2, restart_window=10.0)
    verdicts = []
    for _ in range(3):
        p.on_spawn(trio.current_time())
        await trio.sleep(0.1)
        d = p.decide(crash(), trio.current_time())
        verdicts.append(d.verdict)
        await trio.sleep(d.delay or 0)
    assert verdicts == [Verdict.RESTART, Verdict.RESTART, Verdict.FAIL]


async def test_backoff_resets_after_stable_readiness(
    autojump_clock: trio.testing.MockClock,
) -> None:
    p = policy()
    for expected in (0.5, 1.0, 2.0):
        p.on_spawn(trio.current_time())
        d = p.decide(crash(), trio.current_time())
        assert d.delay == expected
        await trio.sleep(d.delay or 0)
    p.on_spawn(trio.current_time())
    p.on_ready(trio.current_time())
    await trio.sleep(59.0)
    assert not p.stable(trio.current_time())
    assert p.consecutive_failures(trio.current_time()) == 3
    await trio.sleep(1.5)
    assert p.stable(trio.current_time())
    assert p.consecutive_failures(trio.current_time()) == 0
    d = p.decide(crash(), trio.current_time())
    assert d.delay == 0.5  # the initial delay again, not a grown one


def test_ready_for_less_than_reset_after_keeps_growing() -> None:
    p = policy()
    p.decide(crash(), 0.0)
    p.on_ready(1.0)
    d = p.decide(crash(), 30.0)
    assert d.delay == 1.0


@pytest.mark.parametrize(
    ("code", "error"),
    [(127, ErrorCode.START_COMMAND_NOT_FOUND), (126, ErrorCode.START_COMMAND_NOT_EXECUTABLE)],
)
def test_126_and_127_before_ready_are_never_retried(code: int, error: ErrorCode) -> None:
    d = policy().decide(crash(code, before_ready=True), 0.0)
    assert d.verdict is Verdict.FAIL
    assert d.error_code is error
    assert d.delay is None


def test_127_after_ready_is_an_ordinary_failure() -> None:
    d = policy().decide(crash(127, before_ready=False), 0.0)
    assert d.verdict is Verdict.RESTART
    assert d.error_code is ErrorCode.WORKER_EXITED


def test_spawn_error_is_never_retried() -> None:
    d = policy().decide(End(EndCause.SPAWN_ERROR, None, before_ready=True), 0.0)
    assert d.verdict is Verdict.FAIL
    assert d.error_code is ErrorCode.SPAWN_FAILED


def test_never_mode() -> None:
    p = policy(restart=RestartMode.NEVER)
    assert p.decide(crash(0), 0.0).verdict is Verdict.EXIT
    failed = p.decide(crash(3), 1.0)
    assert failed.verdict is Verdict.FAIL
    assert failed.error_code is ErrorCode.WORKER_EXITED


def test_on_failure_mode() -> None:
    p = policy(restart=RestartMode.ON_FAILURE)
    clean = p.decide(crash(0, before_ready=True), 0.0)
    assert clean.verdict is Verdict.EXIT
    assert clean.clean and clean.error_code is None
    assert p.decide(crash(2), 1.0).verdict is Verdict.RESTART


def test_always_restarts_clean_exits_too() -> None:
    d = policy().decide(crash(0), 0.0)
    assert d.verdict is Verdict.RESTART
    assert d.clean and d.error_code is None


def test_health_timeout_is_a_failure_even_with_exit_zero() -> None:
    p = policy(restart=RestartMode.ON_FAILURE)
    d = p.decide(End(EndCause.HEALTH_TIMEOUT, ExitStatus(code=0)), 0.0)
    assert not d.clean
    assert d.verdict is Verdict.RESTART
    assert d.error_code is ErrorCode.HEALTH_TIMEOUT


def test_unexplained_signal_is_a_failure_unless_listed() -> None:
    killed = End(EndCause.KILLED, ExitStatus(signal=signal.SIGTERM))
    d = policy(restart=RestartMode.ON_FAILURE).decide(killed, 0.0)
    assert d.verdict is Verdict.RESTART and d.error_code is ErrorCode.WORKER_KILLED
    ok = policy(restart=RestartMode.ON_FAILURE, success_signals=(signal.SIGTERM,)).decide(
        killed, 0.0
    )
    assert ok.verdict is Verdict.EXIT and ok.clean


def test_custom_success_exit_codes() -> None:
    p = policy(restart=RestartMode.ON_FAILURE, success_exit_codes=(0, 3))
    assert p.decide(crash(3), 0.0).verdict is Verdict.EXIT


def test_critical_failure_escalates() -> None:
    d = policy(critical=True, restart=RestartMode.NEVER).decide(crash(1), 0.0)
    assert d.verdict is Verdict.FAIL and d.escalate
    assert not policy(critical=True).decide(crash(1), 0.0).escalate  # restarting: not yet


def test_operator_reset_clears_counters() -> None:
    p = policy(max_restarts=1)
    p.decide(crash(), 0.0)
    p.reset()
    assert p.restarts_in_window(0.1) == 0
    assert p.decide(crash(), 0.2).verdict is Verdict.RESTART
