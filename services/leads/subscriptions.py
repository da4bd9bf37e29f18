"""A lead after signup: double opt-in, preferences, unsubscribe, the tokens
in their links, and finding a lead.

Every function here changes rows and may queue mail in the caller's
transaction; the caller commits.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import delete, or_, update
from sqlalchemy.orm import lazyload

from extensions import db
from models import (
    ConsentEvent,
    ConsentKind,
    Lead,
    LeadStatus,
    LeadTopic,
    Suppression,
    email_hash,
)
from models.outbox import CONFIRMATION_KINDS
from services import clock, tokens
from services.campaigns import sequences
from services.delivery import outbox
from services.leads import topics
from services.metrics.instruments import (
    CONFIRMATIONS,
    UNSUBSCRIBES,
    count_on_commit,
    source_label,
)
from services.outgoing_webhooks import events as outgoing
from services.reporting import funnel


@dataclass
class Evidence:
    """Where a consent act happened: kept with every consent event."""

    ip: str | None = None
    user_agent: str | None = None
    api_token_id: int | None = None  # the act came through the API with this token


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
    funnel.bump_for_lead(lead, unsubscribed=-1)


def _set_topics(lead: Lead, wanted: list[str]) -> None:
    wanted_set = set(topics.clean(wanted))
    for row in list(lead.topics):
        if row.topic not in wanted_set:
            lead.topics.remove(row)
    for slug in topics.clean(list(wanted_set - lead.topic_slugs)):
        lead.topics.append(LeadTopic(topic=slug))


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
    # The confirmation reminder (and a confirmation not yet sent) could
    # only be skipped now (rules.skip_reason): cancelled instead.
    outbox.cancel_for_lead(lead.id, CONFIRMATION_KINDS, "lead is confirmed, not pending")
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
        funnel.bump_for_lead(lead, confirmed=1)
    # Confirming is subscribing anew: an earlier erasure no longer applies.
    db.session.execute(
        delete(Suppression).where(
            Suppression.email_hash == email_hash(lead.email), Suppression.reason == "erased"
        )
    )
    db.session.refresh(lead)
    outgoing.emit("lead.confirmed", _event_data(lead))
    count_on_commit(CONFIRMATIONS.labels(source_label(lead.source_slug, lead.source_placement)))
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
    # Nothing waiting for this lead may go now (rules.skip_reason): cancelled.
    outbox.cancel_for_lead(lead.id, None, "lead is unsubscribed")
    funnel.bump_for_lead(lead, unsubscribed=1)
    db.session.add(
        ConsentEvent(
            lead_id=lead.id,
            kind=ConsentKind.WITHDRAWN,
            at=now,
            channel=channel,
            ip=evidence.ip,
            user_agent=evidence.user_agent,
            api_token_id=evidence.api_token_id,
        )
    )
    db.session.refresh(lead)
    outgoing.emit("lead.unsubscribed", {**_event_data(lead), "channel": channel})
    source = source_label(lead.source_slug, lead.source_placement)
    count_on_commit(UNSUBSCRIBES.labels(source, channel))
    return True


def _event_data(lead: Lead) -> dict:
    return outgoing.lead_data(
        lead.public_id, lead.email, lead.status, lead.topic_slugs, lead.source_slug
    )


class TopicsResult(enum.StrEnum):
    UNCHANGED = "unchanged"
    SAVED = "saved"
    UNSUBSCRIBED = "unsubscribed"
    CONFIRMATION_QUEUED = "confirmation_queued"  # coming back needs a fresh opt-in


def update_topics(
    lead: Lead, wanted: list[str], evidence: Evidence, channel: str = "preferences"
) -> TopicsResult:
    """Preferences page: no topic left means unsubscribed from everything."""
    chosen = topics.clean(wanted)
    if not chosen:
        unsubscribe(lead, channel, evidence)
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
            channel=channel,
            ip=evidence.ip,
            user_agent=evidence.user_agent,
            api_token_id=evidence.api_token_id,
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
