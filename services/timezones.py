"""Local wall-clock times to UTC, with one documented rule for DST edges.

- A time that does not exist (the spring-forward gap, e.g. 02:30 in Berlin on
  the last Sunday of March) is moved forward by the length of the gap: 03:30.
- A time that happens twice (the autumn fall-back hour) means the first of
  the two, still in summer time.
Both cases come back with a note for the admin to see.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones


class TimezoneError(ValueError):
    pass


@lru_cache(maxsize=1)
def zone_names() -> tuple[str, ...]:
    return tuple(sorted(available_timezones()))


COMMON_ZONES = (
    "UTC",
    "Europe/Berlin",
    "Europe/London",
    "Europe/Amsterdam",
    "Europe/Paris",
    "Europe/Zurich",
    "America/New_York",
    "America/Chicago",
    "America/Los_Angeles",
    "Asia/Singapore",
    "Australia/Sydney",
)


def zone(name: str) -> ZoneInfo:
    try:
        if name not in zone_names():
            raise ZoneInfoNotFoundError(name)
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise TimezoneError(f"Unknown time zone {name!r}: use a name like Europe/Berlin.") from exc


@dataclass
class Resolved:
    utc: datetime
    note: str | None = None


def to_utc(day: date, wall: time, zone_name: str) -> Resolved:
    tz = zone(zone_name)
    first = datetime.combine(day, wall, tzinfo=tz)  # fold=0
    second = first.replace(fold=1)
    if first.utcoffset() == second.utcoffset():
        return Resolved(first.astimezone(UTC))
    # Round-trip tells the gap from the overlap: a time in the gap does not
    # come back as itself.
    back = first.astimezone(UTC).astimezone(tz)
    if back.replace(tzinfo=None) != first.replace(tzinfo=None):
        # In the gap: fold=0 uses the offset before the change, which lands
        # the instant just after the gap, i.e. the wall time moved forward.
        utc = first.astimezone(UTC)
        shown = utc.astimezone(tz)
        return Resolved(
            utc,
            f"{wall:%H:%M} does not exist on {day:%-d %B %Y} in {zone_name} "
            f"(clocks go forward); it was moved to {shown:%H:%M}.",
        )
    return Resolved(
        first.astimezone(UTC),
        f"{wall:%H:%M} happens twice on {day:%-d %B %Y} in {zone_name} "
        f"(clocks go back); the first one ({first:%H:%M %Z}) was used.",
    )
