"""Addresses never to be mailed again, kept as hashes."""

from __future__ import annotations

import hashlib
from datetime import datetime

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, UTCDateTime, utcnow


def email_hash(normalised_email: str) -> str:
    return hashlib.sha256(normalised_email.encode("utf-8")).hexdigest()


class Suppression(Base):
    __tablename__ = "suppression"

    email_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    # hard_bounce, complaint, erased
    reason: Mapped[str] = mapped_column(String(40))
    detail: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
