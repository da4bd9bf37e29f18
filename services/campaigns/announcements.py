"""Announcements: drafts, schedule, set-based fan-out, pause, cancel, failure.

The fan-out is one INSERT ... SELECT into the outbox, guarded by a unique key
on (announcement_id, lead_id): whoever runs it, however often, each lead gets
one row. Pausing holds the queued rows; resuming releases them; no row is
ever made twice, so nobody is mailed twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, time, timedelta

from sqlalchemy import exists, func, literal, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import selectinload

from extensions import db
from models import (
    Announcement,
    AnnouncementStatus,
    Lead,
    MailKind,
    OutboxMessage,
    OutboxStatus,
    TrainingClass,
    User,
)
from services import clock, dates, timezones
from services.campaigns import audience
from services.leads import topics
from services.mail import templating
from services.outgoing_webhooks import events as outgoing
from services.staff import audit

EDITABLE = (AnnouncementStatus.DRAFT, AnnouncementStatus.SCHEDULED)
UNDERWAY = (AnnouncementStatus.SCHEDULED, AnnouncementStatus.SENDING, AnnouncementStatus.PAUSED)


class AnnouncementError(ValueError):
    pass


@dataclass
class AnnouncementInput:
    subject: str
    body: str
    topic: str
    training_class: TrainingClass | None = None
    source_slug: str | None = None
    signed_up_from: date | None = None
    signed_up_until: date | None = None
    ignore_frequency_cap: bool = False


def sample_context(training_class: TrainingClass | None) -> dict:
    """What a preview is rendered with: a made-up lead."""
    from services.mail.compose import class_context

    return {
        "first_name": "Alex",
        "email": "alex@example.com",
        "unsubscribe_url": "https://example.com/unsubscribe/…",
        "preferences_url": "https://example.com/preferences/…",
        "class": class_context(training_class, None) if training_class else None,
    }


def by_public_id(public_id: str) -> Announcement | None:
    return db.session.execute(
        select(Announcement).where(Announcement.public_id == public_id)
    ).scalar_one_or_none()


def recent(limit: int = 200) -> list[Announcement]:
    return list(
        db.session.execute(
            select(Announcement)
            .options(selectinload(Announcement.training_class))  # the sample subjects' class
            .order_by(Announcement.created_at.desc())
            .limit(limit)
        ).scalars()
    )


def scheduled() -> list[Announcement]:
    """Scheduled, sending or paused: what goes out next, soonest first."""
    return list(
        db.session.execute(
            select(Announcement)
            .where(Announcement.status.in_(UNDERWAY))
            .order_by(Announcement.send_at)
        ).scalars()
    )


def _check_dates(signed_up_from: date | None, signed_up_until: date | None) -> None:
    try:
        dates.check(signed_up_from, "Signed up from")
        dates.check(signed_up_until, "Signed up until")
    except dates.DateRangeError as exc:
        raise AnnouncementError(str(exc)) from exc
    if signed_up_from and signed_up_until and signed_up_from > signed_up_until:
        raise AnnouncementError("The signup date range ends before it starts.")


def apply(ann: Announcement, data: AnnouncementInput) -> None:
    if ann.status not in EDITABLE:
        raise AnnouncementError(f"A {ann.status.value} announcement can no longer be edited.")
    if data.topic not in topics.TOPICS:
        raise AnnouncementError("Choose who it goes to: one of the topics.")
    if not data.subject.strip() or not data.body.strip():
        raise AnnouncementError("Write a subject and a body.")
    _check_dates(data.signed_up_from, data.signed_up_until)
    # Bounded in time and size: a text that runs away is refused here.
    templating.check(data.subject, data.body, sample_context(data.training_class))
    ann.subject = data.subject.strip()
    ann.body = data.body
    ann.topic = data.topic
    ann.training_class_id = data.training_class.id if data.training_class else None
    ann.source_slug = data.source_slug or None
    ann.signed_up_from = data.signed_up_from
    ann.signed_up_until = data.signed_up_until
    ann.ignore_frequency_cap = data.ignore_frequency_cap


def create(data: AnnouncementInput, user: User | None) -> Announcement:
    """A new draft, flushed: its public id is known."""
    ann = Announcement(
        status=AnnouncementStatus.DRAFT,
        created_at=clock.now(),
        created_by_id=user.id if user else None,
    )
    apply(ann, data)
    db.session.add(ann)
    db.session.flush()
    return ann


def queue_test(ann: Announcement, email: str) -> OutboxMessage:
    """A test of the announcement to one staff address. It has no lead: the
    announcement's progress does not count it."""
    now = clock.now()
    row = OutboxMessage(
        kind=MailKind.ANNOUNCEMENT,
        announcement_id=ann.id,
        to_email=email,
        status=OutboxStatus.QUEUED,
        send_after=now,
        created_at=now,
        subject=f"[TEST] {ann.public_id}",
    )
    db.session.add(row)
    db.session.flush()
    return row


