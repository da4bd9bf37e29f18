"""The audit log: one row per sensitive act, in the act's own transaction."""

from __future__ import annotations

from extensions import db
from models import AuditEvent, User
from services import clock, paging


def record(user: User | None, action: str, target: str | None = None, **details) -> None:
    db.session.add(
        AuditEvent(
            at=clock.now(),
            user_id=user.id if user else None,
            actor=user.email if user else "system",
            action=action,
            target=target,
            details={k: v for k, v in details.items() if v not in (None, "", [], {})},
        )
    )


def page(before: int | None, per_page: int) -> paging.Page[AuditEvent]:
    """The log newest first, from below the id `before`."""
    return paging.newest_first(db.select(AuditEvent), AuditEvent.id, before, per_page)
