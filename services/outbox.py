"""Writing to the outbox. Callers add rows inside their own transaction, so a
mail exists exactly when the change that caused it was committed."""

from __future__ import annotations

from datetime import datetime

from extensions import db
from models import MailKind, OutboxMessage, OutboxStatus
from services import clock


def enqueue(
    kind: MailKind,
    lead_id: int | None,
    *,
    send_after: datetime | None = None,
    dedupe_key: str | None = None,
) -> OutboxMessage:
    row = OutboxMessage(
        kind=kind,
        lead_id=lead_id,
        status=OutboxStatus.QUEUED,
        send_after=send_after or clock.now(),
        created_at=clock.now(),
        dedupe_key=dedupe_key,
    )
    db.session.add(row)
    return row


def queue_depth() -> int:
    """Rows not yet finished: waiting or being sent."""
    return db.session.execute(
        db.select(db.func.count())
        .select_from(OutboxMessage)
        .where(OutboxMessage.status.in_([OutboxStatus.QUEUED, OutboxStatus.SENDING]))
    ).scalar_one()
