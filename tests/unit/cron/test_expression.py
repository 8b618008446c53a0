"""iii's cron expressions (WORKERS.md §8.3): the Rust crate's grammar, its Quartz day-of-week
numbering, and the croniter translation checked against plain set membership."""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Iterator

import pytest

from actors.cron.expression import CronExpression, CronExpressionError, parse_expression

UTC = dt.UTC
START = dt.datetime(2026, 1, 1, tzinfo=UTC)  # a Thursday


def at(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0
) -> dt.datetime:
    return dt.datetime(year, month, day, hour, minute, second, tzinfo=UTC)


def upcoming(expr: str | CronExpression, start: dt.datetime = START, n: int = 5) -> list[str]:
    parsed = parse_expression(expr) if isinstance(expr, str) else expr
    out: list[str] = []
    moment = start
    for _ in range(n):
        found = parsed.next_after(moment)
        assert found is not None, f"{parsed.source} stopped after {out}"
        out.append(found.strftime("%Y-%m-%d %a %H:%M:%S"))
        moment = found
    return out


def refused(expr: str) -> str:
    with pytest.raises(CronExpressionError) as info:
        parse_expression(expr)
    assert str(info.value) == f"Invalid cron expression '{expr}': {info.value.reason}"
    return info.value.reason


# -- the fields and their order ------------------------------------------------------------


def test_seconds_come_first() -> None:
    assert upcoming("30 * * * * *", n=3) == [
        "2026-01-01 Thu 00:00:30",
        "2026-01-01 Thu 00:01:30",
        "2026-01-01 Thu 00:02:30",
    ]
    assert upcoming("* * * * * *", n=2) == ["2026-01-01 Thu 00:00:01", "2026-01-01 Thu 00:00:02"]
    assert upcoming("0 15 10 * * *", n=2) == [
        "2026-01-01 Thu 10:15:00",
        "2026-01-02 Fri 10:15:00",
    ]


def test_seconds_lists_ranges_and_steps() -> None:
    assert upcoming("0,20,40 * * * * *", n=3)[-1] == "2026-01-01 Thu 00:01:00"
    assert upcoming("*/15 * * * * *", n=4) == [
        "2026-01-01 Thu 00:00:15",
        "2026-01-01 Thu 00:00:30",
        "2026-01-01 Thu 00:00:45",
        "2026-01-01 Thu 00:01:00",
    ]
    # A number before the step runs to the field's maximum: 10, 25, 40, 55.
    assert [t[-2:] for t in upcoming("10/15 * * * * *", n=5)] == ["10", "25", "40", "55", "10"]
    assert [t[-2:] for t in upcoming("1-10/3 * * * * *", n=5)] == ["01", "04", "07", "10", "01"]
    assert [t[-2:] for t in upcoming("0-5,58 * * * * *", n=8)][5:] == ["58", "00", "01"]


def test_the_optional_year_field() -> None:
    assert upcoming("0 0 0 1 1 * 2027-2029", n=3) == [
        "2027-01-01 Fri 00:00:00",
        "2028-01-01 Sat 00:00:00",
        "2029-01-01 Mon 00:00:00",
    ]
    last = parse_expression("0 0 0 1 1 * 2027-2029")
    assert last.next_after(at(2029, 1, 1)) is None  # no year left
    assert upcoming("0 0 12 * * * */2", start=at(2027, 12, 31), n=1) == ["2028-01-01 Sat 12:00:00"]
    assert parse_expression("* * * * * * 1999").next_after(START) is None
    # croniter stops at 2099: the crate's last year is accepted and never fires.
    assert parse_expression("0 0 0 1 1 * 2100").next_after(START) is None
    assert parse_expression("0 0 0 1 1 * 2099,2100").next_after(START) == at(2099, 1, 1)
    assert parse_expression("* * * * * *").years is None
    assert parse_expression("* * * * * * *") == parse_expression("* * * * * *")
    assert parse_expression("* * * * * * 1970-2100").years is None


def test_whitespace_between_fields_is_free() -> None:
    assert upcoming("  0   0\t12 * * *  ", n=1) == ["2026-01-01 Thu 12:00:00"]