def schedule(
    ann: Announcement, day: date | None, wall: time | None, zone: str, now: bool = False
) -> str | None:
    """Schedule for a local date and time (or now). Returns a DST note, if any."""
    if ann.status not in EDITABLE:
        raise AnnouncementError(f"A {ann.status.value} announcement cannot be scheduled.")
    note = None
    if now:
        when = clock.now()
    else:
        if day is None or wall is None:
            raise AnnouncementError("Give a date and a time, or send it now.")
        try:
            dates.check(day, "Date")
        except dates.DateRangeError as exc:
            raise AnnouncementError(str(exc)) from exc
        resolved = timezones.to_utc(day, wall, zone)
        when, note = resolved.utc, resolved.note
        if when < clock.now() - timedelta(minutes=1):
            raise AnnouncementError("That time has passed: pick a time in the future, or send now.")
    # Conditional, like every other state change: a worker may have started
    # sending it since this request read it, and that must not be undone.
    if not _conditional_status(
        ann.id, EDITABLE, AnnouncementStatus.SCHEDULED, send_at=when, send_timezone=zone
    ):
        db.session.refresh(ann)
        raise AnnouncementError(f"A {ann.status.value} announcement cannot be scheduled.")
    db.session.refresh(ann)
    return note


def unschedule(ann: Announcement) -> None:
    if not _conditional_status(
        ann.id, (AnnouncementStatus.SCHEDULED,), AnnouncementStatus.DRAFT, send_at=None
    ):
        db.session.refresh(ann)
        raise AnnouncementError(
            f"Only a scheduled announcement can go back to draft; this one is {ann.status.value}."
        )
    db.session.refresh(ann)


def _conditional_status(
    ann_id: int, from_: tuple[AnnouncementStatus, ...], to: AnnouncementStatus, **values
) -> bool:
    result = db.session.execute(
        update(Announcement)
        .where(Announcement.id == ann_id, Announcement.status.in_(from_))
        .values(status=to, **values)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1


def fan_out(ann_id: int) -> int | None:
    """Queue one outbox row per recipient, in one statement; None when
    another process got there first. The caller commits."""
    now = clock.now()
    # The status change is the claim: of two workers, one flips it.
    if not _conditional_status(
        ann_id, (AnnouncementStatus.SCHEDULED,), AnnouncementStatus.SENDING, fanned_out_at=now
    ):
        return None
    ann = db.session.get(Announcement, ann_id)
    db.session.refresh(ann)
    check_stored(ann)
    recipients = audience.of(ann).with_only_columns(
        literal(MailKind.ANNOUNCEMENT.value),
        Lead.id,
        literal(ann.id),
        literal(OutboxStatus.QUEUED.value),
        literal(now, OutboxMessage.send_after.type),
        literal(now, OutboxMessage.created_at.type),
        literal(0),
    )
    dialect = db.session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    stmt = (
        insert(OutboxMessage)
        .from_select(
            [
                "kind",
                "lead_id",
                "announcement_id",
                "status",
                "send_after",
                "created_at",
                "attempts",
            ],
            recipients,
        )
        .on_conflict_do_nothing(index_elements=["announcement_id", "lead_id"])
        .execution_options(preserve_rowcount=True)
    )
    result = db.session.execute(stmt)
    queued = result.rowcount if result.rowcount is not None and result.rowcount >= 0 else None
    if queued is None:
        queued = _row_count(ann_id)
    ann.recipients = queued
    if queued == 0:
        ann.status, ann.finished_at = AnnouncementStatus.SENT, now
    return queued


def _row_count(ann_id: int) -> int:
    return db.session.execute(
        select(func.count()).where(
            OutboxMessage.announcement_id == ann_id, OutboxMessage.lead_id.is_not(None)
        )
    ).scalar_one()


def due_announcements() -> list[int]:
    return list(
        db.session.execute(
            select(Announcement.id).where(
                Announcement.status == AnnouncementStatus.SCHEDULED,
                Announcement.send_at <= clock.now(),
            )
        ).scalars()
    )


def check_stored(ann: Announcement) -> None:
    """What apply checks, once more on the stored row before its fan-out:
    text saved before a rule existed (or written by hand) fails here, with
    its reason, instead of in every mail. Raises AnnouncementError or
    templating.MergeTagError."""
    _check_dates(ann.signed_up_from, ann.signed_up_until)
    templating.check(ann.subject, ann.body, sample_context(ann.training_class))


def fail(ann_id: int, reason: str) -> bool:
    """Mark a scheduled, sending or paused announcement failed with its
    reason, cancel its mail not yet sent, and audit it; False when it was in
    none of those states (another worker failed it first). The caller commits."""
    reason = reason[:2000]
    if not _conditional_status(
        ann_id, UNDERWAY, AnnouncementStatus.FAILED, failure=reason, finished_at=clock.now()
    ):
        return False
    unsent = (OutboxStatus.QUEUED, OutboxStatus.HELD)
    note = f"announcement failed: {reason}"[:2000]
    cancelled = _move_rows(ann_id, unsent, OutboxStatus.CANCELLED, last_error=note)
    public_id = db.session.execute(
        select(Announcement.public_id).where(Announcement.id == ann_id)
    ).scalar_one()
    audit.record(None, "announcement.failed", public_id, reason=reason, cancelled=cancelled)
    return True


def _move_rows(ann_id: int, from_: OutboxStatus | tuple, to: OutboxStatus, **values) -> int:
    from_ = from_ if isinstance(from_, tuple) else (from_,)
    return db.session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.announcement_id == ann_id, OutboxMessage.status.in_(from_))
        .values(status=to, **values)
        .execution_options(synchronize_session=False)
    ).rowcount


