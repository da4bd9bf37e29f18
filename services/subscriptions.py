"""Signup, double opt-in, preferences and unsubscribe.

Every function here changes rows and may queue mail in the caller's
transaction; the caller commits.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import Connection, Row, bindparam, delete, or_, select, update
from sqlalchemy.orm import lazyload
from sqlalchemy.orm.util import identity_key

from extensions import db
from models import (
    ConsentEvent,
    ConsentKind,
    Lead,
    LeadStatus,
    LeadTopic,
    MailKind,
    Suppression,
    email_hash,
)
from models.base import new_public_id
from services import clock, consent, outbox, sequences, stats, tokens, topics, upsert


@dataclass
class Evidence:
    """Where a consent act happened: kept with every consent event."""

    ip: str | None = None
    user_agent: str | None = None


@dataclass
class SignupRequest:
    email: str  # normalised already
    topics: list[str]
    placement: str
    name: str | None = None
    source_slug: str | None = None
    utm: dict[str, str] = field(default_factory=dict)
    referrer: str | None = None


class SignupOutcome(enum.StrEnum):
    CONFIRMATION_QUEUED = "confirmation_queued"
    NOTICE_QUEUED = "notice_queued"  # already confirmed: a preferences link
    THROTTLED = "throttled"  # a mail went to this address within the window


THROTTLED_REASON = "throttled: this address was mailed within the last window"

UTM_KEYS = ("utm_source", "utm_medium", "utm_campaign", "utm_term", "utm_content")


def lead_by_email(email: str, with_topics: bool = True) -> Lead | None:
    # populate_existing: the row may have changed under a copy in the session.
    stmt = db.select(Lead).where(Lead.email == email).execution_options(populate_existing=True)
    if not with_topics:  # a lead just inserted has none to load
        stmt = stmt.options(lazyload(Lead.topics))
    return db.session.execute(stmt).scalar_one_or_none()


def lead_by_public_id(public_id: str) -> Lead | None:
    return db.session.execute(
        db.select(Lead).where(Lead.public_id == public_id)
    ).scalar_one_or_none()


def _claim_mail_window(lead_id: int, now: datetime) -> bool:
    """True for the one caller per window that may queue a mail to this lead.

    A conditional UPDATE is atomic on every backend, so concurrent submissions
    of one address queue one mail, not one each. An unsubscribe opens the
    window again: only the person holding the link can unsubscribe, so this
    gives no bomber an extra mail, and someone who unsubscribed by mistake
    and signs up again at once is not left pending with no link.
    """
    window = timedelta(seconds=current_app.config["CONFIRMATION_WINDOW_SECONDS"])
    result = db.session.execute(
        update(Lead)
        .where(
            Lead.id == lead_id,
            or_(
                Lead.last_confirmation_at.is_(None),
                Lead.last_confirmation_at <= now - window,
                Lead.last_confirmation_at < Lead.unsubscribed_at,
            ),
        )
        .values(last_confirmation_at=now)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1


def _come_back(lead: Lead) -> None:
    """An unsubscribed lead asks to subscribe again: pending until it
    confirms, and no longer counted among the unsubscribed."""
    lead.status = LeadStatus.PENDING
    stats.bump_for_lead(lead, unsubscribed=-1)


def _set_topics(lead: Lead, wanted: list[str]) -> None:
    wanted_set = set(topics.clean(wanted))
    for row in list(lead.topics):
        if row.topic not in wanted_set:
            lead.topics.remove(row)
    for slug in topics.clean(list(wanted_set - lead.topic_slugs)):
        lead.topics.append(LeadTopic(topic=slug))


# The signup's first statement: insert the lead, or claim the mail window
# of the lead already there (see _claim_mail_window), and return the row
# either way it was written. A lead found but not claimed returns nothing.
_LEAD = Lead.__table__
_LEAD_COLUMNS = (
    "public_id",
    "email",
    "name",
    "status",
    "source_slug",
    "source_placement",
    "referrer",
    "created_at",
    "last_confirmation_at",
    *UTM_KEYS,
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

    Written as five Core statements on the session's connection, no ORM
    objects and no flush: this is the busiest write of the product, and on
    SQLite every signup waits for the one before to commit.
    """
    now = clock.now()
    chosen = topics.clean(req.topics)
    consent_hash = consent.record_text(consent.text_for(req.placement))
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
    stats.bump(
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
            "channel": "form",
            "ip": evidence.ip,
            "user_agent": evidence.user_agent,
            "consent_hash": consent_hash,
            "topics": ",".join(chosen),
            "source_slug": req.source_slug,
            "placement": req.placement,
        },
        conn=conn,
    )
    outcome = _after_signup(conn, req, lead, chosen, claimed)
    if not created:
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
        stats.bump(
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


class ConfirmResult(enum.StrEnum):
    CONFIRMED = "confirmed"
    ALREADY = "already"
    STALE = "stale"  # the link predates an unsubscribe


def confirm_outcome(lead: Lead, token_issued_at: datetime) -> ConfirmResult | None:
    """What a confirmation link would do now, read only: ALREADY, STALE, or
    None when it would confirm (the page before the button asks this)."""
    if lead.status == LeadStatus.CONFIRMED:
        return ConfirmResult.ALREADY
    # Tokens carry whole seconds: a link issued in the second of the
    # unsubscribe (a quick sign-up again) counts as issued after it.
    if lead.status == LeadStatus.UNSUBSCRIBED or (
        lead.unsubscribed_at and lead.unsubscribed_at.replace(microsecond=0) > token_issued_at
    ):
        return ConfirmResult.STALE
    return None


def confirm(lead: Lead, token_issued_at: datetime, evidence: Evidence) -> ConfirmResult:
    """Double opt-in. Idempotent: a second click changes nothing."""
    now = clock.now()
    known = confirm_outcome(lead, token_issued_at)
    if known is not None:
        return known
    first_confirmation = lead.confirmed_at is None
    result = db.session.execute(
        update(Lead)
        .where(Lead.id == lead.id, Lead.status == LeadStatus.PENDING)
        .values(status=LeadStatus.CONFIRMED, confirmed_at=now)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:  # a concurrent click won
        return ConfirmResult.ALREADY
    db.session.add(
        ConsentEvent(
            lead_id=lead.id,
            kind=ConsentKind.CONFIRMED,
            at=now,
            channel="link",
            ip=evidence.ip,
            user_agent=evidence.user_agent,
            topics=",".join(sorted(lead.topic_slugs)),
        )
    )
    sequences.lead_confirmed(lead.id)
    # The funnel counts people: a lead who comes back is not confirmed twice.
    if first_confirmation:
        stats.bump_for_lead(lead, confirmed=1)
    # Confirming is subscribing anew: an earlier erasure no longer applies.
    db.session.execute(
        delete(Suppression).where(
            Suppression.email_hash == email_hash(lead.email), Suppression.reason == "erased"
        )
    )
    db.session.refresh(lead)
    return ConfirmResult.CONFIRMED


def unsubscribe(lead: Lead, channel: str, evidence: Evidence) -> bool:
    """Withdraw consent for everything. False when it was already withdrawn."""
    now = clock.now()
    result = db.session.execute(
        update(Lead)
        .where(Lead.id == lead.id, Lead.status != LeadStatus.UNSUBSCRIBED)
        .values(status=LeadStatus.UNSUBSCRIBED, unsubscribed_at=now)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:
        return False
    stats.bump_for_lead(lead, unsubscribed=1)
    db.session.add(
        ConsentEvent(
            lead_id=lead.id,
            kind=ConsentKind.WITHDRAWN,
            at=now,
            channel=channel,
            ip=evidence.ip,
            user_agent=evidence.user_agent,
        )
    )
    db.session.refresh(lead)
    return True


class TopicsResult(enum.StrEnum):
    UNCHANGED = "unchanged"
    SAVED = "saved"
    UNSUBSCRIBED = "unsubscribed"
    CONFIRMATION_QUEUED = "confirmation_queued"  # coming back needs a fresh opt-in


def update_topics(lead: Lead, wanted: list[str], evidence: Evidence) -> TopicsResult:
    """Preferences page: no topic left means unsubscribed from everything."""
    chosen = topics.clean(wanted)
    if not chosen:
        unsubscribe(lead, "preferences", evidence)
        return TopicsResult.UNSUBSCRIBED
    if set(chosen) == lead.topic_slugs and lead.status != LeadStatus.UNSUBSCRIBED:
        return TopicsResult.UNCHANGED
    now = clock.now()
    _set_topics(lead, chosen)
    db.session.add(
        ConsentEvent(
            lead=lead,
            kind=ConsentKind.TOPICS_CHANGED,
            at=now,
            channel="preferences",
            ip=evidence.ip,
            user_agent=evidence.user_agent,
            topics=",".join(chosen),
        )
    )
    if lead.status == LeadStatus.UNSUBSCRIBED:
        _come_back(lead)
        db.session.flush()
        if _claim_mail_window(lead.id, now):
            sequences.confirmation_requested(lead.id)
        return TopicsResult.CONFIRMATION_QUEUED
    return TopicsResult.SAVED


# Tokens in links carry the lead's public id, never its row id.


def confirm_token(lead: Lead) -> str:
    return tokens.make("confirm", lead.public_id)


def preferences_token(lead: Lead) -> str:
    return tokens.make("preferences", lead.public_id)


def unsubscribe_token(lead: Lead) -> str:
    return tokens.make("unsubscribe", lead.public_id)


def lead_from_token(purpose: str, token: str, max_age: int | None = None):
    """(lead or None, issued_at); raises tokens.TokenInvalid / TokenExpired."""
    public_id, issued_at = tokens.read(purpose, token, max_age=max_age)
    lead = lead_by_public_id(str(public_id))
    return lead, issued_at


def resend_confirmation(lead: Lead) -> bool:
    """A fresh confirmation link for a pending lead, within the mail window."""
    if lead.status != LeadStatus.PENDING:
        return False
    if _claim_mail_window(lead.id, clock.now()):
        sequences.confirmation_requested(lead.id)
        return True
    return False
