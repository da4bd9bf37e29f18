"""The one rule for dates people type: between 2000-01-01 and 2100-12-31.

Python's dates end at 9999-12-31, so a day after a date typed as 9999-12-31,
or a time zone applied to 0001-01-01, raised OverflowError: a 500 on the page,
and an announcement that stopped the worker's planning. No real signup,
class or schedule lies outside this range. Forms, query filters, the CLI and
the services that store dates all check against it.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

EARLIEST = date(2000, 1, 1)
LATEST = date(2100, 12, 31)
RANGE_TEXT = f"between {EARLIEST.isoformat()} and {LATEST.isoformat()}"


class DateRangeError(ValueError):
    """A date outside EARLIEST..LATEST, with a message naming the field."""


def in_range(day: date) -> bool:
    return EARLIEST <= day <= LATEST


def check(day: date | None, label: str) -> date | None:
    """The date itself, or DateRangeError saying which field and what to type."""
    if day is not None and not in_range(day):
        raise DateRangeError(f"{label}: {day} is out of range, use a date {RANGE_TEXT}.")
    return day


def day_start(day: date) -> datetime:
    """Midnight UTC at the start of `day`."""
    return datetime.combine(day, time.min, tzinfo=UTC)


def day_end(day: date) -> datetime | None:
    """Midnight UTC after `day` (an exclusive bound), or None when the day
    is the last Python knows: dates stored before the range was enforced
    must still be readable."""
    if day >= date.max:
        return None
    return day_start(day + timedelta(days=1))
