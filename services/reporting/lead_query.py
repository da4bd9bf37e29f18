"""One definition of "which leads": the browser, the CSV export and the CLI
export all build their query here, so an export is exactly what the browser
shows."""

from __future__ import annotations

import base64
import json
import re
from dataclasses import asdict, dataclass, fields
from datetime import UTC, date, datetime

from sqlalchemy import Select, and_, exists, func, or_, select

from extensions import db
from models import Lead, LeadStatus, LeadTopic
from services import dates
from services.leads import topics

SORTS = {
    "newest": (Lead.created_at, "desc"),
    "oldest": (Lead.created_at, "asc"),
    "email": (Lead.email, "asc"),
}


class FilterError(ValueError):
    pass


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
BROKEN_CURSOR = "That page link is broken; start from the first page."


@dataclass(frozen=True)
class LeadFilters:
    q: str = ""
    status: str = ""
    topic: str = ""
    source: str = ""
    placement: str = ""
    utm_source: str = ""
    utm_campaign: str = ""
    since: date | None = None
    until: date | None = None
    sort: str = "newest"

    @classmethod
    def parse(cls, args) -> LeadFilters:
        """From query-string-like input; raises FilterError with a readable message."""

        def text(name: str, limit: int = 200) -> str:
            # Control characters can't be typed into the form, and PostgreSQL
            # refuses NUL in a text parameter (a 500): drop them.
            raw = _CONTROL.sub("", args.get(name) or "")
            return raw.strip()[:limit]

        def day(name: str) -> date | None:
            raw = text(name, 20)
            if not raw:
                return None
            try:
                return dates.check(date.fromisoformat(raw), name)
            except dates.DateRangeError as exc:
                raise FilterError(str(exc)) from exc
            except ValueError as exc:
                raise FilterError(f"{name}: use a date like 2026-01-31") from exc

        status = text("status")
        if status and status not in {s.value for s in LeadStatus}:
            raise FilterError(f"status: one of {', '.join(s.value for s in LeadStatus)}")
        topic = text("topic")
        if topic and topic not in topics.TOPICS:
            raise FilterError(f"topic: one of {', '.join(topics.TOPICS)}")
        sort = text("sort") or "newest"
        if sort not in SORTS:
            raise FilterError(f"sort: one of {', '.join(SORTS)}")
        since, until = day("since"), day("until")
        if since and until and since > until:
            raise FilterError("since is after until")
        return cls(
            q=text("q", 100),
            status=status,
            topic=topic,
            source=text("source"),
            placement=text("placement", 20),
            utm_source=text("utm_source"),
            utm_campaign=text("utm_campaign"),
            since=since,
            until=until,
            sort=sort,
        )

    def as_args(self) -> dict[str, str]:
        """Back to query-string form, without empty values (for links)."""
        out = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if value and not (f.name == "sort" and value == "newest"):
                out[f.name] = value.isoformat() if isinstance(value, date) else str(value)
        return out

    def describe(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v} | {
            k: v.isoformat() for k, v in asdict(self).items() if isinstance(v, date)
        }


def filtered(f: LeadFilters) -> Select:
    """SELECT lead WHERE <filters>, unordered."""
    stmt = select(Lead)
    if f.q:
        # Prefix ranges rather than LIKE: they use the indexes on email and
        # lower(name) on every backend, at a million rows.
        low = f.q.lower()
        name = func.lower(Lead.name)
        matches = [_prefix(Lead.email, low), _prefix(name, low)]
        if db.session.get_bind().dialect.name == "sqlite":
            # SQLite's lower() folds ASCII only: lower('Élodie') is 'Élodie'.
            # Also look for what it makes of the name typed as typed and
            # capitalised, so 'élodie', 'Élo' and 'ÉLODIE' all find Élodie.
            for variant in {_ascii_lower(f.q), _ascii_lower(f.q.lower().capitalize())} - {low}:
                matches.append(_prefix(name, variant))
        stmt = stmt.where(or_(*matches))
    if f.status:
        stmt = stmt.where(Lead.status == LeadStatus(f.status))
    if f.topic:
        stmt = stmt.where(exists().where(LeadTopic.lead_id == Lead.id, LeadTopic.topic == f.topic))
    if f.source:
        stmt = stmt.where(Lead.source_slug == f.source)
    if f.placement:
        stmt = stmt.where(Lead.source_placement == f.placement)
    if f.utm_source:
        stmt = stmt.where(Lead.utm_source == f.utm_source)
    if f.utm_campaign:
        stmt = stmt.where(Lead.utm_campaign == f.utm_campaign)
    if f.since:
        stmt = stmt.where(Lead.created_at >= dates.day_start(f.since))
    end = dates.day_end(f.until) if f.until else None
    if end is not None:
        stmt = stmt.where(Lead.created_at < end)
    return stmt


