"""The transition table: every legal move, some illegal ones, and the supervisord names."""

from __future__ import annotations

import pytest

from supervisor.supervision.states import (
    SUPERVISORD_NAMES,
    TRANSITIONS,
    IllegalTransition,
    Trigger,
    WorkerState,
    transition,
)

S = WorkerState
T = Trigger


@pytest.mark.parametrize(
    ("start", "trigger", "end"),
    [
        (S.STOPPED, T.START, S.STARTING),
        (S.STARTING, T.READY, S.READY),
        (S.STARTING, T.END_RESTART, S.BACKOFF),
        (S.BACKOFF, T.TIMER, S.STARTING),
        (S.BACKOFF, T.STOP, S.STOPPED),
        (S.READY, T.KILL, S.STOPPING),
        (S.STOPPING, T.END_RESTART, S.BACKOFF),
        (S.STOPPING, T.STOPPED, S.STOPPED),
        (S.STOPPING, T.SPAWN, S.STARTING),
        (S.FAILED, T.RESET_FAILED, S.STOPPED),
        (S.FAILED, T.START, S.STARTING),
        (S.EXITED, T.START, S.STARTING),
        (S.STARTING, T.DEPENDENCY_FAILED, S.FAILED),
    ],
)
def test_legal_moves(start: WorkerState, trigger: Trigger, end: WorkerState) -> None:
    assert transition(start, trigger) is end


@pytest.mark.parametrize(
    ("start", "trigger"),
    [
        (S.STOPPED, T.READY),  # nothing runs, nothing can become ready
        (S.READY, T.TIMER),
        (S.BACKOFF, T.READY),
        (S.STOPPED, T.END_RESTART),
        (S.EXITED, T.RESET_FAILED),  # reset-failed is for failed only
        (S.READY, T.START),  # start of a ready worker is a no-op in the controller, not a move
    ],
)
def test_illegal_moves_raise(start: WorkerState, trigger: Trigger) -> None:
    with pytest.raises(IllegalTransition) as info:
        transition(start, trigger)
    assert start.value in str(info.value)


def test_every_state_is_reachable_and_leavable() -> None:
    targets = {to for to in TRANSITIONS.values()}
    sources = {frm for frm, _ in TRANSITIONS}
    assert targets == set(WorkerState)
    assert sources == set(WorkerState)


def test_supervisord_names_cover_every_state() -> None:
    assert set(SUPERVISORD_NAMES) == set(WorkerState)
    assert SUPERVISORD_NAMES[S.READY] == "RUNNING"
    assert SUPERVISORD_NAMES[S.FAILED] == "FATAL"
