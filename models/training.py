"""CSPO classes, as shown on the training page and in mail."""

from __future__ import annotations

import enum
from datetime import datetime
from decimal import Decimal

from sqlalchemy import ForeignKey, Numeric, String
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, UTCDateTime, new_public_id, string_enum, utcnow
from services import clock


class ClassStatus(enum.StrEnum):
    SCHEDULED = "scheduled"
    FULL = "full"
    CANCELLED = "cancelled"


class TrainingClass(Base):
    __tablename__ = "training_class"

    id: Mapped[int] = mapped_column(primary_key=True)
    public_id: Mapped[str] = mapped_column(String(24), unique=True, default=new_public_id)
    course: Mapped[str] = mapped_column(String(20), default="CSPO")
    title: Mapped[str] = mapped_column(String(200))
    # Stored in UTC; shown in the class's own zone.
    starts_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    ends_at: Mapped[datetime] = mapped_column(UTCDateTime)
    timezone: Mapped[str] = mapped_column(String(64), default="UTC")
    online: Mapped[bool] = mapped_column(default=True)
    location: Mapped[str | None] = mapped_column(String(200))
    trainer: Mapped[str | None] = mapped_column(String(200))
    price: Mapped[Decimal | None] = mapped_column(Numeric(10, 2))
    currency: Mapped[str] = mapped_column(String(3), default="EUR")
    seats: Mapped[int | None] = mapped_column()
    seats_taken: Mapped[int] = mapped_column(default=0)
    registration_url: Mapped[str | None] = mapped_column(String(500))
    status: Mapped[ClassStatus] = mapped_column(
        string_enum(ClassStatus, "class_status"), default=ClassStatus.SCHEDULED
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # The training page's lastmod in the sitemap: any change to the row moves
    # it (the services' clock, so tests can move time).
    updated_at: Mapped[datetime | None] = mapped_column(
        UTCDateTime, default=clock.now, onupdate=clock.now
    )

    @property
    def seats_left(self) -> int | None:
        if self.seats is None:
            return None
        return max(self.seats - self.seats_taken, 0)


class ClassReminderRun(Base):
    """A class reminder step (e.g. 7 days before) that was fanned out: the
    insert of this row is the claim, so the step runs once per class."""

    __tablename__ = "class_reminder_run"

    training_class_id: Mapped[int] = mapped_column(
        ForeignKey("training_class.id", ondelete="CASCADE"), primary_key=True
    )
    days_before: Mapped[int] = mapped_column(primary_key=True)
    ran_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    recipients: Mapped[int] = mapped_column(default=0)
