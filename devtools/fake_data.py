"""Fake leads in bulk, for trying the workspace at scale and for benchmarks.

A million leads in well under a minute on SQLite. What makes it fast:

- rows are built as tuples of plain strings (timestamps formatted from
  precomputed day and time-of-day strings, in the exact text SQLAlchemy
  writes), never as dicts through SQLAlchemy's per-value type processing;
- they go in through the DB-API connection of the session: `executemany` on
  SQLite, `COPY` on PostgreSQL;
- on SQLite the page cache is raised for the load (the secondary indexes on
  created_at take random inserts: with the default 2 MB cache every insert
  evicts and rereads index pages), and restored afterwards;
- transactions of CHUNK rows.

The schema, indexes included, is the one the migrations made: nothing is
dropped and re-created.
"""

from __future__ import annotations

import io
import random
import secrets
from collections.abc import Callable
from datetime import UTC, date

from sqlalchemy import func, select, text

from extensions import db
from models import Lead
from services import clock
from services.leads import topics
from services.reporting import funnel

ARTICLES = [
    "cspo-certification-benefits",
    "how-hard-is-the-cspo",
    "certified-scrum-product-owner-cspo-training",
]
PLACEMENTS = ["inline", "end", "training"]
UTM_SOURCES = [None, None, "linkedin", "newsletter", "google", "twitter"]
CAMPAIGNS = [None, "spring-cspo", "autumn-cspo"]
NAMES = ["Ann", "Ben", "Chloé", "Dev", "Eva", "Farid", "Grace", "Hiro", None]
CHUNK = 50_000
# 256 MiB of page cache for the load (SQLite; negative means KiB).
BULK_CACHE_KIB = 262_144

# The model's columns in its own order; the rows below are built in this order
# (a column added to Lead makes the INSERT fail loudly until they are too).
LEAD_COLUMNS = tuple(Lead.__table__.c.keys())
DAY = 86_400
# Column names are the constants above, never input.
INSERT_LEAD = (
    f"INSERT INTO lead ({', '.join(LEAD_COLUMNS)}) "  # noqa: S608
    f"VALUES ({', '.join('?' * len(LEAD_COLUMNS))})"
)


class _Timestamps:
    """Epoch seconds to the text a UTC DateTime column holds, fast: one
    lookup per day and one per second of the day, then a concatenation.
    SQLite gets SQLAlchemy's own format (naive UTC, 6-digit microseconds);
    PostgreSQL's COPY gets the same with an explicit +00 offset."""

    def __init__(self, first_day: int, last_day: int, micro: int, postgres: bool):
        self.first_day = first_day
        self.days = [
            date.fromordinal(date(1970, 1, 1).toordinal() + d).isoformat() + " "
            for d in range(first_day, last_day + 1)
        ]
        suffix = f".{micro:06d}" + ("+00" if postgres else "")
        self.seconds = [
            f"{s // 3600:02d}:{s // 60 % 60:02d}:{s % 60:02d}{suffix}" for s in range(DAY)
        ]

    def __call__(self, t: int) -> str:
        return self.days[t // DAY - self.first_day] + self.seconds[t % DAY]


def generate_leads(
    count: int, *, days: int = 365, seed: int = 1, on_progress: Callable[[int], None] | None = None
) -> int:
    rng = random.Random(seed)
    now = clock.now().astimezone(UTC)
    now_s = int(now.timestamp())
    start_id = (db.session.execute(select(func.max(Lead.id))).scalar() or 0) + 1
    tag = secrets.token_hex(3)
    dialect = db.session.get_bind().dialect.name
    postgres = dialect == "postgresql"
    span = max(days * DAY, 1)
    fmt = _Timestamps((now_s - span) // DAY, (now_s + DAY) // DAY + 1, now.microsecond, postgres)

    # Weighted choices as lookup tables: one randrange() per pick.
    statuses = ["confirmed"] * 70 + ["pending"] * 20 + ["unsubscribed"] * 10
    topic_names = list(topics.TOPICS)
    randrange, rand = rng.randrange, rng.random

    # End the session's read before another connection writes (SQLite WAL:
    # a reader that then writes would see a stale snapshot).
    db.session.commit()
    made = 0
    # One connection of our own for the load, committed per chunk through
    # the DB-API; the session's connection is not involved.
    with db.engine.connect() as conn:
        raw = conn.connection.driver_connection
        previous_cache = None
        if not postgres:
            previous_cache = raw.execute("PRAGMA cache_size").fetchone()[0]
            raw.execute(f"PRAGMA cache_size=-{BULK_CACHE_KIB}")
        try:
            while made < count:
                n = min(CHUNK, count - made)
                leads, lead_topics = [], []
                append_lead, append_topic = leads.append, lead_topics.append
                for lead_id in range(start_id + made, start_id + made + n):
                    created = now_s - randrange(span)
                    status = statuses[randrange(100)]
                    placement = PLACEMENTS[randrange(3)]
                    created_s = fmt(created)
                    append_lead(
                        (
                            lead_id,
                            f"g{tag}{lead_id:x}",
                            f"lead{lead_id}.{tag}@example.com",
                            NAMES[randrange(9)],
                            status,
                            ARTICLES[2] if placement == "training" else ARTICLES[randrange(2)],
                            placement,
                            UTM_SOURCES[randrange(6)],
                            None,
                            CAMPAIGNS[randrange(3)],
                            None,
                            None,
                            None,
                            created_s,
                            fmt(created + 300) if status != "pending" else None,
                            fmt(created + DAY) if status == "unsubscribed" else None,
                            created_s,
                        )
                    )
                    wanted = [t for t in topic_names if rand() < 0.6] or [topics.CSPO_CLASSES]
                    for t in wanted:
                        append_topic((lead_id, t))
                if postgres:
                    _copy(raw, "lead", LEAD_COLUMNS, leads)
                    _copy(raw, "lead_topic", ("lead_id", "topic"), lead_topics)
                else:
                    raw.executemany(INSERT_LEAD, leads)
                    raw.executemany(
                        "INSERT INTO lead_topic (lead_id, topic) VALUES (?, ?)", lead_topics
                    )
                raw.commit()
                made += n
                if on_progress:
                    on_progress(n)
        finally:
            raw.rollback()
            if previous_cache is not None:
                raw.execute(f"PRAGMA cache_size={previous_cache}")
    if postgres:
        # Ids were given explicitly: move the sequence past them.
        db.session.execute(
            text("SELECT setval(pg_get_serial_sequence('lead', 'id'), (SELECT max(id) FROM lead))")
        )
    funnel.rebuild()
    db.session.commit()
    # Fresh statistics, or the planner guesses which index to use.
    db.session.execute(text("ANALYZE"))
    db.session.commit()
    return made


def _copy(raw, table: str, columns: tuple[str, ...], rows: list[tuple]) -> None:
    """COPY rows into table (PostgreSQL, psycopg 3), in text format."""
    buffer = io.StringIO()
    for row in rows:
        buffer.write("\t".join(r"\N" if v is None else str(v) for v in row))
        buffer.write("\n")
    with (
        raw.cursor() as cur,
        cur.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy,
    ):
        copy.write(buffer.getvalue())