def _switch(
    ann: Announcement,
    from_: AnnouncementStatus,
    to: AnnouncementStatus,
    rows: tuple[OutboxStatus, OutboxStatus],
    refusal: str,
) -> int:
    """Move the announcement between two states, and its unsent rows with it."""
    if not _conditional_status(ann.id, (from_,), to):
        raise AnnouncementError(refusal)
    moved = _move_rows(ann.id, *rows)
    db.session.refresh(ann)
    return moved


def pause(ann: Announcement) -> int:
    """Hold the rows not yet sent; returns how many."""
    return _switch(
        ann,
        AnnouncementStatus.SENDING,
        AnnouncementStatus.PAUSED,
        (OutboxStatus.QUEUED, OutboxStatus.HELD),
        "Only an announcement that is sending can be paused.",
    )


def resume(ann: Announcement) -> int:
    """Release the held rows; returns how many."""
    return _switch(
        ann,
        AnnouncementStatus.PAUSED,
        AnnouncementStatus.SENDING,
        (OutboxStatus.HELD, OutboxStatus.QUEUED),
        "Only a paused announcement can be resumed.",
    )


def cancel(ann: Announcement) -> int:
    """Cancel before or while sending: rows not yet sent are cancelled.
    Returns how many mails will not go."""
    if not _conditional_status(
        ann.id,
        (
            AnnouncementStatus.DRAFT,
            AnnouncementStatus.SCHEDULED,
            AnnouncementStatus.SENDING,
            AnnouncementStatus.PAUSED,
        ),
        AnnouncementStatus.CANCELLED,
        finished_at=clock.now(),
    ):
        raise AnnouncementError(f"A {ann.status.value} announcement cannot be cancelled.")
    n = _move_rows(ann.id, (OutboxStatus.QUEUED, OutboxStatus.HELD), OutboxStatus.CANCELLED)
    db.session.refresh(ann)
    return n


def finish_sent() -> int:
    """Mark sending announcements whose rows are all finished as sent."""
    pending = select(OutboxMessage.id).where(
        OutboxMessage.announcement_id == Announcement.id,
        OutboxMessage.lead_id.is_not(None),
        OutboxMessage.status.in_([OutboxStatus.QUEUED, OutboxStatus.SENDING, OutboxStatus.HELD]),
    )
    finished = db.session.execute(
        update(Announcement)
        .where(Announcement.status == AnnouncementStatus.SENDING, ~exists(pending))
        .values(status=AnnouncementStatus.SENT, finished_at=clock.now())
        .returning(Announcement.public_id, Announcement.subject, Announcement.finished_at)
        .execution_options(synchronize_session=False)
    ).all()
    for row in finished:
        outgoing.emit("announcement.sent", outgoing.announcement_data(*row))
    return len(finished)
