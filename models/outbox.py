"""The outbox: every mail is a row, the queue and the delivery log at once."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from models.base import Base, UTCDateTime, string_enum, utcnow
from models.lead import Lead

if TYPE_CHECKING:
    from models.announcement import Announcement


class OutboxStatus(enum.StrEnum):
    QUEUED = "queued"  # waiting for send_after
    SENDING = "sending"  # claimed by a worker until lease_until
    SENT = "sent"  # the SMTP server said 250
    FAILED = "failed"  # permanent error, or out of attempts
    SKIPPED = "skipped"  # send-time checks said no (unsubscribed, suppressed...)
    CANCELLED = "cancelled"
    HELD = "held"  # its announcement is paused


class MailKind(enum.StrEnum):
    CONFIRMATION = "confirmation"
    CONFIRM_REMINDER = "confirm_reminder"  # 24 h after a signup still pending
    ALREADY_SUBSCRIBED = "already_subscribed"
    WELCOME = "welcome"
    CLASSES_FOLLOWUP = "classes_followup"  # N days after confirmation
    CLASS_REMINDER = "class_reminder"  # N days before a class starts
    ANNOUNCEMENT = "announcement"
    # Mail to a staff address (to_email), never to a lead.
    STAFF_INVITATION = "staff_invitation"
    PASSWORD_RESET = "password_reset"  # noqa: S105 (a mail kind, not a password)
    STAFF_NOTICE = "staff_notice"  # e.g. "your webhook was disabled"

    @property
    def transactional(self) -> bool:
        return self in TRANSACTIONAL_KINDS


STAFF_KINDS = frozenset({MailKind.STAFF_INVITATION, MailKind.PASSWORD_RESET, MailKind.STAFF_NOTICE})
TRANSACTIONAL_KINDS = frozenset(
    {MailKind.CONFIRMATION, MailKind.CONFIRM_REMINDER, MailKind.ALREADY_SUBSCRIBED} | STAFF_KINDS
)
MARKETING_KINDS = frozenset(MailKind) - TRANSACTIONAL_KINDS
# Mails that ask a pending lead to confirm: sent only while it is pending.
CONFIRMATION_KINDS = frozenset({MailKind.CONFIRMATION, MailKind.CONFIRM_REMINDER})


class OutboxMessage(Base):
    __tablename__ = "outbox_message"

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[MailKind] = mapped_column(string_enum(MailKind, "mail_kind"))
    lead_id: Mapped[int | None] = mapped_column(ForeignKey("lead.id", ondelete="CASCADE"))
    # Rows that must exist once at most (one welcome per confirmation, one
    # announcement per lead) carry a key; the unique index enforces it.
    dedupe_key: Mapped[str | None] = mapped_column(String(120), unique=True)
    status: Mapped[OutboxStatus] = mapped_column(
        string_enum(OutboxStatus, "outbox_status"), default=OutboxStatus.QUEUED
    )
    send_after: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # attempts doubles as the fencing token: each claim increments it, and a
    # worker may only finish a row whose attempts still equal what it claimed.
    attempts: Mapped[int] = mapped_column(default=0)
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    claimed_by: Mapped[str | None] = mapped_column(String(100))
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(Text)
    subject: Mapped[str | None] = mapped_column(String(300))
    # Mail to someone who is not a lead (an admin's test send).
    to_email: Mapped[str | None] = mapped_column(String(320))
    announcement_id: Mapped[int | None] = mapped_column(
        ForeignKey("announcement.id", ondelete="CASCADE")
    )
    training_class_id: Mapped[int | None] = mapped_column(
        ForeignKey("training_class.id", ondelete="CASCADE")
    )
    # The invitation or reset link a staff mail carries.
    staff_token_id: Mapped[int | None] = mapped_column(
        ForeignKey("staff_token.id", ondelete="CASCADE")
    )

    lead: Mapped[Lead | None] = relationship()
    announcement: Mapped[Announcement | None] = relationship()

    __table_args__ = (
        # The claim query: due rows by status and time.
        Index("ix_outbox_message_status_send_after", "status", "send_after"),
        # One row per announcement and lead, however often the fan-out runs.
        Index("uq_outbox_message_announcement_lead", "announcement_id", "lead_id", unique=True),
        # Frequency cap: a lead's recent marketing mail.
        Index("ix_outbox_message_lead_sent", "lead_id", "sent_at"),
        # Mails sent in a period, and per announcement (deliverability rates):
        # both counted from the index alone.
        Index("ix_outbox_message_sent_at_status", "sent_at", "status"),
        Index("ix_outbox_message_announcement_status", "announcement_id", "status"),
    )
