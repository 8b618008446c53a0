"""iii's cron expressions (WORKERS.md §8.3), read as upstream reads them, and their fire times.

Upstream parses with the Rust ``cron`` crate 0.15 (Quartz-style); this module reads the same
grammar into one set of values per field, then hands croniter an expression built from those
sets, so croniter only ever sees plain lists and never applies its own reading of a field.

The grammar, as the crate defines it:

* ``second minute hour day-of-month month day-of-week [year]``: 6 or 7 fields separated by
  whitespace. Five-field crontab lines are refused (there is no seconds field to assume).
  ``@yearly``, ``@monthly``, ``@weekly``, ``@daily`` and ``@hourly`` stand for whole
  expressions (``@weekly`` is Sunday 00:00:00).
* A field is ``*`` or a comma list of items; an item is a number ``5``, a range ``1-5``, a
  name (``JAN``, ``Mon``, ``friday``: months and days of the week only, any case), a named range
  ``MON-FRI``, or one of ``*``, a range, a number or a named range followed by ``/step``. A
  number before ``/`` means "from there to the field's maximum" (``10/15`` in minutes is
  10,25,40,55); a step takes every n-th value of its base from the first one.
* ``?`` means ``*``, in the day-of-month and day-of-week fields only (alone, in a list, or as
  ``?/n``).
* Bounds: seconds and minutes 0-59, hours 0-23, day of month 1-31, month 1-12, **day of
  week 1-7 with 1 = Sunday** (Quartz numbering: ``0`` is out of range, ``1-5`` is Sunday to
  Thursday, ``7`` is Saturday; §16 item 17 follows the parser, not the README), year
  1970-2100. A range must not run backwards (``FRI-MON`` and ``SAT-SUN`` are refused: a week
  range cannot wrap past Saturday, write ``SAT,SUN``); a step runs from 1 to the field's
  maximum.
* Day of month and day of week must **both** match (the crate ANDs them; classic cron ORs
  them when both are restricted), so ``0 0 0 13 * FRI`` is every Friday the 13th.
* ``L``, ``W``, ``#`` and croniter's ``H``/``R`` are not part of the 0.15 grammar and are
  refused with a message saying so.

All times are UTC. Fire times are whole seconds; the next fire after an instant is the first
matching second strictly after that instant's whole second, as the crate's iterator does.

Known differences from the crate: whitespace inside a field (the crate tolerates ``1 - 5``)
is a field separator here; and croniter stops at 2099, so a schedule never fires in 2100.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Iterable
from typing import Final

import attrs
from croniter import CroniterBadDateError, croniter

__all__ = ["CronExpression", "CronExpressionError", "Field", "parse_expression"]

UTC: Final = dt.UTC


class CronExpressionError(ValueError):
    """An expression upstream would refuse; ``reason`` says which field and why."""

    def __init__(self, expression: str, reason: str) -> None:
        super().__init__(f"Invalid cron expression '{expression}': {reason}")
        self.expression = expression
        self.reason = reason


@attrs.frozen
class Field:
    """One field's rules: its name in messages, its bounds and the names it accepts."""

    name: str
    low: int
    high: int
    names: dict[str, int] = attrs.field(factory=dict)
    any_allowed: bool = False  # ``?`` (day of month and day of week only)


_MONTHS: Final = {
    **{n: i for i, n in enumerate(("jan", "feb", "mar", "apr", "may", "jun"), 1)},
    **{n: i for i, n in enumerate(("jul", "aug", "sep", "oct", "nov", "dec"), 7)},
    "january": 1,
    "february": 2,
    "march": 3,
    "april": 4,
    "june": 6,
    "july": 7,
    "august": 8,
    "september": 9,
    "october": 10,
    "november": 11,
    "december": 12,
}
# Sunday is 1 (Quartz); the crate also knows a few longer spellings.
_DAYS: Final = {
    "sun": 1,
    "sunday": 1,
    "mon": 2,
    "monday": 2,
    "tue": 3,
    "tues": 3,
    "tuesday": 3,
    "wed": 4,
    "wednesday": 4,
    "thu": 5,
    "thurs": 5,
    "thursday": 5,
    "fri": 6,
    "friday": 6,
    "sat": 7,
    "saturday": 7,
}

