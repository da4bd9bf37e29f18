"""Signup: the public form's one write path, the busiest in the product.

The caller commits. The visitor sees the same answer whatever the outcome
(new, pending, confirmed, unsubscribed, throttled), and every path does the
same writes, so neither the page nor its timing tells whether an address is
on the list.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import timedelta

from flask import current_app
from sqlalchemy import Connection, Row, bindparam, delete, or_, select, update
from sqlalchemy.orm.util import identity_key

from extensions import db
from models import ConsentEvent, ConsentKind, Lead, LeadStatus, LeadTopic, MailKind
from models.base import new_public_id
from models.lead import UTM_KEYS
from services import clock, upsert
from services.campaigns import sequences
from services.delivery import outbox
from services.leads import consent, topics
from services.leads.subscriptions import Evidence
from services.metrics.instruments import SIGNUPS, count_on_commit, source_label
from services.outgoing_webhooks import events as outgoing
from services.reporting import funnel


@dataclass
class SignupRequest:
    email: str  # normalised already
    topics: list[str]
    placement: str
    name: str | None = None
    source_slug: str | None = None
    utm: dict[str, str] = field(default_factory=dict)
    referrer: str | None = None
    # The words the person agreed to, when not this site's own form's (the API).
    consent_text: str | None = None
    channel: str = "form"


class SignupOutcome(enum.StrEnum):
    CONFIRMATION_QUEUED = "confirmation_queued"
    NOTICE_QUEUED = "notice_queued"  # already confirmed: a preferences link
    THROTTLED = "throttled"  # a mail went to this address within the window


THROTTLED_REASON = "throttled: this address was mailed within the last window"


# The signup's first statement: insert the lead, or claim the mail window
# of the lead already there (see _claim_mail_window), and return the row
# either way it was written. A lead found but not claimed returns nothing.
_LEAD = Lead.__table__
# Every column a signup writes: all but the row id and what later acts set.
_LEAD_COLUMNS = tuple(
    c.key for c in _LEAD.c if c.key not in ("id", "confirmed_at", "unsubscribed_at")
)
_LEAD_ROW = tuple(
    _LEAD.c[c]
    for c in (
        "id",
        "public_id",
        "status",
        "name",
        "created_at",
        "source_slug",
        "source_placement",
        "utm_source",
    )
)


def _lead_upsert(insert: upsert.InsertFn):
    stmt = insert(_LEAD).values({c: bindparam(c, type_=_LEAD.c[c].type) for c in _LEAD_COLUMNS})
    mailed = _LEAD.c.last_confirmation_at
    return stmt.on_conflict_do_update(
        index_elements=[_LEAD.c.email],
        set_={"last_confirmation_at": stmt.excluded.last_confirmation_at},
        where=or_(
            mailed.is_(None),
            mailed <= bindparam("window_start", type_=mailed.type),
            mailed < _LEAD.c.unsubscribed_at,
        ),
    ).returning(*_LEAD_ROW)


_LEAD_UPSERT = upsert.Upsert(_lead_upsert)
_LEAD_SELECT = select(*_LEAD_ROW).where(_LEAD.c.email == bindparam("email"))
_COME_BACK = (
    update(_LEAD).where(_LEAD.c.id == bindparam("lead_id")).values(status=bindparam("new_status"))
)
_NAME = update(_LEAD).where(_LEAD.c.id == bindparam("lead_id")).values(name=bindparam("new_name"))


def _expire_loaded(lead_id: int) -> None:
    """A Lead already loaded in this session (a caller's copy) no longer
    matches its row: the statements here bypass the ORM."""
    loaded = db.session.identity_map.get(identity_key(Lead, lead_id))
    if loaded is not None:
        db.session.expire(loaded)


def subscribe(req: SignupRequest, evidence: Evidence) -> SignupOutcome:
    """Record a signup and queue the mail it calls for.

    The visitor sees the same answer whatever the outcome, so nobody can learn
    from the form whether an address is on the list.

    Written as five Core statements on the session's connection (a sixth
    for a new lead: its webhook event), no ORM objects and no flush: this is
    the busiest write of the product, and on SQLite every signup waits for
    the one before to commit.
    """
    now = clock.now()
    chosen = topics.clean(req.topics)
    consent_hash = consent.record_text(req.consent_text or consent.text_for(req.placement))
    db.session.flush()  # what the caller changed goes first, as an autoflush would
    conn = db.session.connection()
    window = timedelta(seconds=current_app.config["CONFIRMATION_WINDOW_SECONDS"])
    public_id = new_public_id()
    # Insert first: on SQLite this takes the write lock before any read, so
    # concurrent signups queue on busy_timeout instead of failing; on
    # PostgreSQL a concurrent insert of the same address waits, then finds it.
    lead = _LEAD_UPSERT.execute(
        {
            "public_id": public_id,
            "email": req.email,
            "name": req.name,
            "status": LeadStatus.PENDING,
            "source_slug": req.source_slug,
            "source_placement": req.placement,
            "referrer": req.referrer,
            "created_at": now,
            "last_confirmation_at": now,  # a new lead's window is claimed by its insert
            **{k: req.utm.get(k) for k in UTM_KEYS},
            "window_start": now - window,
        },
        conn,
    ).first()
    claimed = lead is not None
    if lead is None:  # on the list already, and mailed within the window
        lead = conn.execute(_LEAD_SELECT, {"email": req.email}).one()
    created = lead.public_id == public_id
    # One rollup write: this form post, and the new lead when there is one
    # (a new lead's cohort is this very post).
    funnel.bump(
        now.date(),
        req.source_slug,
        req.placement,
        req.utm.get("utm_source"),
        conn=conn,
        submissions=1,
        signups=1 if created else 0,
    )
    upsert.insert(
        ConsentEvent,
        {
            "lead_id": lead.id,
            "kind": ConsentKind.GIVEN.value,
            "at": now,
            "channel": req.channel,
            "ip": evidence.ip,
            "user_agent": evidence.user_agent,
            "api_token_id": evidence.api_token_id,
            "consent_hash": consent_hash,
            "topics": ",".join(chosen),
            "source_slug": req.source_slug,
            "placement": req.placement,
        },
        conn=conn,
    )
    outcome = _after_signup(conn, req, lead, chosen, claimed)
    if created:
        outgoing.emit(
            "lead.created",
            outgoing.lead_data(lead.public_id, req.email, lead.status, chosen, req.source_slug),
            conn=conn,
        )
        count_on_commit(SIGNUPS.labels(source_label(req.source_slug, req.placement)))
    else:
        _expire_loaded(lead.id)
    return outcome


def _after_signup(
    conn: Connection,
    req: SignupRequest,
    lead: Row,
    chosen: list[str],
    claimed: bool,
) -> SignupOutcome:
    """The writes that depend on the state the address was in."""
    if lead.status == LeadStatus.CONFIRMED:
        # Topics of a confirmed lead change only through its preferences
        # link: a stranger typing the address must not change what it gets.
        if claimed:
            outbox.enqueue(MailKind.ALREADY_SUBSCRIBED, lead.id, conn=conn)
            return SignupOutcome.NOTICE_QUEUED
        outbox.enqueue(MailKind.ALREADY_SUBSCRIBED, lead.id, skipped=THROTTLED_REASON, conn=conn)
        return SignupOutcome.THROTTLED

    if lead.status == LeadStatus.UNSUBSCRIBED:
        # Asking again: pending until it confirms, no longer counted among
        # the unsubscribed, and exactly the topics chosen now.
        conn.execute(_COME_BACK, {"lead_id": lead.id, "new_status": LeadStatus.PENDING})
        funnel.bump(
            lead.created_at.date(),
            lead.source_slug,
            lead.source_placement,
            lead.utm_source,
            conn=conn,
            unsubscribed=-1,
        )
        conn.execute(
            delete(LeadTopic.__table__).where(
                LeadTopic.__table__.c.lead_id == lead.id,
                LeadTopic.__table__.c.topic.not_in(chosen),
            )
        )
    # A pending lead keeps its topics and gains the new ones: the same
    # statement as a new lead's first topics.
    upsert.insert_ignore_many(
        LeadTopic, [{"lead_id": lead.id, "topic": t} for t in chosen], ("lead_id", "topic"), conn
    )
    if req.name and not lead.name:
        conn.execute(_NAME, {"lead_id": lead.id, "new_name": req.name})
    if claimed:
        sequences.confirmation_requested(lead.id, conn=conn)
        return SignupOutcome.CONFIRMATION_QUEUED
    # The same writes as on the path that mails: how long the answer takes
    # must not tell a visitor whether the address is already on the list.
    sequences.confirmation_requested(lead.id, throttled=THROTTLED_REASON, conn=conn)
    return SignupOutcome.THROTTLED
