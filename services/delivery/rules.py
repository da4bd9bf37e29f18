"""Whether a claimed mail still goes: the batch read once, the checks on
it, and the state read again right before the mail leaves."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import Connection, select, text

from extensions import db
from models import (
    Announcement,
    AnnouncementStatus,
    ClassClick,
    ClassStatus,
    Lead,
    LeadStatus,
    LeadTopic,
    MailKind,
    StaffToken,
    TrainingClass,
    email_hash,
)
from models.outbox import CONFIRMATION_KINDS, STAFF_KINDS
from services import clock
from services.campaigns import classes
from services.delivery import frequency_cap
from services.delivery.claim import OUTBOX
from services.delivery.frequency_cap import CAPPED_KINDS
from services.leads import topics
from services.mail.compose import QueuedMail, Recipient, Refs
from services.staff import links

# Suppressions that stop even transactional mail: the address does not exist,
# keeps failing (soft bounces past BOUNCE_SOFT_LIMIT) or its owner complained.
# A new signup of such an address is answered as usual and sends nothing; the
# delivery log says why. An erased lead may still ask to subscribe anew.
HARD_SUPPRESSIONS = ("hard_bounce", "soft_bounce_limit", "complaint")


# Marketing mail about classes goes only to leads who asked for that topic.
REQUIRED_TOPIC = {
    MailKind.CLASSES_FOLLOWUP: topics.CSPO_CLASSES,
    MailKind.CLASS_REMINDER: topics.CSPO_CLASSES,
}


@dataclass
class Batch:
    """Claimed rows and what their checks and mails need, read in a few
    queries per batch instead of several per mail: rows and leads as plain
    snapshots (Core rows, not ORM objects: a fraction of the loading time),
    announcements and classes detached from the session. What may change
    while the batch is sent (the lead's status, a cancelled announcement, a
    suppression) is read again right before each mail leaves: reason_now.
    Outcomes are recorded on `conn`, a connection of the worker's own, so no
    ORM session work is done per mail."""

    conn: Connection
    rows: dict[int, QueuedMail]
    leads: dict[int, Recipient]
    refs: Refs
    recently_mailed: set[int]  # leads with capped mail inside the cap
    clicked: set[tuple[int, int]]  # (class, lead): register clicked
    # Announcements failed while this batch was sent: the rest of their rows
    # are not rendered again only to be refused.
    failed_announcements: set[int] = field(default_factory=set)

    def lead_for(self, row: QueuedMail) -> Recipient | None:
        return self.leads.get(row.lead_id) if row.lead_id else None


def _by_id(model, ids: set[int]) -> dict:
    if not ids:
        return {}
    found = {o.id: o for o in db.session.execute(select(model).where(model.id.in_(ids))).scalars()}
    for obj in found.values():
        db.session.expunge(obj)  # commits after each mail must not expire it
    return found


_ROW_COLUMNS = [OUTBOX.c[name] for name in QueuedMail.__slots__]
_LEAD = Lead.__table__
_TOPIC = LeadTopic.__table__


def load_batch(conn: Connection, ids: list[int]) -> Batch:
    rows = {
        r.id: QueuedMail(*r)
        for r in db.session.execute(select(*_ROW_COLUMNS).where(OUTBOX.c.id.in_(ids)))
    }
    lead_ids = {r.lead_id for r in rows.values() if r.lead_id}
    leads: dict[int, Recipient] = {}
    if lead_ids:
        wanted: dict[int, set[str]] = {i: set() for i in lead_ids}
        for lead_id, topic in db.session.execute(
            select(_TOPIC.c.lead_id, _TOPIC.c.topic).where(_TOPIC.c.lead_id.in_(lead_ids))
        ):
            wanted[lead_id].add(topic)
        for r in db.session.execute(
            select(
                _LEAD.c.id, _LEAD.c.public_id, _LEAD.c.email, _LEAD.c.name, _LEAD.c.status
            ).where(_LEAD.c.id.in_(lead_ids))
        ):
            leads[r.id] = Recipient(*r, topic_slugs=frozenset(wanted[r.id]))
    ann_ids = {r.announcement_id for r in rows.values() if r.announcement_id}
    anns = _by_id(Announcement, ann_ids)
    class_ids = {r.training_class_id for r in rows.values() if r.training_class_id}
    class_ids |= {a.training_class_id for a in anns.values() if a.training_class_id}
    class_rows = _by_id(TrainingClass, class_ids)
    token_ids = {r.staff_token_id for r in rows.values() if r.staff_token_id}
    tokens = _by_id(StaffToken, token_ids)
    refs = Refs(
        announcements={i: anns.get(i) for i in ann_ids},
        classes={i: class_rows.get(i) for i in class_ids},
        staff_tokens={i: tokens.get(i) for i in token_ids},
    )
    kinds = {MailKind(r.kind) for r in rows.values()}
    if MailKind.CLASSES_FOLLOWUP in kinds:
        for cls in refs.upcoming_classes():
            if cls in db.session:
                db.session.expunge(cls)
    recently_mailed: set[int] = set()
    days = frequency_cap.days()
    capped = {r.lead_id for r in rows.values() if r.lead_id and MailKind(r.kind) in CAPPED_KINDS}
    if days > 0 and capped:
        recently_mailed = set(
            db.session.execute(
                select(OUTBOX.c.lead_id)
                .where(OUTBOX.c.lead_id.in_(capped), *frequency_cap.recent_mail(clock.now(), days))
                .distinct()
            ).scalars()
        )
    clicked: set[tuple[int, int]] = set()
    reminders = [r for r in rows.values() if r.kind == MailKind.CLASS_REMINDER and r.lead_id]
    if reminders:
        clicked = set(
            db.session.execute(
                select(ClassClick.training_class_id, ClassClick.lead_id).where(
                    ClassClick.training_class_id.in_({r.training_class_id for r in reminders}),
                    ClassClick.lead_id.in_({r.lead_id for r in reminders}),
                )
            ).tuples()
        )
    db.session.commit()  # end the read: nothing may hold a snapshot while mail goes
    return Batch(conn, rows, leads, refs, recently_mailed, clicked)


def _class_reminder_reason(row: QueuedMail, lead: Recipient, batch: Batch) -> str | None:
    cls = batch.refs.training_class(row.training_class_id)
    if cls is None:
        return "class no longer exists"
    if cls.starts_at <= clock.now():
        return "class has started"
    if not classes.seats_remain(cls):
        return (
            "class is full"
            if cls.status == ClassStatus.SCHEDULED
            else f"class is {cls.status.value}"
        )
    if (cls.id, lead.id) in batch.clicked:
        return "lead already clicked register for this class"
    return None


def _status_reason(kind: MailKind, status: LeadStatus | str | None) -> str | None:
    if status is None:
        return "lead no longer exists"
    status = LeadStatus(status)
    if kind in CONFIRMATION_KINDS:
        if status != LeadStatus.PENDING:
            return f"lead is {status.value}, not pending"
    elif status != LeadStatus.CONFIRMED:
        return f"lead is {status.value}"
    return None


def _staff_reason(row: QueuedMail, kind: MailKind, batch: Batch) -> str | None:
    """Mail to a staff address, never to a lead: an invitation or reset goes
    while its link still works (and, for a reset, while an account has the
    address: the request is answered the same either way)."""
    if not row.to_email or row.lead_id is not None:
        return "staff mail without a staff address"
    if kind == MailKind.STAFF_NOTICE:
        return None
    token = batch.refs.staff_token(row.staff_token_id)
    return "link no longer exists" if token is None else links.state(token)


def skip_reason(row: QueuedMail, lead: Recipient | None, batch: Batch) -> str | None:
    """Send-time checks on what the batch read: the state now decides, not
    the state when the row was queued."""
    kind = MailKind(row.kind)
    if kind in STAFF_KINDS:
        return _staff_reason(row, kind, batch)
    if lead is None:
        if row.to_email and row.lead_id is None:  # an admin's test send
            return None
        return "lead no longer exists"
    reason = _status_reason(kind, lead.status)
    if reason:
        return reason
    announcement = None
    if kind == MailKind.ANNOUNCEMENT:
        announcement = batch.refs.announcement(row.announcement_id)
        if announcement is None or announcement.status == AnnouncementStatus.CANCELLED:
            return "announcement cancelled"
        if (
            announcement.status == AnnouncementStatus.FAILED
            or announcement.id in batch.failed_announcements
        ):
            return "announcement failed"
        topic = announcement.topic
    else:
        topic = REQUIRED_TOPIC.get(kind)
    if topic and topic not in lead.topic_slugs:
        return f"lead does not want {topic}"
    if kind == MailKind.CLASSES_FOLLOWUP and not batch.refs.upcoming_classes():
        return "no upcoming classes"
    if kind == MailKind.CLASS_REMINDER:
        reason = _class_reminder_reason(row, lead, batch)
        if reason:
            return reason
    capped = kind in CAPPED_KINDS and not (announcement and announcement.ignore_frequency_cap)
    days = frequency_cap.days()
    if capped and days > 0 and lead.id in batch.recently_mailed:
        return frequency_cap.reason(days)
    return None


# What can change while a batch is being sent, read in one statement right
# before each mail leaves: an unsubscribe, an erasure, a confirmation, a
# cancelled announcement or a new suppression a second ago still decides.
_STATE_NOW = text(
    "SELECT"
    " (SELECT status FROM lead WHERE id = :lead_id),"
    " (SELECT status FROM announcement WHERE id = :announcement_id),"
    " (SELECT reason FROM suppression WHERE email_hash = :email_hash)"
)


def reason_now(conn: Connection, row: QueuedMail, lead: Recipient | None) -> str | None:
    kind = MailKind(row.kind)
    status, ann_status, suppressed = conn.execute(
        _STATE_NOW,
        {
            "lead_id": row.lead_id,
            "announcement_id": row.announcement_id,
            "email_hash": email_hash(lead.email)
            if lead is not None
            else email_hash(row.to_email or "")
            if kind in STAFF_KINDS
            else "",
        },
    ).one()
    conn.commit()  # end the read before the mail goes: no snapshot held
    if lead is not None:
        reason = _status_reason(kind, status)
        if reason:
            return reason
    if ann_status == AnnouncementStatus.CANCELLED.value:
        return "announcement cancelled"
    if ann_status == AnnouncementStatus.FAILED.value:
        return "announcement failed"
    if suppressed and (not kind.transactional or suppressed in HARD_SUPPRESSIONS):
        return f"address suppressed ({suppressed})"
    return None
