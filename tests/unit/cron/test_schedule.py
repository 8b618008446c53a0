"""The scheduler's rules on explicit time (actors.cron.schedule): next tick, no overlap, skipped
ticks after a long run, one catch-up at most, and the restart rule."""

from __future__ import annotations

import datetime as dt

from actors.cron.expression import parse_expression
from actors.cron.schedule import CATCH_UP_WINDOW, CronSchedule, Fire

T0 = int(dt.datetime(2026, 1, 1, 12, 0, 0, tzinfo=dt.UTC).timestamp())
EVERY_SECOND = parse_expression("* * * * * *")
EVERY_MINUTE = parse_expression("0 * * * * *")


def ticks(fires: list[Fire]) -> list[int]:
    return [f.tick - T0 for f in fires]


def test_a_new_job_waits_for_the_first_fire_time_after_now() -> None:
    schedule = CronSchedule()
    assert schedule.add("a", EVERY_SECOND, T0 + 0.5) == T0 + 1
    assert schedule.add("b", EVERY_MINUTE, T0) == T0 + 60  # strictly after
    assert schedule.next_wake() == T0 + 1
    assert schedule.due(T0 + 0.999) == []
    assert schedule.due(T0 + 1) == [Fire("a", T0 + 1)]
    assert schedule.next_wake() == T0 + 60  # "a" is running: it waits for nothing
    assert schedule.done("a", T0 + 1.01) == T0 + 2
    assert schedule.next_wake() == T0 + 2


def test_runs_never_overlap_and_a_long_run_skips_the_ticks_it_outlasts() -> None:
    schedule = CronSchedule()
    schedule.add("a", EVERY_SECOND, T0)
    assert ticks(schedule.due(T0 + 1)) == [1]
    assert schedule.due(T0 + 2) == []  # still running at its next tick
    assert schedule.due(T0 + 3) == []
    assert schedule.done("a", T0 + 3.5) == T0 + 4  # no catch-up of 2 and 3 (§8.3)
    assert ticks(schedule.due(T0 + 4)) == [4]


def test_one_look_fires_once_however_many_ticks_came() -> None:
    # The process was suspended for 12 s: one fire, the latest tick, marked late.
    schedule = CronSchedule()
    schedule.add("a", EVERY_SECOND, T0)
    assert schedule.due(T0 + 12.4) == [Fire("a", T0 + 12, late=True)]
    assert schedule.done("a", T0 + 12.5) == T0 + 13


def test_a_tick_older_than_the_window_is_not_fired() -> None:
    schedule = CronSchedule()
    schedule.add("a", EVERY_MINUTE, T0)
    # Looked at 45 s after its tick (12:01:00): too old; the next one is 12:02:00.
    assert schedule.due(T0 + 105) == []
    assert schedule.pending("a") == T0 + 120
    assert ticks(schedule.due(T0 + 120)) == [120]


def test_restart_resumes_after_the_recorded_tick_without_repeating_it() -> None:
    # Fired 12:00:10, down for 0.6 s: the next tick is 11, nothing fires twice or is lost.
    schedule = CronSchedule()
    assert schedule.add("a", EVERY_SECOND, T0 + 10.6, last_fired=T0 + 10) == T0 + 11
    assert schedule.due(T0 + 10.6) == []
    assert ticks(schedule.due(T0 + 11)) == [11]


def test_restart_fires_at_most_one_catch_up_tick_the_latest() -> None:
    # Down from 12:00:10.3 to 12:00:12.7: ticks 11 and 12 came; only 12 fires, at once.
    schedule = CronSchedule()
    schedule.add("a", EVERY_SECOND, T0 + 12.7, last_fired=T0 + 10)
    assert schedule.due(T0 + 12.7) == [Fire("a", T0 + 12, late=True)]
    assert schedule.done("a", T0 + 12.8) == T0 + 13


