"""CSV export of leads: streamed, RFC 4180, safe to open in a spreadsheet.

The web download and `flask leads export` both call iter_csv, so they write
the same bytes for the same filters.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterator

from sqlalchemy import String, func, select, type_coerce

from extensions import db
from models import Lead, LeadTopic, User, UTCDateTime
from services.reporting.lead_query import LeadFilters, filtered, ordered
from services.staff import audit

COLUMNS = (
    ("id", Lead.public_id),
    ("email", Lead.email),
    ("name", Lead.name),
    ("status", Lead.status),
    ("topics", None),  # filled from lead_topic
    ("source", Lead.source_slug),
    ("placement", Lead.source_placement),
    ("utm_source", Lead.utm_source),
    ("utm_medium", Lead.utm_medium),
    ("utm_campaign", Lead.utm_campaign),
    ("utm_term", Lead.utm_term),
    ("utm_content", Lead.utm_content),
    ("referrer", Lead.referrer),
    ("signed_up_at", Lead.created_at),
    ("confirmed_at", Lead.confirmed_at),
    ("unsubscribed_at", Lead.unsubscribed_at),
)
HEADER = [name for name, _ in COLUMNS]
# A cell starting with one of these is a formula to Excel, LibreOffice and
# Google Sheets (OWASP "CSV injection"): prefix it with a quote.
DANGEROUS_PREFIXES = ("=", "+", "-", "@", "\t", "\r", "\n", "\0")
BOM = "\ufeff"
ROWS_PER_CHUNK = 1000


def neutralise(value: str) -> str:
    if value and value.startswith(DANGEROUS_PREFIXES):
        return "'" + value
    return value


def _timestamp(column, dialect: str):
    """A UTC timestamp as ISO 8601 text, formatted by the database: a million
    rows need no Python datetime objects. Same text as datetime.isoformat()."""
    if dialect == "postgresql":
        return func.to_char(func.timezone("UTC", column), 'YYYY-MM-DD"T"HH24:MI:SS.US"+00:00"')
    # SQLite keeps "YYYY-MM-DD HH:MM:SS.ffffff" in UTC (models.base.UTCDateTime).
    return func.replace(type_coerce(column, String), " ", "T") + "+00:00"


def _topics_column():
    dialect = db.session.get_bind().dialect.name
    if dialect == "postgresql":
        agg = func.string_agg(LeadTopic.topic, ";")
    else:
        agg = func.group_concat(LeadTopic.topic, ";")
    return select(agg).where(LeadTopic.lead_id == Lead.id).scalar_subquery()


def _statement(filters: LeadFilters):
    dialect = db.session.get_bind().dialect.name
    columns = []
    for _, col in COLUMNS:
        if col is None:
            columns.append(_topics_column())
        elif isinstance(col.type, UTCDateTime):
            columns.append(_timestamp(col, dialect))
        else:  # plain text: no enum or type processing per row
            columns.append(type_coerce(col, String))
    return ordered(filters, filtered(filters)).with_only_columns(*columns)


# Columns whose text came from visitors (or from a CSV another tool wrote
# into the database): these are neutralised. Status, topics and timestamps
# are ours, and never start with a dangerous character.
_FREE_TEXT = frozenset(
    i
    for i, (name, _) in enumerate(COLUMNS)
    if name not in {"status", "topics", "signed_up_at", "confirmed_at", "unsubscribed_at"}
)


def iter_csv(
    filters: LeadFilters,
    *,
    excel: bool = False,
    on_progress: Callable[[int], None] | None = None,
    counter: list[int] | None = None,
) -> Iterator[bytes]:
    """Yield the CSV in chunks of ROWS_PER_CHUNK rows. `counter[0]` holds
    the number of rows written so far (for the audit record)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    if excel:
        buffer.write(BOM)
    writer.writerow(HEADER)
    rows = 0
    # Core execution (no ORM row loading), streamed in batches.
    result = db.session.connection().execute(
        _statement(filters), execution_options={"yield_per": 2000}
    )
    free = _FREE_TEXT
    for row in result:
        writer.writerow(
            ["" if v is None else (neutralise(v) if i in free else v) for i, v in enumerate(row)]
        )
        rows += 1
        if rows % ROWS_PER_CHUNK == 0:
            if counter is not None:
                counter[0] = rows
            if on_progress:
                on_progress(ROWS_PER_CHUNK)
            yield buffer.getvalue().encode("utf-8")
            buffer.seek(0)
            buffer.truncate()
    if counter is not None:
        counter[0] = rows
    if on_progress:
        on_progress(rows % ROWS_PER_CHUNK)
    yield buffer.getvalue().encode("utf-8")


def filename(today) -> str:
    return f"leads-{today.isoformat()}.csv"


def record_export(
    user_id: int | None,
    filters: LeadFilters,
    rows: int,
    completed: bool,
    target: str | None = None,
    **details,
) -> None:
    """The audit row of one export, from the web (a user) or the CLI (a file)."""
    user = db.session.get(User, user_id) if user_id is not None else None
    audit.record(
        user,
        "leads.export",
        target,
        filters=filters.describe(),
        rows=rows,
        completed=completed,
        **details,
    )
