"""Who an announcement or a class reminder goes to: confirmed leads who want
the topic, narrowed by where and when they signed up."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from sqlalchemy import Select, case, exists, func, select

from extensions import db
from models import Announcement, Lead, LeadStatus, LeadTopic
from services import clock, dates
from services.delivery import frequency_cap


def leads(
    topic: str,
    source_slug: str | None = None,
    signed_up_from: date | None = None,
    signed_up_until: date | None = None,
) -> Select:
    """SELECT lead.id of the confirmed leads who want the topic."""
    stmt = select(Lead.id).where(
        Lead.status == LeadStatus.CONFIRMED,
        exists().where(LeadTopic.lead_id == Lead.id, LeadTopic.topic == topic),
    )
    if source_slug:
        stmt = stmt.where(Lead.source_slug == source_slug)
    # Dates out of range are refused on the way in; these still read the
    # ones stored before that (9999-12-31 has no day after it).
    if signed_up_from:
        stmt = stmt.where(Lead.created_at >= dates.day_start(signed_up_from))
    end = dates.day_end(signed_up_until) if signed_up_until else None
    if end is not None:
        stmt = stmt.where(Lead.created_at < end)
    return stmt


def of(ann: Announcement) -> Select:
    return leads(ann.topic, ann.source_slug, ann.signed_up_from, ann.signed_up_until)


def count(stmt: Select) -> int:
    return db.session.execute(select(func.count()).select_from(stmt.subquery())).scalar_one()


@dataclass(frozen=True)
class Reach:
    """An audience now: how many it reaches, and how many of them the
    frequency cap (cap_days, the setting) would hold back if it went out now."""

    count: int
    held_by_cap: int
    cap_days: float


def reach(stmt: Select) -> Reach:
    """count() and the frequency cap's forecast in one statement, no row sent
    to Python (frequency_cap.mailed_recently). An announcement that
    overrides the cap still shows whom it would hold back."""
    window = frequency_cap.days()
    sub = stmt.subquery()
    if window <= 0:
        return Reach(count(stmt), 0, window)
    held = frequency_cap.mailed_recently(sub.c.id, clock.now(), window)
    total, capped = db.session.execute(
        select(func.count(), func.count(case((held, 1)))).select_from(sub)
    ).one()
    return Reach(total, capped, window)