def _prefix(column, low: str):
    # The highest code point, not U+FFFF: "ann😀" sorts above "ann\uffff" (in
    # UTF-8 bytes and code points alike) and would be missed.
    return and_(column >= low, column < low + "\U0010ffff")


_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def _ascii_lower(value: str) -> str:
    return value.translate(_ASCII_LOWER)


def ordered(f: LeadFilters, stmt: Select) -> Select:
    column, direction = SORTS[f.sort]
    if direction == "desc":
        return stmt.order_by(column.desc(), Lead.id.desc())
    return stmt.order_by(column.asc(), Lead.id.asc())


# Keyset pagination: the cursor is the last row's (sort value, id), so page
# 5,000 costs what page 1 costs.


def encode_cursor(value, lead_id: int) -> str:
    if isinstance(value, datetime):
        value = {"t": value.isoformat()}
    raw = json.dumps([value, lead_id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, sort: str = "newest"):
    """(sort value, lead id) from a cursor made by encode_cursor for `sort`.

    A cursor is input like any other (edited by hand, or a link from another
    sort): anything but what encode_cursor makes is a FilterError, never a
    value that reaches SQL with the wrong type (a 500)."""
    if len(cursor) > 1000:
        raise FilterError(BROKEN_CURSOR)
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        value, lead_id = json.loads(raw)
    except (ValueError, TypeError, RecursionError) as exc:
        raise FilterError(BROKEN_CURSOR) from exc
    if type(lead_id) is not int or not 0 < lead_id < 2**63:
        raise FilterError(BROKEN_CURSOR)
    column, _ = SORTS[sort]
    if column is Lead.created_at:
        if not (isinstance(value, dict) and set(value) == {"t"} and isinstance(value["t"], str)):
            raise FilterError(BROKEN_CURSOR)
        try:
            value = datetime.fromisoformat(value["t"])
            if value.tzinfo is None:
                raise ValueError("naive")
            value = value.astimezone(UTC)
        except (ValueError, OverflowError) as exc:
            raise FilterError(BROKEN_CURSOR) from exc
    elif not isinstance(value, str) or len(value) > 320 or _CONTROL.search(value):
        raise FilterError(BROKEN_CURSOR)
    return value, lead_id


def _after(f: LeadFilters, stmt: Select, cursor: str) -> Select:
    value, lead_id = decode_cursor(cursor, f.sort)
    column, direction = SORTS[f.sort]
    if direction == "desc":
        return stmt.where(or_(column < value, and_(column == value, Lead.id < lead_id)))
    return stmt.where(or_(column > value, and_(column == value, Lead.id > lead_id)))


@dataclass
class Page:
    leads: list[Lead]
    next_cursor: str | None
    total: int
    total_capped: bool


COUNT_CAP = 1_000


def page(f: LeadFilters, cursor: str | None = None, per_page: int = 50) -> Page:
    stmt = filtered(f)
    if cursor:
        stmt = _after(f, stmt, cursor)
    rows = list(db.session.execute(ordered(f, stmt).limit(per_page + 1)).scalars())
    next_cursor = None
    if len(rows) > per_page:
        rows = rows[:per_page]
        last = rows[-1]
        column, _ = SORTS[f.sort]
        next_cursor = encode_cursor(getattr(last, column.key), last.id)
    total, capped = count(f)
    return Page(leads=rows, next_cursor=next_cursor, total=total, total_capped=capped)


def count(f: LeadFilters, cap: int = COUNT_CAP) -> tuple[int, bool]:
    """How many leads match, counted up to a cap (an exact count of a
    million rows is not worth the wait on every page)."""
    inner = filtered(f).with_only_columns(Lead.id).limit(cap + 1).subquery()
    n = db.session.execute(select(func.count()).select_from(inner)).scalar_one()
    return min(n, cap), n > cap
