"""Claiming outbox rows with a lease, and recording each outcome fenced.

Guarantees (see README, "How delivery works"):
- a row is marked sent only after the server's 250, so nothing is lost;
- a claim increments `attempts`, the fencing token: a worker whose lease ran
  out and whose row was reclaimed cannot finish it, its UPDATE matches nothing;
- a crash between the 250 and the commit that records it re-sends that one
  row after its lease: at-least-once, one duplicate per crash at most.
"""

from __future__ import annotations

import functools
import os
import random
import socket
from datetime import timedelta

from sqlalchemy import Connection, Table, TextClause, and_, bindparam, or_, select, text, update

from extensions import db
from models import OutboxMessage, OutboxStatus
from models.base import UTCDateTime
from services import clock

OUTBOX = OutboxMessage.__table__
MAX_BACKOFF_SECONDS = 6 * 3600
# The two states claiming moves between, the same words in every queue table.
QUEUED, SENDING = OutboxStatus.QUEUED.value, OutboxStatus.SENDING.value


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def claim(batch_size: int, lease_seconds: int, owner: str) -> list[tuple[int, int]]:
    """Claim up to batch_size due outbox rows; (id, fencing token) for each."""
    return claim_due(OUTBOX, batch_size, lease_seconds, owner)


def claim_due(
    table: Table, batch_size: int, lease_seconds: int, owner: str
) -> list[tuple[int, int]]:
    """Claim up to batch_size due rows of a queue table (the outbox, the
    webhook deliveries: both have status, send_after, attempts, lease_until
    and claimed_by); (id, fencing token) for each.

    One UPDATE ... WHERE id IN (SELECT ... FOR UPDATE SKIP LOCKED) RETURNING:
    on PostgreSQL concurrent workers skip each other's rows; on SQLite the
    statement takes the single write lock, so claims are serialised.
    """
    now = clock.now()
    due = (
        select(table.c.id)
        .where(
            or_(
                and_(table.c.status == QUEUED, table.c.send_after <= now),
                and_(table.c.status == SENDING, table.c.lease_until < now),
            )
        )
        .order_by(table.c.send_after, table.c.id)
        .limit(batch_size)
        .with_for_update(skip_locked=True)
    )
    rows = db.session.execute(
        update(table)
        .where(table.c.id.in_(due.scalar_subquery()))
        .values(
            status=SENDING,
            attempts=table.c.attempts + 1,
            lease_until=now + timedelta(seconds=lease_seconds),
            claimed_by=owner,
        )
        .returning(table.c.id, table.c.attempts, table.c.lease_until)
    ).all()
    db.session.commit()
    return sorted((r.id, r.attempts) for r in rows)


@functools.lru_cache(maxsize=32)
def _finish_statement(table: Table, columns: tuple[str, ...]) -> TextClause:
    """The fenced UPDATE that records an outcome, one per table and set of
    columns. Plain SQL text: SQLAlchemy builds its cache key in a fraction
    of the time a Core update() takes, and this runs after every mail."""
    sets = ", ".join(f"{table.c[c].name} = :{c}" for c in columns)  # KeyError if not ours
    return text(
        f"UPDATE {table.name} SET lease_until = NULL, {sets}"  # noqa: S608 (names from the model; values bound)
        " WHERE id = :row_id AND attempts = :token AND status = :sending"
    ).bindparams(
        *(
            bindparam(c, type_=table.c[c].type)
            for c in columns
            if isinstance(table.c[c].type, UTCDateTime)
        )
    )


def finish(conn: Connection, row_id: int, token: int, table: Table = OUTBOX, **values) -> bool:
    """Fenced update: applies only while this worker still owns the row."""
    result = conn.execute(
        _finish_statement(table, tuple(values)),
        {**values, "row_id": row_id, "token": token, "sending": SENDING},
    )
    conn.commit()
    return result.rowcount == 1


def release(conn: Connection, row_id: int, token: int, table: Table = OUTBOX) -> bool:
    """Give a claimed, unsent row back without counting the attempt."""
    return finish(conn, row_id, token, table, status=QUEUED, attempts=token - 1)


def backoff_seconds(attempt: int, base: float) -> float:
    """Exponential backoff with full jitter, capped."""
    ceiling = min(MAX_BACKOFF_SECONDS, base * 2 ** max(attempt - 1, 0))
    return random.uniform(ceiling / 2, ceiling)