def test_shorthands() -> None:
    assert upcoming("@yearly", n=1) == ["2027-01-01 Fri 00:00:00"]
    assert upcoming("@monthly", n=1) == ["2026-02-01 Sun 00:00:00"]
    assert upcoming("@weekly", n=2) == ["2026-01-04 Sun 00:00:00", "2026-01-11 Sun 00:00:00"]
    assert upcoming("@daily", n=1) == ["2026-01-02 Fri 00:00:00"]
    assert upcoming("@hourly", n=1) == ["2026-01-01 Thu 01:00:00"]
    assert refused("@midnight").startswith("expected 6 or 7 fields")


# -- names ---------------------------------------------------------------------------------


def test_month_names_any_case_and_long_forms() -> None:
    a = parse_expression("0 0 0 1 JAN,mar,December *")
    assert a.months == frozenset({1, 3, 12})
    assert parse_expression("0 0 0 1 Feb-Apr *").months == frozenset({2, 3, 4})
    assert parse_expression("0 0 0 1 january-june/2 *").months == frozenset({1, 3, 5})
    assert parse_expression("0 0 0 1 SEPTEMBER *").months == frozenset({9})
    assert refused("0 0 0 1 Sept *") == "Months: 'Sept' is not a valid month"


def test_day_names_any_case_and_long_forms() -> None:
    assert parse_expression("0 0 0 * * SUN").days_of_week == frozenset({1})
    assert parse_expression("0 0 0 * * Mon-Fri").days_of_week == frozenset({2, 3, 4, 5, 6})
    assert parse_expression("0 0 0 * * tues,THURS,saturday").days_of_week == frozenset({3, 5, 7})
    assert parse_expression("0 0 0 * * MON-FRI/2").days_of_week == frozenset({2, 4, 6})
    assert upcoming("0 0 9 * * Mon-Fri", n=3) == [
        "2026-01-01 Thu 09:00:00",
        "2026-01-02 Fri 09:00:00",
        "2026-01-05 Mon 09:00:00",
    ]


def test_names_only_where_the_field_has_them() -> None:
    assert refused("0 0 0 * MON *") == "Months: 'MON' is not a valid month"
    assert refused("0 0 0 * * JAN") == "Days of Week: 'JAN' is not a valid day of the week"
    assert refused("0 0 noon * * *") == "Hours: names are not allowed in this field ('noon')"
    assert refused("0 0 0 * * Wed/2").startswith("Days of Week: a step needs a range or '*'")
    assert refused("0 0 0 * * 2-FRI") == (
        "Days of Week: invalid range '2-FRI': use two numbers or two names"
    )


# -- day of week: 1 = Sunday ---------------------------------------------------------------


def test_day_of_week_is_one_based_with_sunday_first() -> None:
    # 2026-01-04 is a Sunday, 2026-01-10 a Saturday.
    assert upcoming("0 0 0 * * 1", n=1) == ["2026-01-04 Sun 00:00:00"]
    assert upcoming("0 0 0 * * 2", n=1) == ["2026-01-05 Mon 00:00:00"]
    assert upcoming("0 0 0 * * 7", n=1) == ["2026-01-03 Sat 00:00:00"]
    # 1-5 is Sunday to Thursday, not Monday to Friday.
    days = [t[11:14] for t in upcoming("0 0 0 * * 1-5", n=7)]
    assert days == ["Sun", "Mon", "Tue", "Wed", "Thu", "Sun", "Mon"]
    assert parse_expression("0 0 0 * * 1-7").days_of_week is None
    assert parse_expression("0 0 0 * * SUN-SAT").days_of_week is None
    assert parse_expression("0 0 0 * * */2").days_of_week == frozenset(
        {1, 3, 5, 7}
    )  # Sun Tue Thu Sat


def test_day_of_week_zero_is_out_of_range() -> None:
    reason = refused("0 0 0 * * 0")
    assert reason.startswith("Days of Week: 0 is out of range 1-7 (1 = Sunday ... 7 = Saturday")
    assert refused("0 0 0 * * 0-4").startswith("Days of Week: 0 is out of range 1-7")
    assert refused("0 0 0 * * 8").startswith("Days of Week: 8 is out of range 1-7")


