"""The marketer dashboard's figures, aggregated in SQL."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

from sqlalchemy import func, select

from extensions import db
from models import PageViewDaily, SignupStatsDaily
from services import clock


@dataclass
class FunnelRow:
    key: str
    views: int | None
    submissions: int
    signups: int
    confirmed: int
    unsubscribed: int
    clicks: int = 0

    @staticmethod
    def rate(part: int | None, whole: int | None) -> float | None:
        if not whole or part is None:
            return None
        return part / whole

    @property
    def signup_rate(self) -> float | None:
        return self.rate(self.signups, self.views)

    @property
    def confirm_rate(self) -> float | None:
        return self.rate(self.confirmed, self.signups)

    @property
    def click_rate(self) -> float | None:
        """Register clicks per confirmed lead: the funnel's last step."""
        return self.rate(self.clicks, self.confirmed)

    @property
    def unsubscribe_rate(self) -> float | None:
        return self.rate(self.unsubscribed, self.confirmed)


def _funnel(group_col) -> dict[str, tuple[int, int, int, int, int]]:
    rows = db.session.execute(
        select(
            group_col,
            func.sum(SignupStatsDaily.submissions),
            func.sum(SignupStatsDaily.signups),
            func.sum(SignupStatsDaily.confirmed),
            func.sum(SignupStatsDaily.unsubscribed),
            func.sum(SignupStatsDaily.clicks),
        ).group_by(group_col)
    ).all()
    return {key: tuple(int(v or 0) for v in values) for key, *values in rows}


def _rows(counts: dict, views: dict | None) -> list[FunnelRow]:
    out = []
    for key in set(counts) | set(views or {}):
        submissions, signups, confirmed, unsub, clicks = counts.get(key, (0, 0, 0, 0, 0))
        out.append(
            FunnelRow(
                key=key or "(unknown)",
                views=int(views.get(key) or 0) if views is not None else None,
                submissions=submissions,
                signups=signups,
                confirmed=confirmed,
                unsubscribed=unsub,
                clicks=clicks,
            )
        )
    return sorted(out, key=lambda r: (-r.signups, r.key))


def funnel_by_article() -> list[FunnelRow]:
    views = dict(
        db.session.execute(
            select(PageViewDaily.slug, func.sum(PageViewDaily.views)).group_by(PageViewDaily.slug)
        ).all()
    )
    return _rows(_funnel(SignupStatsDaily.source_slug), views)


def funnel_by_placement() -> list[FunnelRow]:
    return _rows(_funnel(SignupStatsDaily.placement), None)


def signups_per_day(days: int) -> list[tuple[date, int]]:
    """Every day of the period, zeros included, oldest first (UTC days)."""
    today = clock.now().date()
    first = today - timedelta(days=days - 1)
    rows = db.session.execute(
        select(SignupStatsDaily.day, func.sum(SignupStatsDaily.signups))
        .where(SignupStatsDaily.day >= first)
        .group_by(SignupStatsDaily.day)
    ).all()
    counts = {d: int(n or 0) for d, n in rows}
    return [
        (first + timedelta(days=i), counts.get(first + timedelta(days=i), 0)) for i in range(days)
    ]


def top_utm_sources(limit: int = 10) -> list[tuple[str, int, int]]:
    """(utm_source, signups, confirmed), most signups first."""
    signups = func.sum(SignupStatsDaily.signups)
    rows = db.session.execute(
        select(SignupStatsDaily.utm_source, signups, func.sum(SignupStatsDaily.confirmed))
        .where(SignupStatsDaily.utm_source != "")
        .group_by(SignupStatsDaily.utm_source)
        .order_by(signups.desc())
        .limit(limit)
    ).all()
    return [(s, int(n or 0), int(c or 0)) for s, n, c in rows if n]


@dataclass
class Bar:
    x: float
    y: float
    width: float
    height: float
    day: date
    count: int


def bar_chart(series: list[tuple[date, int]], width: int = 720, height: int = 180) -> dict:
    """Geometry for a server-side SVG bar chart (no JavaScript, no CDN)."""
    peak = max((n for _, n in series), default=0) or 1
    slot = width / max(len(series), 1)
    bars = [
        Bar(
            x=i * slot + slot * 0.1,
            y=height - (n / peak) * height,
            width=slot * 0.8,
            height=(n / peak) * height,
            day=d,
            count=n,
        )
        for i, (d, n) in enumerate(series)
    ]
    return {
        "bars": bars,
        "width": width,
        "height": height,
        "peak": peak,
        "total": sum(n for _, n in series),
    }
