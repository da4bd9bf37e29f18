"""The funnel rollup (models.SignupStatsDaily): bumped inside the transaction
of each change, rebuilt from the leads when needed."""

from __future__ import annotations

from datetime import date

from sqlalchemy import Connection, case, delete, func, insert, select

from extensions import db
from models import Lead, LeadStatus, SignupStatsDaily
from services import upsert

COUNTERS = ("submissions", "signups", "confirmed", "unsubscribed", "clicks")


def bump(
    day: date,
    source_slug: str | None,
    placement: str | None,
    utm_source: str | None,
    conn: Connection | None = None,
    **increments: int,
) -> None:
    """Add to the counters of one (day, source, placement, utm_source) row
    (on `conn` when given: see services.upsert)."""
    unknown = set(increments) - set(COUNTERS)
    if unknown:
        raise ValueError(f"unknown counters {unknown}")
    key = {
        "day": day,
        "source_slug": source_slug or "",
        "placement": placement or "",
        "utm_source": (utm_source or "")[:200],
    }
    upsert.insert_or_add(
        SignupStatsDaily, key, {name: increments.get(name, 0) for name in COUNTERS}, conn=conn
    )


def bump_for_lead(lead: Lead, **increments: int) -> None:
    """Count against the lead's signup cohort (its first day and source)."""
    bump(
        lead.created_at.date(),
        lead.source_slug,
        lead.source_placement,
        lead.utm_source,
        **increments,
    )


def rebuild() -> int:
    """Recompute signups, confirmed and unsubscribed from the leads (after a
    bulk import, say). Submissions and clicks have no other record of their
    own and are kept. Returns the number of rollup rows written."""
    if db.session.get_bind().dialect.name == "postgresql":
        day = func.date(func.timezone("UTC", Lead.created_at))
    else:
        day = func.date(Lead.created_at)
    slug = func.coalesce(Lead.source_slug, "")
    placement = func.coalesce(Lead.source_placement, "")
    utm = func.coalesce(Lead.utm_source, "")
    kept = (
        db.session.execute(
            select(SignupStatsDaily).where(
                (SignupStatsDaily.submissions > 0) | (SignupStatsDaily.clicks > 0)
            )
        )
        .scalars()
        .all()
    )
    kept = [
        (r.day, r.source_slug, r.placement, r.utm_source, r.submissions, r.clicks) for r in kept
    ]
    db.session.execute(delete(SignupStatsDaily))
    source = select(
        day,
        slug,
        placement,
        utm,
        func.count(),
        func.count(Lead.confirmed_at),
        func.sum(case((Lead.status == LeadStatus.UNSUBSCRIBED, 1), else_=0)),
    ).group_by(day, slug, placement, utm)
    db.session.execute(
        insert(SignupStatsDaily).from_select(
            [
                "day",
                "source_slug",
                "placement",
                "utm_source",
                "signups",
                "confirmed",
                "unsubscribed",
            ],
            source,
        )
    )
    for d, s, p, u, submissions, clicks in kept:
        bump(d, s, p, u, submissions=submissions, clicks=clicks)
    return db.session.execute(select(func.count()).select_from(SignupStatsDaily)).scalar_one()
