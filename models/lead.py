"""A lead: one person, one normalised address, and the evidence of consent."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import ForeignKey, Index, String, Text, func
from sqlalchemy.orm import Mapped, mapped_column, relationship

from models.base import Base, UTCDateTime, new_public_id, string_enum, utcnow

if TYPE_CHECKING:
    from models.lead_import import LeadImport


class LeadStatus(enum.StrEnum):
    PENDING = "pending"
    CONFIRMED = "confirmed"
    UNSUBSCRIBED = "unsubscribed"


class Lead(Base):
    __tablename__ = "lead"

    id: Mapped[int] = mapped_column(primary_key=True)
    public_id: Mapped[str] = mapped_column(String(24), unique=True, default=new_public_id)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    name: Mapped[str | None] = mapped_column(String(100))
    status: Mapped[LeadStatus] = mapped_column(
        string_enum(LeadStatus, "lead_status"), default=LeadStatus.PENDING
    )
    # First touch: where the person first signed up. Each later signup is a
    # ConsentEvent with its own source.
    source_slug: Mapped[str | None] = mapped_column(String(200))
    source_placement: Mapped[str | None] = mapped_column(String(20))
    utm_source: Mapped[str | None] = mapped_column(String(200))
    utm_medium: Mapped[str | None] = mapped_column(String(200))
    utm_campaign: Mapped[str | None] = mapped_column(String(200))
    utm_term: Mapped[str | None] = mapped_column(String(200))
    utm_content: Mapped[str | None] = mapped_column(String(200))
    referrer: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    confirmed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    unsubscribed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # When the last confirmation (or "already subscribed") mail was queued:
    # one per address per window, however often the address is submitted.
    last_confirmation_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    topics: Mapped[list[LeadTopic]] = relationship(
        back_populates="lead", cascade="all, delete-orphan", lazy="selectin"
    )
    consent_events: Mapped[list[ConsentEvent]] = relationship(
        back_populates="lead", cascade="all, delete-orphan", order_by="ConsentEvent.id"
    )

    # The lead browser filters and sorts by these at a million rows; each
    # filter column leads its own index with (created_at, id) for keyset pages.
    __table_args__ = (
        Index("ix_lead_created_at_id", "created_at", "id"),
        Index("ix_lead_status_created_at", "status", "created_at", "id"),
        Index("ix_lead_source_created_at", "source_slug", "source_placement", "status"),
        Index("ix_lead_utm_source", "utm_source", "created_at"),
        Index("ix_lead_utm_campaign", "utm_campaign", "created_at"),
    )

    @property
    def topic_slugs(self) -> set[str]:
        return {t.topic for t in self.topics}

    def __repr__(self) -> str:
        return f"<Lead {self.public_id} {self.status}>"


# Where a lead came from, by campaign: the form, the export and the signup
# all read this list from the model.
UTM_KEYS = tuple(c.key for c in Lead.__table__.c if c.key.startswith("utm_"))

# Name search is by prefix, case-insensitive.
Index("ix_lead_name_lower", func.lower(Lead.name))


class LeadTopic(Base):
    """What a lead asked to hear about (see services.leads.topics for the list)."""

    __tablename__ = "lead_topic"

    lead_id: Mapped[int] = mapped_column(
        ForeignKey("lead.id", ondelete="CASCADE"), primary_key=True
    )
    topic: Mapped[str] = mapped_column(String(40), primary_key=True)

    lead: Mapped[Lead] = relationship(back_populates="topics")

    # Audience queries go topic -> leads.
    __table_args__ = (Index("ix_lead_topic_topic_lead_id", "topic", "lead_id"),)


class ConsentText(Base):
    """The exact wording a person was shown, stored once per version."""

    __tablename__ = "consent_text"

    hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    text: Mapped[str] = mapped_column(Text)
    first_seen_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ConsentKind(enum.StrEnum):
    GIVEN = "given"
    CONFIRMED = "confirmed"
    WITHDRAWN = "withdrawn"
    TOPICS_CHANGED = "topics_changed"


class ConsentEvent(Base):
    """One fact of the consent record: given, confirmed, changed or withdrawn."""

    __tablename__ = "consent_event"

    id: Mapped[int] = mapped_column(primary_key=True)
    lead_id: Mapped[int] = mapped_column(ForeignKey("lead.id", ondelete="CASCADE"), index=True)
    kind: Mapped[ConsentKind] = mapped_column(string_enum(ConsentKind, "consent_kind"))
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # form, link, one-click, preferences
    channel: Mapped[str] = mapped_column(String(20))
    ip: Mapped[str | None] = mapped_column(String(45))
    user_agent: Mapped[str | None] = mapped_column(String(500))
    consent_hash: Mapped[str | None] = mapped_column(ForeignKey("consent_text.hash"))
    topics: Mapped[str | None] = mapped_column(String(200))
    source_slug: Mapped[str | None] = mapped_column(String(200))
    placement: Mapped[str | None] = mapped_column(String(20))
    # The API token a signup or change came through (channel "api").
    api_token_id: Mapped[int | None] = mapped_column(
        ForeignKey("api_token.id", ondelete="SET NULL"), index=True
    )
    # An imported lead's evidence: the file, its stated basis, who and when.
    import_id: Mapped[int | None] = mapped_column(ForeignKey("lead_import.id", ondelete="SET NULL"))

    lead: Mapped[Lead] = relationship(back_populates="consent_events")
    consent_text: Mapped[ConsentText | None] = relationship()
    lead_import: Mapped[LeadImport | None] = relationship()
