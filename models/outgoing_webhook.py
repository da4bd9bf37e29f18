"""Outgoing webhooks: endpoints admins register, the events each receives,
and one delivery row per event and endpoint (the queue and the delivery log
at once, like the outbox). Not the inbound ESP webhooks of models.inbound."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from models.base import Base, UTCDateTime, new_public_id, string_enum, utcnow
from models.user import User


class DeliveryStatus(enum.StrEnum):
    QUEUED = "queued"  # waiting for send_after
    SENDING = "sending"  # claimed by a worker until lease_until
    DELIVERED = "delivered"  # the receiver answered 2xx
    FAILED = "failed"  # out of attempts, or refused (SSRF)
    SKIPPED = "skipped"  # its endpoint was disabled or deleted before it went


class WebhookEndpoint(Base):
    __tablename__ = "webhook_endpoint"

    id: Mapped[int] = mapped_column(primary_key=True)
    public_id: Mapped[str] = mapped_column(String(24), unique=True, default=new_public_id)
    url: Mapped[str] = mapped_column(String(2000))
    description: Mapped[str] = mapped_column(String(200), default="")
    # Fernet token of the whsec_ secret (services.outgoing_webhooks.secrets).
    secret_encrypted: Mapped[str] = mapped_column(Text)
    enabled: Mapped[bool] = mapped_column(default=True)
    disabled_reason: Mapped[str | None] = mapped_column(String(300))
    created_by_id: Mapped[int | None] = mapped_column(
        ForeignKey("user_account.id", ondelete="SET NULL")
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # Set by the first failure after a success; cleared by a success. The
    # endpoint is disabled once it is older than WEBHOOK_DISABLE_AFTER_DAYS.
    failing_since: Mapped[datetime | None] = mapped_column(UTCDateTime)

    created_by: Mapped[User | None] = relationship()
    subscriptions: Mapped[list[WebhookSubscription]] = relationship(
        cascade="all, delete-orphan", passive_deletes=True
    )

    @property
    def event_types(self) -> list[str]:
        return sorted(s.event_type for s in self.subscriptions)


class WebhookSubscription(Base):
    """One event type an endpoint receives: emit's INSERT ... SELECT joins it."""

    __tablename__ = "webhook_subscription"

    endpoint_id: Mapped[int] = mapped_column(
        ForeignKey("webhook_endpoint.id", ondelete="CASCADE"), primary_key=True
    )
    event_type: Mapped[str] = mapped_column(String(40), primary_key=True)

    __table_args__ = (Index("ix_webhook_subscription_event_type", "event_type"),)


class WebhookDelivery(Base):
    __tablename__ = "webhook_delivery"

    id: Mapped[int] = mapped_column(primary_key=True)
    endpoint_id: Mapped[int] = mapped_column(ForeignKey("webhook_endpoint.id", ondelete="CASCADE"))
    event_type: Mapped[str] = mapped_column(String(40))
    # The webhook-id header: the same on every retry, so receivers dedupe.
    message_id: Mapped[str] = mapped_column(String(40))
    # The exact bytes signed and sent (JSON), the same on every retry.
    body: Mapped[str] = mapped_column(Text)
    # The lead the event is about: an erasure finds its events by it.
    lead_public_id: Mapped[str | None] = mapped_column(String(24))
    status: Mapped[DeliveryStatus] = mapped_column(
        string_enum(DeliveryStatus, "webhook_delivery_status"), default=DeliveryStatus.QUEUED
    )
    send_after: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # The fencing token, as in the outbox (services.delivery.claim).
    attempts: Mapped[int] = mapped_column(default=0)
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    claimed_by: Mapped[str | None] = mapped_column(String(100))
    # The latest attempt: what the delivery log shows.
    attempted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    response_status: Mapped[int | None] = mapped_column()
    duration_ms: Mapped[int | None] = mapped_column()
    last_error: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (
        Index("ix_webhook_delivery_status_send_after", "status", "send_after"),
        # The delivery log of one endpoint, newest first.
        Index("ix_webhook_delivery_endpoint_id", "endpoint_id", "id"),
        Index("uq_webhook_delivery_endpoint_message", "endpoint_id", "message_id", unique=True),
        Index("ix_webhook_delivery_lead_public_id", "lead_public_id"),
    )