SECONDS: Final = Field("Seconds", 0, 59)
MINUTES: Final = Field("Minutes", 0, 59)
HOURS: Final = Field("Hours", 0, 23)
DAYS_OF_MONTH: Final = Field("Days of Month", 1, 31, any_allowed=True)
MONTHS: Final = Field("Months", 1, 12, _MONTHS)
DAYS_OF_WEEK: Final = Field("Days of Week", 1, 7, _DAYS, any_allowed=True)
YEARS: Final = Field("Years", 1970, 2100)
FIELDS: Final = (SECONDS, MINUTES, HOURS, DAYS_OF_MONTH, MONTHS, DAYS_OF_WEEK, YEARS)

# croniter's own year bound (its RANGES); the crate's is 2100.
CRONITER_LAST_YEAR: Final = 2099
# Enough for croniter to search the whole year range before it gives up on a schedule that
# never matches (e.g. February 30th), instead of its default of 50 years.
_MAX_YEARS: Final = YEARS.high - YEARS.low + 1

_NUMBER = re.compile(r"[0-9]+")
_NAME = re.compile(r"[A-Za-z]+")
# Quartz's L, W and # and croniter's H and R: not in the crate's 0.15 grammar.
_QUARTZ_ONLY = re.compile(
    r"L|L-[0-9]+|LW|WL|[0-9]+[LW]|W[0-9]+|(?:sun|mon|tue|wed|thu|fri|sat)[a-z]*L"
    r"|[a-z0-9]+#[0-9]+|[HR](?:\([0-9]+-[0-9]+\))?",
    re.IGNORECASE,
)

# The crate's shorthands, as the fields they stand for.
_SHORTHANDS: Final = {
    "@yearly": "0 0 0 1 1 *",
    "@monthly": "0 0 0 1 * *",
    "@weekly": "0 0 0 * * 1",
    "@daily": "0 0 0 * * *",
    "@hourly": "0 0 * * * *",
}


@attrs.frozen
class CronExpression:
    """A parsed expression: the values of each field (``None``: every value) and the croniter
    expression that fires on exactly those. Two expressions are equal when they fire at the
    same times, however they are written."""

    source: str = attrs.field(eq=False)
    seconds: frozenset[int] | None
    minutes: frozenset[int] | None
    hours: frozenset[int] | None
    days_of_month: frozenset[int] | None
    months: frozenset[int] | None
    days_of_week: frozenset[int] | None  # 1 = Sunday ... 7 = Saturday
    years: frozenset[int] | None
    croniter_text: str = attrs.field(eq=False)
    # One croniter per expression, re-based on each call (None: the schedule never fires).
    _iter: croniter | None = attrs.field(eq=False, repr=False, alias="iterator")

    def includes(self, moment: dt.datetime) -> bool:
        """Whether the whole second of ``moment`` (UTC) is a fire time. Plain set membership:
        the reference the croniter translation is tested against."""
        t = moment.astimezone(UTC)
        weekday = t.isoweekday() % 7 + 1  # Sunday → 1 ... Saturday → 7
        checks = (
            (self.seconds, t.second),
            (self.minutes, t.minute),
            (self.hours, t.hour),
            (self.days_of_month, t.day),
            (self.months, t.month),
            (self.days_of_week, weekday),
            (self.years, t.year),
        )
        return all(values is None or value in values for values, value in checks)

    def next_after(self, moment: dt.datetime) -> dt.datetime | None:
        """The first fire time strictly after the whole second of ``moment``; ``None`` when the
        schedule has no fire time left (its years are past, or it names a day that never
        comes, such as February 30th)."""
        if self._iter is None:
            return None
        start = _whole_second(moment)
        try:
            found: dt.datetime = self._iter.get_next(dt.datetime, start_time=start)
        except CroniterBadDateError:
            return None
        return found.astimezone(UTC)

    def latest_at_or_before(self, moment: dt.datetime) -> dt.datetime | None:
        """The last fire time at or before the whole second of ``moment`` (``None``: none)."""
        if self._iter is None:
            return None
        start = _whole_second(moment) + dt.timedelta(seconds=1)
        try:
            found: dt.datetime = self._iter.get_prev(dt.datetime, start_time=start)
        except CroniterBadDateError:
            return None
        return found.astimezone(UTC)

    def next_tick(self, timestamp: float) -> int | None:
        """:meth:`next_after` on epoch seconds: the next fire time as an integer timestamp."""
        found = self.next_after(_from_timestamp(timestamp))
        return None if found is None else int(found.timestamp())

    def latest_tick(self, timestamp: float) -> int | None:
        """:meth:`latest_at_or_before` on epoch seconds."""
        found = self.latest_at_or_before(_from_timestamp(timestamp))
        return None if found is None else int(found.timestamp())


