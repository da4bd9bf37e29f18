"""CSPO classes: what the public sees, what admins edit, calendar files and
tracked register links."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from itertools import groupby
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

from icalendar import Calendar, Event
from werkzeug.urls import iri_to_uri

from extensions import db
from models import ClassClick, ClassStatus, Lead, MailKind, OutboxMessage, TrainingClass
from services import clock, dates, timezones, tokens
from services.content import TRAINING_PATH
from services.delivery import outbox
from services.leads import subscriptions
from services.outgoing_webhooks import events as outgoing
from services.reporting import funnel


class ClassError(ValueError):
    pass


def upcoming_classes(limit: int = 50) -> list[TrainingClass]:
    return list(
        db.session.execute(
            db.select(TrainingClass)
            .where(
                TrainingClass.starts_at > clock.now(),
                TrainingClass.status != ClassStatus.CANCELLED,
            )
            .order_by(TrainingClass.starts_at)
            .limit(limit)
        ).scalars()
    )


def recent_classes(limit: int = 200) -> list[TrainingClass]:
    """Latest start first, past classes included: the admin's list."""
    return list(
        db.session.execute(
            db.select(TrainingClass).order_by(TrainingClass.starts_at.desc()).limit(limit)
        ).scalars()
    )


def by_month(classes: list[TrainingClass]) -> list[tuple[str, list[TrainingClass]]]:
    """Grouped under 'March 2027' headings, by each class's local start."""
    return [
        (month, list(group))
        for month, group in groupby(classes, key=lambda c: local_times(c)[0].strftime("%B %Y"))
    ]


def local_times(cls: TrainingClass) -> tuple[datetime, datetime]:
    """Start and end in the class's own time zone."""
    tz = ZoneInfo(cls.timezone)
    return cls.starts_at.astimezone(tz), cls.ends_at.astimezone(tz)


def when_text(cls: TrainingClass) -> str:
    """'Thursday 10 December 2026, 09:00–17:00' for one day;
    '10–11 December 2026, 09:00–17:00' for a class over several."""
    start, end = local_times(cls)
    hours = f"{start:%H:%M}–{end:%H:%M}"
    if start.date() == end.date():
        return f"{start:%A %-d %B %Y}, {hours}"
    if (start.year, start.month) == (end.year, end.month):
        days = f"{start:%-d}–{end:%-d %B %Y}"
    elif start.year == end.year:
        days = f"{start:%-d %B}–{end:%-d %B %Y}"
    else:
        days = f"{start:%-d %B %Y}–{end:%-d %B %Y}"
    return f"{days}, {hours}"


def class_by_public_id(public_id: str) -> TrainingClass | None:
    return db.session.execute(
        db.select(TrainingClass).where(TrainingClass.public_id == public_id)
    ).scalar_one_or_none()


@dataclass
class ClassInput:
    title: str
    start_day: date
    start_time: time
    end_day: date
    end_time: time
    timezone: str
    course: str = "CSPO"
    online: bool = True
    location: str | None = None
    trainer: str | None = None
    price: Decimal | None = None
    currency: str = "EUR"
    seats: int | None = None
    seats_taken: int = 0
    registration_url: str | None = None
    status: ClassStatus = ClassStatus.SCHEDULED


def _check_url(url: str | None) -> str | None:
    """The registration link as it will go into a Location header: http(s),
    a host, no user name (https://good@evil), no spaces or line breaks, and
    non-ASCII characters percent-encoded (a header is Latin-1 at most)."""
    if not url:
        return None
    if any(ch.isspace() or ord(ch) < 0x20 or ord(ch) == 0x7F for ch in url):
        raise ClassError("The registration link must not contain spaces or line breaks.")
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ClassError("The registration link must be a full https:// address.")
    if "@" in parts.netloc:
        raise ClassError("The registration link must not contain a user name or password.")
    uri = iri_to_uri(url)
    if len(uri) > 500:
        raise ClassError("The registration link is too long (500 characters at most).")
    return uri


def apply(cls: TrainingClass, data: ClassInput) -> list[str]:
    """Set a class from an admin's form; returns notes about DST edges."""
    try:
        dates.check(data.start_day, "Start date")
        dates.check(data.end_day, "End date")
    except dates.DateRangeError as exc:
        raise ClassError(str(exc)) from exc
    start = timezones.to_utc(data.start_day, data.start_time, data.timezone)
    end = timezones.to_utc(data.end_day, data.end_time, data.timezone)
    if end.utc <= start.utc:
        raise ClassError("The class must end after it starts.")
    if not data.online and not data.location:
        raise ClassError("Give a location, or mark the class as online.")
    if data.seats is not None and data.seats_taken > data.seats:
        raise ClassError("More seats are taken than the class has.")
    cls.title = data.title
    cls.course = data.course or "CSPO"
    cls.starts_at, cls.ends_at = start.utc, end.utc
    cls.timezone = data.timezone
    cls.online = data.online
    cls.location = data.location
    cls.trainer = data.trainer
    cls.price = data.price
    cls.currency = (data.currency or "EUR").upper()
    cls.seats = data.seats
    cls.seats_taken = data.seats_taken
    cls.registration_url = _check_url(data.registration_url)
    cls.status = data.status
    return [n for n in (start.note, end.note) if n]


def create(data: ClassInput) -> tuple[TrainingClass, list[str]]:
    """A new class, flushed (its public id is known), and notes as `apply`."""
    cls = TrainingClass(created_at=clock.now())
    notes = apply(cls, data)
    db.session.add(cls)
    db.session.flush()
    return cls, notes


