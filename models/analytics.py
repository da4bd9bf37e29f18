"""Article views per day, counted on the server without cookies."""

from __future__ import annotations

from datetime import date

from sqlalchemy import Date, String
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base


class PageViewDaily(Base):
    __tablename__ = "page_view_daily"

    slug: Mapped[str] = mapped_column(String(200), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    views: Mapped[int] = mapped_column(default=0)


class SignupStatsDaily(Base):
    """The funnel, rolled up as it happens: one row per signup day and source.

    Kept in the same transaction as each signup, confirmation and unsubscribe,
    so the dashboard reads a few hundred rows instead of a million leads.
    Confirmations and unsubscribes count against the lead's signup cohort.
    Empty strings stand for "none" so the key can be a primary key.
    """

    __tablename__ = "signup_stats_daily"

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    source_slug: Mapped[str] = mapped_column(String(200), primary_key=True)
    placement: Mapped[str] = mapped_column(String(20), primary_key=True)
    utm_source: Mapped[str] = mapped_column(String(200), primary_key=True)
    submissions: Mapped[int] = mapped_column(default=0)
    signups: Mapped[int] = mapped_column(default=0)
    confirmed: Mapped[int] = mapped_column(default=0)
    unsubscribed: Mapped[int] = mapped_column(default=0)
    clicks: Mapped[int] = mapped_column(default=0)