def _from_timestamp(timestamp: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(math.floor(timestamp), UTC)


def _whole_second(moment: dt.datetime) -> dt.datetime:
    if moment.tzinfo is None:
        raise ValueError("cron times are UTC: pass an aware datetime")
    return moment.astimezone(UTC).replace(microsecond=0)


def parse_expression(text: str) -> CronExpression:
    """Parse ``text`` as upstream does; raises :class:`CronExpressionError` with the reason."""
    if not isinstance(text, str) or not text.strip():
        raise CronExpressionError(str(text), "the expression is empty")
    source = text
    body = _SHORTHANDS.get(text.strip(), text)
    parts = body.split()
    if len(parts) not in (6, 7):
        raise CronExpressionError(source, _field_count_reason(len(parts)))
    if len(parts) == 6:
        parts.append("*")
    sets = [_parse_field(source, field, raw) for field, raw in zip(FIELDS, parts, strict=True)]
    return _build(source, sets)


def _field_count_reason(count: int) -> str:
    reason = (
        f"expected 6 or 7 fields (second minute hour day-of-month month day-of-week [year]), "
        f"got {count}"
    )
    if count == 5:
        reason += "; a five-field crontab line needs a seconds field first, e.g. '0 */5 * * * *'"
    return reason


def _parse_field(source: str, field: Field, raw: str) -> frozenset[int] | None:
    """The values a field selects; ``None`` when it selects every value."""
    if raw == "*" or (raw == "?" and field.any_allowed):
        return None
    reader = _FieldReader(source, field)
    values: set[int] = set()
    for item in raw.split(","):
        values |= reader.item(item)
    if values == set(range(field.low, field.high + 1)):
        return None
    return frozenset(values)


@attrs.frozen
class _FieldReader:
    """Reads the items of one field; every error names the field."""

    source: str
    field: Field

    def fail(self, reason: str) -> CronExpressionError:
        return CronExpressionError(self.source, f"{self.field.name}: {reason}")

    def item(self, item: str) -> set[int]:
        if not item:
            raise self.fail("empty list item")
        base, slash, step_text = item.partition("/")
        if not slash:
            return self.base(item)
        if _NUMBER.fullmatch(step_text) is None:
            raise self.fail(f"the step in '{item}' must be a number")
        step = int(step_text)
        if not 1 <= step <= self.field.high:
            raise self.fail(f"the step in '{item}' must be between 1 and {self.field.high}")
        if _NUMBER.fullmatch(base):
            # A number before the step starts a range that runs to the field's maximum.
            start = self.bounded(int(base))
            return set(range(start, self.field.high + 1)[::step])
        if _NAME.fullmatch(base) and self.field.names.get(base.lower()) is not None:
            raise self.fail(f"a step needs a range or '*' before it, not the name '{base}'")
        return set(sorted(self.base(base))[::step])

    def base(self, text: str) -> set[int]:
        field = self.field
        if text == "*" or (text == "?" and field.any_allowed):
            return set(range(field.low, field.high + 1))
        if text == "?":
            raise self.fail("'?' is only allowed in the day-of-month and day-of-week fields")
        if _NUMBER.fullmatch(text):
            return {self.bounded(int(text))}
        if _NAME.fullmatch(text) and field.names.get(text.lower()) is not None:
            return {field.names[text.lower()]}
        if _QUARTZ_ONLY.fullmatch(text):
            raise self.fail(
                f"'{text}' is not supported: the cron grammar iii uses has no L, W, # or H"
            )
        if _NAME.fullmatch(text):
            return {self.named(text)}
        low_text, dash, high_text = text.partition("-")
        if dash and _NUMBER.fullmatch(low_text) and _NUMBER.fullmatch(high_text):
            return self.span(text, self.bounded(int(low_text)), self.bounded(int(high_text)))
        if dash and _NAME.fullmatch(low_text) and _NAME.fullmatch(high_text):
            return self.span(text, self.named(low_text), self.named(high_text))
        if dash and (_NAME.fullmatch(low_text) or _NAME.fullmatch(high_text)):
            raise self.fail(f"invalid range '{text}': use two numbers or two names")
        raise self.fail(f"cannot read '{text}'")

    def span(self, text: str, low: int, high: int) -> set[int]:
        if low > high:
            hint = ""
            if self.field is DAYS_OF_WEEK:
                hint = " (a day-of-week range cannot wrap past Saturday: write SAT,SUN)"
            raise self.fail(f"invalid range '{text}': it runs backwards{hint}")
        return set(range(low, high + 1))

    def bounded(self, value: int) -> int:
        field = self.field
        if field.low <= value <= field.high:
            return value
        reason = f"{value} is out of range {field.low}-{field.high}"
        if field is DAYS_OF_WEEK:
            reason += " (1 = Sunday ... 7 = Saturday; names such as MON-FRI avoid the question)"
        raise self.fail(reason)

    def named(self, name: str) -> int:
        field = self.field
        if not field.names:
            raise self.fail(f"names are not allowed in this field ('{name}')")
        value = field.names.get(name.lower())
        if value is None:
            kind = "month" if field is MONTHS else "day of the week"
            raise self.fail(f"'{name}' is not a valid {kind}")
        return value


def _build(source: str, sets: list[frozenset[int] | None]) -> CronExpression:
    seconds, minutes, hours, dom, months, dow, years = sets
    text, runnable = _croniter_text(sets)
    iterator = (
        croniter(
            text,
            dt.datetime(2000, 1, 1, tzinfo=UTC),
            day_or=False,  # the crate ANDs day of month and day of week
            max_years_between_matches=_MAX_YEARS,
        )
        if runnable
        else None
    )
    return CronExpression(
        source, seconds, minutes, hours, dom, months, dow, years, text, iterator=iterator
    )


def _croniter_text(sets: list[frozenset[int] | None]) -> tuple[str, bool]:
    """croniter's field order is ``minute hour day month day-of-week second year``, with
    Sunday as 0; every restricted field is written out as a plain list."""
    seconds, minutes, hours, dom, months, dow, years = sets
    runnable = True
    if years is not None:
        years = frozenset(y for y in years if y <= CRONITER_LAST_YEAR)
        runnable = bool(years)
    if dow is not None:
        dow = frozenset(d - 1 for d in dow)
    order = (minutes, hours, dom, months, dow, seconds, years)
    return " ".join(_listed(values) for values in order), runnable


def _listed(values: Iterable[int] | None) -> str:
    if values is None:
        return "*"
    return ",".join(str(v) for v in sorted(values)) or "*"