def test_a_day_of_week_range_cannot_wrap_past_saturday() -> None:
    assert refused("0 0 0 * * SAT-SUN") == (
        "Days of Week: invalid range 'SAT-SUN': it runs backwards "
        "(a day-of-week range cannot wrap past Saturday: write SAT,SUN)"
    )
    assert refused("0 0 0 * * FRI-MON").startswith("Days of Week: invalid range 'FRI-MON'")
    assert refused("0 0 0 * * 7-1").startswith("Days of Week: invalid range '7-1'")
    weekend = parse_expression("0 0 0 * * SAT,SUN")
    assert weekend.days_of_week == frozenset({7, 1})
    assert [t[11:14] for t in upcoming(weekend, n=4)] == ["Sat", "Sun", "Sat", "Sun"]
    # A wrap written as a list with ranges works: Friday to Monday.
    assert parse_expression("0 0 0 * * FRI-SAT,SUN-MON").days_of_week == frozenset({6, 7, 1, 2})


def test_day_of_month_and_day_of_week_must_both_match() -> None:
    # Classic cron would fire on every 13th and every Friday; the crate wants both.
    assert upcoming("0 0 0 13 * FRI", n=3) == [
        "2026-02-13 Fri 00:00:00",
        "2026-03-13 Fri 00:00:00",
        "2026-11-13 Fri 00:00:00",
    ]
    assert upcoming("0 0 0 1-7 * MON", n=2) == [  # the first Monday of each month
        "2026-01-05 Mon 00:00:00",
        "2026-02-02 Mon 00:00:00",
    ]


def test_question_mark_means_every_value_in_the_day_fields_only() -> None:
    assert parse_expression("0 0 0 ? * MON") == parse_expression("0 0 0 * * MON")
    assert parse_expression("0 0 0 1 * ?") == parse_expression("0 0 0 1 * *")
    assert parse_expression("0 0 0 ?/10 * *").days_of_month == frozenset({1, 11, 21, 31})
    for expr in ("? * * * * *", "* ? * * * *", "* * ? * * *", "* * * * ? *", "* * * * * * ?"):
        assert "'?' is only allowed" in refused(expr)


def test_days_that_never_come() -> None:
    assert parse_expression("0 0 0 30 2 *").next_after(START) is None
    assert parse_expression("0 0 0 31 4,6,9,11 *").next_after(START) is None
    assert upcoming("0 0 0 29 2 *", n=2) == ["2028-02-29 Tue 00:00:00", "2032-02-29 Sun 00:00:00"]
    assert upcoming("0 0 0 31 * *", n=2) == ["2026-01-31 Sat 00:00:00", "2026-03-31 Tue 00:00:00"]


# -- invalid expressions -------------------------------------------------------------------


def test_five_field_crontab_lines_are_refused_with_a_hint() -> None:
    assert refused("*/5 * * * *") == (
        "expected 6 or 7 fields (second minute hour day-of-month month day-of-week [year]), "
        "got 5; a five-field crontab line needs a seconds field first, e.g. '0 */5 * * * *'"
    )
    assert refused("* * * * * * * *").endswith("got 8")


def test_empty_expression() -> None:
    for expr in ("", "   "):
        with pytest.raises(CronExpressionError, match="the expression is empty"):
            parse_expression(expr)


