"""CSPO classes as the public sees them."""

from __future__ import annotations

from zoneinfo import ZoneInfo

from extensions import db
from models import ClassStatus, TrainingClass
from services import clock


def upcoming_classes(limit: int = 50) -> list[TrainingClass]:
    return list(
        db.session.execute(
            db.select(TrainingClass)
            .where(
                TrainingClass.starts_at > clock.now(),
                TrainingClass.status != ClassStatus.CANCELLED,
            )
            .order_by(TrainingClass.starts_at)
            .limit(limit)
        ).scalars()
    )


def local_times(cls: TrainingClass):
    """Start and end in the class's own time zone."""
    zone = ZoneInfo(cls.timezone)
    return cls.starts_at.astimezone(zone), cls.ends_at.astimezone(zone)