def cancel(cls: TrainingClass) -> None:
    """Cancelled: off the public page, and its reminders are not sent:
    those already queued are cancelled, not left to be skipped."""
    cls.status = ClassStatus.CANCELLED
    outbox.cancel_waiting(
        "class is cancelled",
        OutboxMessage.training_class_id == cls.id,
        OutboxMessage.kind == MailKind.CLASS_REMINDER,
    )


def where(cls: TrainingClass) -> str:
    return "Online" if cls.online else (cls.location or "")


@dataclass(frozen=True)
class Schedule:
    """A class as its days: the first day's session in the class's own zone,
    held on `days` consecutive days at the same wall-clock hours (the admin
    form takes a first and last day and one start and end time)."""

    first_start: datetime
    first_end: datetime
    days: int


def schedule(cls: TrainingClass) -> Schedule:
    start, end = local_times(cls)
    span = (end.date() - start.date()).days
    if end.time() > start.time():
        # 09:00-13:00 on 18 and 19 January: two sessions, not one of 28 hours.
        first_end = datetime.combine(start.date(), end.time(), start.tzinfo)
        return Schedule(start, first_end, span + 1)
    # Ends at or before its start time: each session runs past midnight.
    first_end = datetime.combine(start.date() + timedelta(days=1), end.time(), start.tzinfo)
    return Schedule(start, first_end, max(span, 1))


def ics(cls: TrainingClass, site_name: str, page_url: str, register_url: str | None) -> bytes:
    """One VEVENT for the first day's session, repeated daily. DTSTART and
    DTEND carry the class's TZID (with its VTIMEZONE, which Outlook needs): an
    RRULE on UTC times would move the hours by one after a DST change."""
    sched = schedule(cls)
    cal = Calendar()
    cal.add("prodid", f"-//{site_name}//CSPO classes//EN")
    cal.add("version", "2.0")
    event = Event()
    event.add("uid", f"{cls.public_id}@{urlsplit(page_url).netloc or 'localhost'}")
    event.add("summary", cls.title)
    event.add("dtstart", sched.first_start)
    event.add("dtend", sched.first_end)
    if sched.days > 1:
        event.add("rrule", {"freq": "daily", "count": sched.days})
    event.add("dtstamp", clock.now())
    event.add("location", where(cls))
    description = f"{cls.course} class" + (f" with {cls.trainer}" if cls.trainer else "")
    if cls.registration_url and register_url:
        description += f"\nRegister: {register_url}"
    event.add("description", description)
    event.add("url", page_url)
    if cls.status == ClassStatus.CANCELLED:
        event.add("status", "CANCELLED")
    cal.add_component(event)
    # Only the transitions around the class, not every one since 1970.
    first = sched.first_start.date()
    cal.add_missing_timezones(
        first_date=first - timedelta(days=366), last_date=first + timedelta(days=366)
    )
    return cal.to_ical()


# Register buttons go through /register/<token>: the click is counted, and
# the redirect target is read from the class row, never from the link, so
# the endpoint cannot be used to send people anywhere else.


def register_token(cls: TrainingClass, lead: Lead | None = None, via: str = "page") -> str:
    return tokens.make("register", [cls.public_id, lead.public_id if lead else None, via])


def record_click(token: str, count: bool = True) -> TrainingClass:
    """Count the click (unless `count` is False: a known bot or a link
    scanner); return the class. Raises tokens.TokenInvalid, or ClassError
    when the class has no registration link (any more)."""
    value, _ = tokens.read("register", token)
    if not isinstance(value, list) or len(value) != 3:
        raise tokens.TokenInvalid("malformed")
    class_public_id, lead_public_id, via = value
    cls = class_by_public_id(str(class_public_id))
    if cls is None or not cls.registration_url:
        raise ClassError("This class is no longer open for registration.")
    if cls.status == ClassStatus.CANCELLED:
        # A link in an older mail: the ticket shop may still sell it.
        raise ClassError("This class was cancelled. Other dates are on the training page.")
    if not count:
        return cls
    lead = subscriptions.lead_by_public_id(str(lead_public_id)) if lead_public_id else None
    db.session.add(
        ClassClick(
            training_class_id=cls.id,
            lead_id=lead.id if lead else None,
            at=clock.now(),
            via=str(via)[:30],
        )
    )
    outgoing.emit(
        "class.register_click",
        {"class": cls.public_id, "lead": lead.public_id if lead else None, "via": str(via)[:30]},
    )
    if lead is not None:
        funnel.bump_for_lead(lead, clicks=1)
    else:
        funnel.bump(clock.now().date(), TRAINING_PATH.strip("/"), "training", None, clicks=1)
    return cls


def seats_remain(cls: TrainingClass) -> bool:
    if cls.status != ClassStatus.SCHEDULED:
        return False
    return cls.seats_left is None or cls.seats_left > 0


def reminder_due_classes(days_before: list[int], now: datetime) -> list[tuple[TrainingClass, int]]:
    """(class, step) pairs whose 'N days before' moment has come and whose
    class has not started: the class reminders to fan out now."""
    horizon = now + timedelta(days=max(days_before, default=0))
    classes = db.session.execute(
        db.select(TrainingClass).where(
            TrainingClass.starts_at > now,
            TrainingClass.starts_at <= horizon,
            TrainingClass.status == ClassStatus.SCHEDULED,
        )
    ).scalars()
    due = []
    for cls in classes:
        # Only the latest step that has come: a class published 5 days
        # before it starts gets its 7-day reminder, not the 21-day one too.
        passed = [d for d in days_before if cls.starts_at - timedelta(days=d) <= now]
        if passed:
            due.append((cls, min(passed)))
    return due


def last_change() -> datetime | None:
    """When any class was last saved: the training page's lastmod."""
    return db.session.execute(db.select(db.func.max(TrainingClass.updated_at))).scalar_one()