def test_restart_of_a_slower_schedule_loses_no_tick() -> None:
    # A minute schedule, down 20 s across 12:01:00: that tick fires on start, late.
    schedule = CronSchedule()
    schedule.add("a", EVERY_MINUTE, T0 + 75, last_fired=T0)
    assert schedule.due(T0 + 75) == [Fire("a", T0 + 60, late=True)]
    assert schedule.done("a", T0 + 75.1) == T0 + 120


def test_restart_after_a_long_outage_fires_nothing_missed() -> None:
    daily = parse_expression("0 0 9 * * *")
    schedule = CronSchedule()
    nine = T0 - 3 * 3600  # 09:00 today; down since yesterday 09:00, back at 12:00
    schedule.add("a", daily, T0, last_fired=nine - 86400)
    assert schedule.due(T0) == []
    assert schedule.pending("a") == nine + 86400
    # Just inside the window it would have fired.
    schedule.add("b", daily, nine + CATCH_UP_WINDOW, last_fired=nine - 86400)
    assert ticks(schedule.due(nine + CATCH_UP_WINDOW)) == [nine - T0]


def test_without_a_record_missed_ticks_are_not_replayed() -> None:
    schedule = CronSchedule()
    assert schedule.add("a", EVERY_MINUTE, T0 + 75) == T0 + 120
    assert schedule.due(T0 + 75) == []


def test_a_recorded_tick_never_fires_again_even_if_the_clock_steps_back() -> None:
    schedule = CronSchedule()
    assert schedule.add("a", EVERY_SECOND, T0 + 5, last_fired=T0 + 10) == T0 + 11
    schedule.add("b", EVERY_SECOND, T0)
    assert ticks(schedule.due(T0 + 1)) == [1]
    assert schedule.done("b", T0 - 30) == T0 + 2  # after the fired tick, not after "now"


def test_jobs_due_at_the_same_tick_fire_together() -> None:
    schedule = CronSchedule()
    schedule.add("a", EVERY_SECOND, T0)
    schedule.add("b", parse_expression("*/2 * * * * *"), T0)
    assert ticks(schedule.due(T0 + 1)) == [1]
    schedule.done("a", T0 + 1)
    assert sorted(f.job_id for f in schedule.due(T0 + 2)) == ["a", "b"]


def test_a_schedule_with_no_fire_time_left_waits_for_nothing() -> None:
    schedule = CronSchedule()
    assert schedule.add("a", parse_expression("0 0 0 30 2 *"), T0) is None
    assert schedule.add("b", parse_expression("* * * * * * 2020"), T0) is None
    assert schedule.next_wake() is None and schedule.due(T0 + 10**6) == []


def test_removing_a_job_drops_its_ticks_and_ignores_its_run_ending() -> None:
    schedule = CronSchedule()
    schedule.add("a", EVERY_SECOND, T0)
    schedule.add("b", EVERY_MINUTE, T0)
    assert ticks(schedule.due(T0 + 1)) == [1]
    assert schedule.remove("a") and not schedule.remove("a")
    assert schedule.done("a", T0 + 1.5) is None
    assert schedule.next_wake() == T0 + 60 and "a" not in schedule and len(schedule) == 1


def test_a_job_cannot_be_added_twice() -> None:
    schedule = CronSchedule()
    schedule.add("a", EVERY_SECOND, T0)
    try:
        schedule.add("a", EVERY_SECOND, T0)
    except KeyError as exc:
        assert "already scheduled" in str(exc)
    else:
        raise AssertionError("added twice")


def test_a_day_of_minutes_on_explicit_time_is_exact() -> None:
    schedule = CronSchedule()
    schedule.add("a", EVERY_MINUTE, T0)
    fired: list[int] = []
    now = float(T0)
    while (wake := schedule.next_wake()) is not None and wake <= T0 + 86400:
        now = float(wake)
        for fire in schedule.due(now):
            fired.append(fire.tick)
            schedule.done(fire.job_id, now + 0.01)
    assert fired == [T0 + 60 * i for i in range(1, 1441)]