@pytest.mark.parametrize(
    ("expr", "reason"),
    [
        ("60 * * * * *", "Seconds: 60 is out of range 0-59"),
        ("* 60 * * * *", "Minutes: 60 is out of range 0-59"),
        ("* * 24 * * *", "Hours: 24 is out of range 0-23"),
        ("* * * 0 * *", "Days of Month: 0 is out of range 1-31"),
        ("* * * 32 * *", "Days of Month: 32 is out of range 1-31"),
        ("* * * * 0 *", "Months: 0 is out of range 1-12"),
        ("* * * * 13 *", "Months: 13 is out of range 1-12"),
        ("* * * * * * 1969", "Years: 1969 is out of range 1970-2100"),
        ("* * * * * * 2101", "Years: 2101 is out of range 1970-2100"),
        ("0-65 * * * * *", "Seconds: 65 is out of range 0-59"),
        ("103,12 * * * * *", "Seconds: 103 is out of range 0-59"),
        ("*/0 * * * * *", "Seconds: the step in '*/0' must be between 1 and 59"),
        ("*/60 * * * * *", "Seconds: the step in '*/60' must be between 1 and 59"),
        ("* * */24 * * *", "Hours: the step in '*/24' must be between 1 and 23"),
        ("* * * * * */8", "Days of Week: the step in '*/8' must be between 1 and 7"),
        ("*/x * * * * *", "Seconds: the step in '*/x' must be a number"),
        ("10-12/10-12 * * * * *", "Seconds: the step in '10-12/10-12' must be a number"),
        ("30-10 * * * * *", "Seconds: invalid range '30-10': it runs backwards"),
        ("* * * * DEC-JAN *", "Months: invalid range 'DEC-JAN': it runs backwards"),
        (",1,2 * * * * *", "Seconds: empty list item"),
        ("1,,2 * * * * *", "Seconds: empty list item"),
        ("-4 * * * * *", "Seconds: cannot read '-4'"),
        ("1.5 * * * * *", "Seconds: cannot read '1.5'"),
        ("* * * * * MON,TURTLE", "Days of Week: 'TURTLE' is not a valid day of the week"),
        ("* * * * * BEAR-OWL", "Days of Week: 'BEAR' is not a valid day of the week"),
    ],
)
def test_invalid_fields_say_which_and_why(expr: str, reason: str) -> None:
    assert refused(expr) == reason


@pytest.mark.parametrize(
    "expr",
    [
        "0 0 0 L * *",
        "0 0 0 L-3 * *",
        "0 0 0 LW * *",
        "0 0 0 15W * *",
        "0 0 0 * * 6L",
        "0 0 0 * * FRIL",
        "0 0 0 * * 6#3",
        "0 0 0 * * MON#1",
        "H * * * * *",
        "H(0-29) * * * * *",
        "R * * * * *",
    ],
)
def test_quartz_and_croniter_extensions_are_refused(expr: str) -> None:
    assert "is not supported: the cron grammar iii uses has no L, W, # or H" in refused(expr)


# -- timing --------------------------------------------------------------------------------


