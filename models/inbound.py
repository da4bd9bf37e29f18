"""What comes back after a mail left: bounces, complaints, auto-replies."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import ForeignKey, Index, LargeBinary, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, UTCDateTime, string_enum, utcnow


class InboundKind(enum.StrEnum):
    HARD_BOUNCE = "hard_bounce"  # 5.x.x: the address does not take mail
    SOFT_BOUNCE = "soft_bounce"  # 4.x.x: not now (a full mailbox, a delay)
    COMPLAINT = "complaint"  # ARF: the reader marked it as spam
    AUTO_REPLY = "auto_reply"  # out of office and the like: ignored
    UNPARSED = "unparsed"  # kept for a person to read
    BAD_SIGNATURE = "bad_signature"  # a VERP tag we did not sign: ignored

    @property
    def label(self) -> str:
        return self.value.replace("_", " ")


class InboundEvent(Base):
    """One message received at the bounce address (or, later, from a mailbox
    or an ESP's webhook), what it said and what was done about it."""

    __tablename__ = "inbound_event"

    id: Mapped[int] = mapped_column(primary_key=True)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # smtp (flask bounces serve), imap (flask bounces fetch); later webhook:<provider>
    source: Mapped[str] = mapped_column(String(40), default="smtp")
    kind: Mapped[InboundKind] = mapped_column(string_enum(InboundKind, "inbound_kind"))
    # The enhanced status code (RFC 3463) of the failure, e.g. 5.1.1.
    status_code: Mapped[str | None] = mapped_column(String(20))
    diagnostic: Mapped[str | None] = mapped_column(String(1000))
    # The address the event is about: the address our mail went to when the
    # event was matched to it, else what the report names.
    recipient: Mapped[str | None] = mapped_column(String(320))
    # Set only when matched to a mail of ours: soft bounces are counted by it,
    # so a report naming an address without our signature counts for nothing.
    email_hash: Mapped[str | None] = mapped_column(String(64))
    # Where it was delivered (the VERP address), as the envelope said.
    envelope_to: Mapped[str | None] = mapped_column(String(320))
    outbox_message_id: Mapped[int | None] = mapped_column(
        ForeignKey("outbox_message.id", ondelete="SET NULL"), index=True
    )
    # SET NULL: an erasure deletes the lead whatever came back for it.
    lead_id: Mapped[int | None] = mapped_column(
        ForeignKey("lead.id", ondelete="SET NULL"), index=True
    )
    # What was done: "suppressed (hard bounce)", "soft bounce 1 of 3 in 30 days"...
    outcome: Mapped[str | None] = mapped_column(String(300))
    # The same message received twice (an MTA that resends, a mailbox read
    # twice) is one event: a hash of the report's Message-ID, or of its bytes.
    dedupe_key: Mapped[str] = mapped_column(String(64), unique=True)
    # The message as received, up to bounces.RAW_KEEP_BYTES; raw_size is its
    # whole size. Erasure clears it with the address and the diagnostic.
    raw: Mapped[bytes | None] = mapped_column(LargeBinary)
    raw_size: Mapped[int] = mapped_column(default=0)

    __table_args__ = (
        # Soft bounces of one address in the last BOUNCE_SOFT_DAYS.
        Index("ix_inbound_event_email_hash_received_at", "email_hash", "received_at"),
        # Counts by kind over a period (flask outbox status, rates).
        Index("ix_inbound_event_kind_received_at", "kind", "received_at"),
    )


class WebhookNonce(Base):
    """A signature token an ESP webhook used (Mailgun's), kept while its
    timestamp is fresh: a captured request posted again is refused."""

    __tablename__ = "webhook_nonce"

    id: Mapped[int] = mapped_column(primary_key=True)
    provider: Mapped[str] = mapped_column(String(20))
    # sha256 of the token: fixed length whatever a stranger sends.
    token_hash: Mapped[str] = mapped_column(String(64))
    seen_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)

    __table_args__ = (UniqueConstraint("provider", "token_hash"),)
