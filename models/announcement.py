"""Announcements to leads, and clicks on class registration links."""

from __future__ import annotations

import enum
from datetime import date, datetime

from sqlalchemy import Date, ForeignKey, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from models.base import Base, UTCDateTime, new_public_id, string_enum, utcnow
from models.training import TrainingClass
from models.user import User


class AnnouncementStatus(enum.StrEnum):
    DRAFT = "draft"
    SCHEDULED = "scheduled"
    SENDING = "sending"  # fanned out: its outbox rows exist
    PAUSED = "paused"  # its queued rows are held
    SENT = "sent"  # every row finished
    CANCELLED = "cancelled"
    # Could not be sent (a stored date out of range, a text past the render
    # bounds): `failure` says why; its unsent rows are cancelled.
    FAILED = "failed"


class Announcement(Base):
    __tablename__ = "announcement"

    id: Mapped[int] = mapped_column(primary_key=True)
    public_id: Mapped[str] = mapped_column(String(24), unique=True, default=new_public_id)
    subject: Mapped[str] = mapped_column(String(200))
    body: Mapped[str] = mapped_column(Text)  # Markdown with merge tags
    topic: Mapped[str] = mapped_column(String(40))
    training_class_id: Mapped[int | None] = mapped_column(
        ForeignKey("training_class.id", ondelete="SET NULL")
    )
    # Audience narrowing, beyond "confirmed leads who want the topic".
    source_slug: Mapped[str | None] = mapped_column(String(200))
    signed_up_from: Mapped[date | None] = mapped_column(Date)
    signed_up_until: Mapped[date | None] = mapped_column(Date)
    ignore_frequency_cap: Mapped[bool] = mapped_column(default=False)
    status: Mapped[AnnouncementStatus] = mapped_column(
        string_enum(AnnouncementStatus, "announcement_status"), default=AnnouncementStatus.DRAFT
    )
    send_at: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)
    send_timezone: Mapped[str] = mapped_column(String(64), default="UTC")
    recipients: Mapped[int | None] = mapped_column()  # rows queued by the fan-out
    created_by_id: Mapped[int | None] = mapped_column(
        ForeignKey("user_account.id", ondelete="SET NULL")
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    fanned_out_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    failure: Mapped[str | None] = mapped_column(Text)  # why it failed

    training_class: Mapped[TrainingClass | None] = relationship()
    created_by: Mapped[User | None] = relationship()


class ClassClick(Base):
    """A click on a class's register button, on a page or in a mail."""

    __tablename__ = "class_click"

    id: Mapped[int] = mapped_column(primary_key=True)
    training_class_id: Mapped[int] = mapped_column(
        ForeignKey("training_class.id", ondelete="CASCADE"), index=True
    )
    lead_id: Mapped[int | None] = mapped_column(ForeignKey("lead.id", ondelete="CASCADE"))
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # page, or the mail kind that carried the link
    via: Mapped[str] = mapped_column(String(30))
