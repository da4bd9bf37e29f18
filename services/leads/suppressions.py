"""The suppression list: addresses never to be mailed again, kept as hashes.

The one place a suppression is made, whatever the cause: a hard bounce, an
erasure, an admin's hand."""

from __future__ import annotations

from extensions import db
from models import Suppression, email_hash
from services import clock, upsert


def suppress(address: str, reason: str, detail: str | None = None) -> bool:
    """Suppress a normalised address; True when it was not suppressed yet.
    The first reason stays: a second call writes no second row."""
    return upsert.insert_ignore(
        Suppression,
        {
            "email_hash": email_hash(address),
            "reason": reason,
            "detail": detail[:500] if detail else None,
            "created_at": clock.now(),
        },
        conflict=("email_hash",),
    )


def recent(limit: int = 200) -> list[Suppression]:
    return list(
        db.session.execute(
            db.select(Suppression).order_by(Suppression.created_at.desc()).limit(limit)
        ).scalars()
    )


def count() -> int:
    return db.session.execute(db.select(db.func.count()).select_from(Suppression)).scalar_one()
