"""Bounce and complaint rates for the admins' deliverability page and the
warning on every admin page, aggregated in SQL.

A rate is events received in a period over mails sent in it (every kind of
mail: Gmail and Yahoo count complaints against all the mail a sender sends
them, confirmations included). Per announcement it is the events matched to
the announcement's own mails over the mails of it that were sent.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta

from flask import current_app
from sqlalchemy import func, select

from extensions import db
from models import Announcement, InboundEvent, InboundKind, OutboxMessage, OutboxStatus
from services import clock

# Gmail's and Yahoo's bulk sender guidelines (2024): keep spam complaints
# below 0.1%, and never let them reach 0.3%.
COMPLAINT_RECOMMENDED = 0.001
COMPLAINT_LIMIT = 0.003
WINDOWS = (7, 30)
CHART_DAYS = 30
RECENT_ANNOUNCEMENTS = 20
# The warning is read on every admin page: one minute per process keeps it
# to one aggregate query a minute, and a 7-day rate moves slower than that.
ALERT_CACHE_SECONDS = 60
BOUNCES = (InboundKind.HARD_BOUNCE, InboundKind.SOFT_BOUNCE)


def _rate(part: int, whole: int) -> float | None:
    return part / whole if whole else None


@dataclass
class Rates:
    label: str
    sent: int
    hard_bounces: int = 0
    soft_bounces: int = 0
    complaints: int = 0

    @property
    def bounces(self) -> int:
        return self.hard_bounces + self.soft_bounces

    @property
    def bounce_rate(self) -> float | None:
        return _rate(self.bounces, self.sent)

    @property
    def complaint_rate(self) -> float | None:
        return _rate(self.complaints, self.sent)

    @property
    def complaint_level(self) -> str:
        """ok, warn (past the recommended 0.1%) or over (at 0.3% or more)."""
        rate = self.complaint_rate or 0.0
        if rate >= COMPLAINT_LIMIT:
            return "over"
        return "warn" if rate > COMPLAINT_RECOMMENDED else "ok"


@dataclass
class Window:
    days: int
    rates: Rates
    # Every kind of event received in the window, bad signatures included.
    events: dict[str, int]


def _since(days: int) -> datetime:
    return clock.now() - timedelta(days=days)


def _sent_since(since: datetime) -> int:
    # ix_outbox_message_sent_at_status: an index range scan.
    return db.session.execute(
        select(func.count()).where(
            OutboxMessage.sent_at >= since, OutboxMessage.status == OutboxStatus.SENT
        )
    ).scalar_one()


def _events_since(since: datetime) -> dict[str, int]:
    # ix_inbound_event_kind_received_at.
    out = dict.fromkeys((k.value for k in InboundKind), 0)
    rows = db.session.execute(
        select(InboundEvent.kind, func.count())
        .where(InboundEvent.received_at >= since)
        .group_by(InboundEvent.kind)
    )
    for kind, n in rows:
        out[InboundKind(kind).value] = n
    return out


def window(days: int) -> Window:
    """Mails sent and events received in the last `days` days."""
    since = _since(days)
    events = _events_since(since)
    rates = Rates(
        label=f"Last {days} days",
        sent=_sent_since(since),
        hard_bounces=events[InboundKind.HARD_BOUNCE.value],
        soft_bounces=events[InboundKind.SOFT_BOUNCE.value],
        complaints=events[InboundKind.COMPLAINT.value],
    )
    return Window(days, rates, events)


def windows() -> list[Window]:
    return [window(d) for d in WINDOWS]


@dataclass
class AnnouncementRates:
    announcement: Announcement
    rates: Rates


def per_announcement(limit: int = RECENT_ANNOUNCEMENTS) -> list[AnnouncementRates]:
    """The most recently fanned-out announcements with their mails sent and
    the bounces and complaints matched to those mails; three queries."""
    anns = list(
        db.session.execute(
            select(Announcement)
            .where(Announcement.fanned_out_at.is_not(None))
            .order_by(Announcement.fanned_out_at.desc(), Announcement.id.desc())
            .limit(limit)
        ).scalars()
    )
    if not anns:
        return []
    ids = [a.id for a in anns]
    # ix_outbox_message_announcement_status: counted in the index.
    sent = dict(
        db.session.execute(
            select(OutboxMessage.announcement_id, func.count())
            .where(
                OutboxMessage.announcement_id.in_(ids),
                OutboxMessage.status == OutboxStatus.SENT,
            )
            .group_by(OutboxMessage.announcement_id)
        ).all()
    )
    # Events are few next to mails: read from inbound_event, joined by key.
    counted: dict[tuple[int, str], int] = {}
    rows = db.session.execute(
        select(OutboxMessage.announcement_id, InboundEvent.kind, func.count())
        .join(OutboxMessage, OutboxMessage.id == InboundEvent.outbox_message_id)
        .where(
            OutboxMessage.announcement_id.in_(ids),
            InboundEvent.kind.in_((*BOUNCES, InboundKind.COMPLAINT)),
        )
        .group_by(OutboxMessage.announcement_id, InboundEvent.kind)
    )
    for ann_id, kind, n in rows:
        counted[ann_id, InboundKind(kind).value] = n
    return [
        AnnouncementRates(
            a,
            Rates(
                label=a.subject,
                sent=sent.get(a.id, 0),
                hard_bounces=counted.get((a.id, InboundKind.HARD_BOUNCE.value), 0),
                soft_bounces=counted.get((a.id, InboundKind.SOFT_BOUNCE.value), 0),
                complaints=counted.get((a.id, InboundKind.COMPLAINT.value), 0),
            ),
        )
        for a in anns
    ]


def _utc_day(column):
    if db.session.get_bind().dialect.name == "postgresql":
        return func.date(func.timezone("UTC", column))
    return func.date(column)  # SQLite keeps naive UTC


def _as_date(value) -> date:
    return value if isinstance(value, date) else date.fromisoformat(str(value))


def daily(days: int = CHART_DAYS) -> list[tuple[date, Rates]]:
    """Every UTC day of the period, oldest first, days with no mail included."""
    today = clock.now().date()
    first = today - timedelta(days=days - 1)
    since = datetime.combine(first, datetime.min.time(), tzinfo=clock.now().tzinfo)
    day = _utc_day(OutboxMessage.sent_at)
    sent = {
        _as_date(d): n
        for d, n in db.session.execute(
            select(day, func.count())
            .where(OutboxMessage.sent_at >= since, OutboxMessage.status == OutboxStatus.SENT)
            .group_by(day)
        )
    }
    eday = _utc_day(InboundEvent.received_at)
    events: dict[tuple[date, str], int] = {}
    for d, kind, n in db.session.execute(
        select(eday, InboundEvent.kind, func.count())
        .where(
            InboundEvent.received_at >= since,
            InboundEvent.kind.in_((*BOUNCES, InboundKind.COMPLAINT)),
        )
        .group_by(eday, InboundEvent.kind)
    ):
        events[_as_date(d), InboundKind(kind).value] = n
    out = []
    for i in range(days):
        d = first + timedelta(days=i)
        out.append(
            (
                d,
                Rates(
                    label=d.isoformat(),
                    sent=sent.get(d, 0),
                    hard_bounces=events.get((d, InboundKind.HARD_BOUNCE.value), 0),
                    soft_bounces=events.get((d, InboundKind.SOFT_BOUNCE.value), 0),
                    complaints=events.get((d, InboundKind.COMPLAINT.value), 0),
                ),
            )
        )
    return out


def complaint_alert() -> Rates | None:
    """The last 7 days' rates when complaints passed 0.1% of the mail sent,
    else None. Cached per process (and app) for ALERT_CACHE_SECONDS."""
    cache = current_app.extensions.setdefault("deliverability_alert", {})
    now = clock.now()
    if cache.get("until") is None or now >= cache["until"] or now < cache["at"]:
        since = _since(7)
        complaints = db.session.execute(
            select(func.count()).where(
                InboundEvent.kind == InboundKind.COMPLAINT, InboundEvent.received_at >= since
            )
        ).scalar_one()
        # No complaints, no need to count the mails.
        rates = Rates("Last 7 days", _sent_since(since) if complaints else 0, complaints=complaints)
        cache.update(
            at=now,
            until=now + timedelta(seconds=ALERT_CACHE_SECONDS),
            rates=rates if rates.complaint_level != "ok" else None,
        )
    return cache["rates"]


@dataclass
class RateBar:
    x: float
    y: float
    width: float
    height: float
    day: date
    rate: float | None
    part: int
    sent: int


@dataclass
class Threshold:
    y: float
    rate: float
    label: str
    level: str  # warn, over: a CSS class


def rate_chart(
    series: list[tuple[date, Rates]],
    kind: str,
    thresholds: tuple[tuple[float, str, str], ...] = (),
    width: int = 720,
    height: int = 180,
) -> dict:
    """Geometry for a server-side SVG chart of a daily rate (`kind` is
    "bounce" or "complaint"), with horizontal lines at `thresholds`
    ((rate, label, level), ...). The scale always shows every threshold."""
    picked = [
        (d, getattr(r, f"{kind}_rate"), r.complaints if kind == "complaint" else r.bounces, r.sent)
        for d, r in series
    ]
    peak = max([rate or 0.0 for _, rate, _, _ in picked] + [t[0] * 1.25 for t in thresholds])
    top = peak or 0.01
    slot = width / max(len(picked), 1)

    def y(rate: float) -> float:
        return height - min(rate / top, 1.0) * height

    bars = [
        RateBar(
            x=i * slot + slot * 0.1,
            y=y(rate or 0.0),
            width=slot * 0.8,
            height=height - y(rate or 0.0),
            day=d,
            rate=rate,
            part=part,
            sent=sent,
        )
        for i, (d, rate, part, sent) in enumerate(picked)
    ]
    return {
        "bars": bars,
        "lines": [Threshold(y(rate), rate, label, level) for rate, label, level in thresholds],
        "width": width,
        "height": height,
        "top": top,
        "sent": sum(s for *_, s in picked),
        "part": sum(p for _, _, p, _ in picked),
    }


COMPLAINT_THRESHOLDS = (
    (COMPLAINT_RECOMMENDED, "0.1%: Gmail and Yahoo recommend staying below", "warn"),
    (COMPLAINT_LIMIT, "0.3%: Gmail and Yahoo limit, never reach", "over"),
)
