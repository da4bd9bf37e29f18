"""The suppression list: addresses never to be mailed again, kept as hashes.

The one place a suppression is made, whatever the cause: a hard bounce, too
many soft bounces, a complaint, an erasure, an admin's hand."""

from __future__ import annotations

from dataclasses import dataclass

from extensions import db
from models import InboundEvent, Lead, Suppression, email_hash
from models.outbox import MARKETING_KINDS
from services import clock, upsert
from services.delivery import outbox


def suppress(
    address: str, reason: str, detail: str | None = None, *, event_id: int | None = None
) -> bool:
    """Suppress a normalised address; True when it was not suppressed yet.
    The first reason stays: a second call writes no second row. `event_id`
    is the bounce or complaint that caused it."""
    lead_id = db.session.execute(db.select(Lead.id).where(Lead.email == address)).scalar()
    if lead_id is not None:
        # Marketing mail never goes to a suppressed address (rules.reason_now):
        # what waits is cancelled, not left queued to be skipped.
        outbox.cancel_for_lead(lead_id, MARKETING_KINDS, f"address suppressed ({reason})")
    return upsert.insert_ignore(
        Suppression,
        {
            "email_hash": email_hash(address),
            "reason": reason,
            "detail": detail[:500] if detail else None,
            "created_at": clock.now(),
            "lead_id": lead_id,
            "inbound_event_id": event_id,
        },
        conflict=("email_hash",),
    )


def forget_address(address: str) -> None:
    """An erasure keeps the hash and the reason, not a detail that names the
    address (an SMTP reply such as "550 5.1.1 <ann@example.com>: unknown")."""
    db.session.execute(
        db.update(Suppression)
        .where(
            Suppression.email_hash == email_hash(address),
            db.func.lower(Suppression.detail).contains(address.lower(), autoescape=True),
        )
        .values(detail=None)
        .execution_options(synchronize_session=False)
    )


@dataclass
class Listed:
    """A suppression as the list shows it: the address while its lead
    exists (only the hash once erased), and the event that caused it."""

    suppression: Suppression
    address: str | None
    event: InboundEvent | None


def recent(limit: int = 200) -> list[Listed]:
    rows = db.session.execute(
        db.select(Suppression, Lead.email, InboundEvent)
        .outerjoin(Lead, Lead.id == Suppression.lead_id)
        .outerjoin(InboundEvent, InboundEvent.id == Suppression.inbound_event_id)
        .order_by(Suppression.created_at.desc())
        .limit(limit)
    ).all()
    return [Listed(s, address, event) for s, address, event in rows]


def count() -> int:
    return db.session.execute(db.select(db.func.count()).select_from(Suppression)).scalar_one()