def test_next_is_strictly_after_the_whole_second() -> None:
    every = parse_expression("* * * * * *")
    assert every.next_after(at(2026, 1, 1, 2, 0, 0)) == at(2026, 1, 1, 2, 0, 1)
    half = dt.datetime(2026, 1, 1, 2, 0, 0, 500_000, tzinfo=UTC)
    assert every.next_after(half) == at(2026, 1, 1, 2, 0, 1)
    assert every.next_tick(half.timestamp()) == int(at(2026, 1, 1, 2, 0, 1).timestamp())
    # Any time zone in, UTC out.
    plus2 = dt.datetime(2026, 1, 1, 4, 0, 0, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    assert parse_expression("0 0 3 * * *").next_after(plus2) == at(2026, 1, 1, 3)
    with pytest.raises(ValueError, match="aware"):
        every.next_after(dt.datetime(2026, 1, 1))


def test_latest_at_or_before_includes_the_moment_itself() -> None:
    minute = parse_expression("0 * * * * *")
    assert minute.latest_at_or_before(at(2026, 1, 1, 2, 5, 0)) == at(2026, 1, 1, 2, 5, 0)
    assert minute.latest_at_or_before(at(2026, 1, 1, 2, 5, 59)) == at(2026, 1, 1, 2, 5, 0)
    assert minute.latest_tick(at(2026, 1, 1, 2, 5, 0).timestamp() + 0.9) == int(
        at(2026, 1, 1, 2, 5).timestamp()
    )
    assert parse_expression("0 0 0 1 1 * 2030").latest_at_or_before(START) is None


def test_the_croniter_text_lists_plain_values_in_croniters_order() -> None:
    # croniter: minute hour day month day-of-week second year, Sunday = 0.
    expr = parse_expression("5 10/20 8-9 ? JAN MON-FRI 2030")
    assert expr.croniter_text == "10,30,50 8,9 * 1 1,2,3,4,5 5 2030"
    assert parse_expression("* * * * * SUN").croniter_text == "* * * * 0 * *"


# -- the translation against plain set membership -------------------------------------------


def reference_next(expr: CronExpression, after: dt.datetime, years: int = 12) -> dt.datetime | None:
    """The first second after ``after`` in every field's set, found by walking the calendar."""
    start = after.replace(microsecond=0) + dt.timedelta(seconds=1)
    day = start.date()
    horizon = day.replace(year=day.year + years)
    while day < horizon:
        midnight = dt.datetime(day.year, day.month, day.day, tzinfo=UTC)
        if _day_matches(expr, day):
            for hour in sorted(expr.hours or range(24)):
                for minute in sorted(expr.minutes or range(60)):
                    for second in sorted(expr.seconds or range(60)):
                        candidate = midnight.replace(hour=hour, minute=minute, second=second)
                        if candidate >= start:
                            return candidate
        day += dt.timedelta(days=1)
    return None


def _day_matches(expr: CronExpression, day: dt.date) -> bool:
    weekday = day.isoweekday() % 7 + 1
    return (
        (expr.days_of_month is None or day.day in expr.days_of_month)
        and (expr.months is None or day.month in expr.months)
        and (expr.days_of_week is None or weekday in expr.days_of_week)
        and (expr.years is None or day.year in expr.years)
    )


def random_field(rng: random.Random, low: int, high: int, names: list[str] | None) -> str:
    def item() -> str:
        kind = rng.choice(["n", "n", "range", "step", "star-step", "point-step", "name"])
        a, b = sorted(rng.sample(range(low, high + 1), 2))
        step = rng.randint(1, max(1, (high - low) // 2))
        if kind == "range":
            return f"{a}-{b}"
        if kind == "step":
            return f"{a}-{b}/{step}"
        if kind == "star-step":
            return f"*/{step}"
        if kind == "point-step":
            return f"{a}/{step}"
        if kind == "name" and names:
            return names[a - low]
        return str(a)

    if rng.random() < 0.3:
        return "*"
    return ",".join(item() for _ in range(rng.randint(1, 3)))


MONTH_NAMES = "JAN FEB MAR APR MAY JUN JUL AUG SEP OCT NOV DEC".split()
DAY_NAMES = "SUN MON TUE WED THU FRI SAT".split()


def random_expressions(count: int, seed: int) -> Iterator[str]:
    rng = random.Random(seed)
    for _ in range(count):
        fields = [
            random_field(rng, 0, 59, None),
            random_field(rng, 0, 59, None),
            random_field(rng, 0, 23, None),
            random_field(rng, 1, 28, None) if rng.random() < 0.8 else "*",
            random_field(rng, 1, 12, MONTH_NAMES),
            random_field(rng, 1, 7, DAY_NAMES),
        ]
        if rng.random() < 0.3:
            fields.append(rng.choice(["2026-2030", "2027,2029", "*/3", "2026/2"]))
        yield " ".join(fields)


@pytest.mark.parametrize("seed", range(6))
def test_croniter_agrees_with_the_field_sets(seed: int) -> None:
    rng = random.Random(1000 + seed)
    for text in random_expressions(25, seed):
        expr = parse_expression(text)
        moment = START + dt.timedelta(seconds=rng.randint(0, 400 * 86400))
        for _ in range(6):
            expected = reference_next(expr, moment)
            assert expr.next_after(moment) == expected, (text, expr.croniter_text, moment)
            if expected is None:
                break
            assert expr.includes(expected)
            assert expr.latest_at_or_before(expected) == expected
            moment = expected


@pytest.mark.parametrize(
    "text",
    [
        "* * * * * *",
        "*/7 */13 */5 * * *",
        "0 0 0 13 * FRI",
        "0 0 0 29 2 *",
        "0 0 0 1-7 * MON",
        "59 59 23 31 12 * 2026-2040",
        "0 30 9 * * SAT,SUN",
        "0 0 12 1 * 1-5",
        "0 0 0 * * 7",
        "15 45 6 28 * *",
    ],
)
def test_croniter_agrees_on_the_hand_picked_corners(text: str) -> None:
    expr = parse_expression(text)
    moment = at(2026, 12, 31, 23, 59, 58)
    for _ in range(8):
        expected = reference_next(expr, moment)
        assert expr.next_after(moment) == expected, (text, moment)
        assert expected is not None
        moment = expected
