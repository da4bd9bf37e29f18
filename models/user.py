"""Staff accounts: marketers and admins."""

from __future__ import annotations

import enum
from datetime import datetime

from flask_login import UserMixin
from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, UTCDateTime, string_enum, utcnow


class Role(enum.StrEnum):
    MARKETER = "marketer"
    ADMIN = "admin"


class User(UserMixin, Base):
    __tablename__ = "user_account"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    password_hash: Mapped[str] = mapped_column(String(300))
    role: Mapped[Role] = mapped_column(string_enum(Role, "user_role"), default=Role.MARKETER)
    active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_login_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Two-factor sign-in (services/staff/two_factor.py): the TOTP secret,
    # encrypted with a key derived from SECRET_KEY; set once a code proved it.
    totp_secret: Mapped[str | None] = mapped_column(String(200))
    totp_enabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The last time step whose code was accepted: no code works twice.
    totp_last_step: Mapped[int | None] = mapped_column()

    # The sign-in this request runs under (services/staff/sessions.py sets
    # it): Flask-Login's id is "<user id>:<session key>".
    session_key = None
    staff_session_id = None

    def get_id(self) -> str:
        if not self.session_key:
            raise RuntimeError("a user is signed in through services.staff.sessions.start")
        return f"{self.id}:{self.session_key}"

    @property
    def two_factor_enabled(self) -> bool:
        return self.totp_enabled_at is not None

    @property
    def is_active(self) -> bool:  # Flask-Login refuses inactive users
        return self.active

    @property
    def is_admin(self) -> bool:
        return self.role == Role.ADMIN

    def can(self, role: Role) -> bool:
        return self.role == Role.ADMIN or self.role == role
