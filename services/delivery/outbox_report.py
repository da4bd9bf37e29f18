"""What operators ask of the outbox."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy.orm import selectinload

from extensions import db
from models import MailKind, OutboxMessage, OutboxStatus
from services import clock, paging
from services.bounces import events

# What came back (bounces, complaints, bad VERP signatures) is counted over this.
INBOUND_DAYS = 30


@dataclass
class OutboxReport:
    counts: dict[str, int]
    oldest_due_age: timedelta | None
    recent_errors: list[tuple[str, int]]
    inbound: dict[str, int]  # inbound events by kind in the last INBOUND_DAYS


def status_report(error_limit: int = 10) -> OutboxReport:
    counts = dict.fromkeys((s.value for s in OutboxStatus), 0)
    for status, count in db.session.execute(
        db.select(OutboxMessage.status, db.func.count()).group_by(OutboxMessage.status)
    ):
        counts[OutboxStatus(status).value] = count
    now = clock.now()
    oldest = db.session.execute(
        db.select(db.func.min(OutboxMessage.send_after)).where(
            OutboxMessage.status == OutboxStatus.QUEUED, OutboxMessage.send_after <= now
        )
    ).scalar_one()
    if oldest is not None and oldest.tzinfo is None:  # SQLite aggregates lose the type
        from datetime import UTC, datetime

        oldest = datetime.fromisoformat(str(oldest)).replace(tzinfo=UTC)
    recent = db.session.execute(
        db.select(OutboxMessage.last_error, db.func.count())
        .where(
            OutboxMessage.last_error.is_not(None),
            # A skipped row's last_error is the send-time check's verdict
            # ("lead is unsubscribed"), not a delivery error.
            OutboxMessage.status != OutboxStatus.SKIPPED,
        )
        .group_by(OutboxMessage.last_error)
        .order_by(db.func.max(OutboxMessage.id).desc())
        .limit(error_limit)
    ).all()
    return OutboxReport(
        counts=counts,
        oldest_due_age=(now - oldest) if oldest else None,
        recent_errors=[(e, n) for e, n in recent],
        inbound=events.counts(days=INBOUND_DAYS),
    )


def page(
    status: OutboxStatus | None, kind: MailKind | None, before: int | None, per_page: int
) -> paging.Page[OutboxMessage]:
    """The delivery log newest first, from below the id `before`, of one
    status and kind when given."""
    # The page's recipient and announcement columns, in two queries for the
    # page, not two per row.
    stmt = db.select(OutboxMessage).options(
        selectinload(OutboxMessage.lead), selectinload(OutboxMessage.announcement)
    )
    if status is not None:
        stmt = stmt.where(OutboxMessage.status == status)
    if kind is not None:
        stmt = stmt.where(OutboxMessage.kind == kind)
    return paging.newest_first(stmt, OutboxMessage.id, before, per_page)


def by_id(row_id: int) -> OutboxMessage | None:
    return db.session.get(OutboxMessage, row_id)
