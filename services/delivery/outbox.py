"""Writing to the outbox. Callers add rows inside their own transaction, so a
mail exists exactly when the change that caused it was committed."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import ColumnElement, Connection, update

from extensions import db
from models import MailKind, OutboxMessage, OutboxStatus
from services import clock, upsert


def row(
    kind: MailKind,
    lead_id: int | None,
    now: datetime,
    *,
    send_after: datetime | None = None,
    dedupe_key: str | None = None,
    skipped: str | None = None,
) -> dict:
    """The values of one outbox row (see enqueue)."""
    return {
        "kind": kind.value,
        "lead_id": lead_id,
        "status": OutboxStatus.SKIPPED.value if skipped else OutboxStatus.QUEUED.value,
        "last_error": skipped,
        "send_after": send_after or now,
        "created_at": now,
        "attempts": 0,
        "dedupe_key": dedupe_key,
    }


def enqueue(
    kind: MailKind,
    lead_id: int | None,
    *,
    send_after: datetime | None = None,
    dedupe_key: str | None = None,
    skipped: str | None = None,
    conn: Connection | None = None,
) -> None:
    """Queue one mail. With a dedupe_key, a second row with the same key is
    silently not written: the unique index decides, not a read-then-write.
    With `skipped`, the row is written already skipped for that reason: the
    delivery log shows the mail that was not sent, and why. On `conn` when
    given (see services.upsert)."""
    values = row(
        kind, lead_id, clock.now(), send_after=send_after, dedupe_key=dedupe_key, skipped=skipped
    )
    if dedupe_key is None:
        upsert.insert(OutboxMessage, values, conn=conn)
    else:
        upsert.insert_ignore(OutboxMessage, values, conflict=("dedupe_key",), conn=conn)


def enqueue_rows(rows: list[dict], conn: Connection | None = None) -> None:
    """Queue several mails (values from `row`) in one statement; a row whose
    dedupe_key exists already is not written, as in enqueue."""
    upsert.insert_ignore_many(OutboxMessage, rows, conflict=("dedupe_key",), conn=conn)


def queue_depth() -> int:
    """Rows not yet finished: waiting or being sent."""
    return db.session.execute(
        db.select(db.func.count())
        .select_from(OutboxMessage)
        .where(OutboxMessage.status.in_([OutboxStatus.QUEUED, OutboxStatus.SENDING]))
    ).scalar_one()


def cancel_waiting(reason: str, *where: ColumnElement[bool]) -> int:
    """Cancel the mail matching `where` that waits (queued or held) and could
    now only be skipped, in one statement in the caller's transaction, so
    the queue and the progress counts do not carry it. A row a worker holds
    already (sending) is left to the send-time checks, which still decide."""
    return db.session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.status.in_([OutboxStatus.QUEUED, OutboxStatus.HELD]), *where)
        .values(status=OutboxStatus.CANCELLED, last_error=reason)
        .execution_options(synchronize_session=False)
    ).rowcount


def cancel_for_lead(lead_id: int, kinds: Iterable[MailKind] | None, reason: str) -> int:
    """cancel_waiting for one lead's mail of `kinds` (None: every kind)."""
    where = [OutboxMessage.lead_id == lead_id]
    if kinds is not None:
        where.append(OutboxMessage.kind.in_(list(kinds)))
    return cancel_waiting(reason, *where)


def retry(row_id: int) -> bool:
    """Queue a failed row again, with a fresh set of attempts."""
    result = db.session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.id == row_id, OutboxMessage.status == OutboxStatus.FAILED)
        .values(status=OutboxStatus.QUEUED, send_after=clock.now(), attempts=0, lease_until=None)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1
