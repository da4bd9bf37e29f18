"""What staff accounts own besides the account row: sign-in sessions,
emailed links (invitations, password resets) and 2FA recovery codes."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from models.base import Base, UTCDateTime, string_enum, utcnow
from models.user import Role, User


class StaffSession(Base):
    """One sign-in: the session cookie names it by a random key, stored here
    only as its SHA-256 (a copy of the table signs nobody in)."""

    __tablename__ = "staff_session"

    id: Mapped[int] = mapped_column(primary_key=True)
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("user_account.id", ondelete="CASCADE"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    ip: Mapped[str | None] = mapped_column(String(45))
    user_agent: Mapped[str | None] = mapped_column(String(300))
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    user: Mapped[User] = relationship()

    # A user's open sessions: listed on the account page, ended all at once.
    __table_args__ = (Index("ix_staff_session_user_ended", "user_id", "ended_at"),)


class TokenPurpose(enum.StrEnum):
    INVITATION = "invitation"
    PASSWORD_RESET = "password_reset"  # noqa: S105 (a purpose, not a password)


class StaffToken(Base):
    """A link sent by mail that works once until it expires. The link's
    token is an HMAC of `nonce` under SECRET_KEY (so the worker can put it in
    the mail later); only its SHA-256 is stored to find the row."""

    __tablename__ = "staff_token"

    id: Mapped[int] = mapped_column(primary_key=True)
    purpose: Mapped[TokenPurpose] = mapped_column(string_enum(TokenPurpose, "token_purpose"))
    nonce: Mapped[str] = mapped_column(String(43))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    email: Mapped[str] = mapped_column(String(320))
    # The invited role; the account a reset is for.
    role: Mapped[Role | None] = mapped_column(string_enum(Role, "user_role"))
    user_id: Mapped[int | None] = mapped_column(ForeignKey("user_account.id", ondelete="CASCADE"))
    created_by_id: Mapped[int | None] = mapped_column(
        ForeignKey("user_account.id", ondelete="SET NULL")
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    created_by: Mapped[User | None] = relationship(foreign_keys=[created_by_id])

    # Pending invitations, and a user's open resets (voided by a new one).
    __table_args__ = (Index("ix_staff_token_purpose_email", "purpose", "email"),)


class RecoveryCode(Base):
    """A 2FA recovery code, stored as its SHA-256; usable once."""

    __tablename__ = "staff_recovery_code"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(
        ForeignKey("user_account.id", ondelete="CASCADE"), index=True
    )
    code_hash: Mapped[str] = mapped_column(String(64))
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
