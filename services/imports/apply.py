"""One batch of an import: classify each candidate against the database
(new, updated, unchanged, refused) and, unless it is a dry run, write it
with a few set-based statements. The caller commits: one batch is one
transaction, with the job's progress.

Never: a lead that unsubscribed is subscribed again, an address on the
suppression list (erased ones included, by their hash) is imported, or a
lead's status and earlier consent events are changed. An existing lead can
only gain topics (and a name where it had none), with a consent event
of its own saying so.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import Connection, bindparam, select, update

from models import (
    ConsentEvent,
    ConsentKind,
    Lead,
    LeadStatus,
    LeadTopic,
    MailKind,
    Suppression,
    email_hash,
)
from models.base import new_public_id
from services import upsert
from services.delivery import outbox
from services.imports.reader import Candidate
from services.reporting import funnel

PLACEMENT = "import"
# Rows per multi-row INSERT: under SQLite's 32,766 bound parameters at the
# lead's 17 columns.
ROWS_PER_STATEMENT = 1000


@dataclass
class Options:
    topics: tuple[str, ...]
    source: str | None
    consent_hash: str
    confirm_by_mail: bool
    import_id: int | None  # None in a dry run from the command line


@dataclass
class Outcome:
    new: int = 0
    updated: int = 0
    unchanged: int = 0
    refused: int = 0
    warnings: int = 0
    # (line, refused, reason), in line order within the batch
    issues: list[tuple[int, bool, str]] = field(default_factory=list)

    def refuse(self, line: int, reason: str) -> None:
        self.refused += 1
        self.issues.append((line, True, reason))

    def note(self, c: Candidate) -> None:
        """The warnings of a line that is imported (a refused line has its reason)."""
        self.warnings += len(c.warnings)
        self.issues.extend((c.line, False, w) for w in c.warnings)

    def add(self, other: Outcome) -> None:
        for name in ("new", "updated", "unchanged", "refused", "warnings"):
            setattr(self, name, getattr(self, name) + getattr(other, name))

    def counts(self) -> dict[str, int]:
        return {n: getattr(self, n) for n in ("new", "updated", "unchanged", "refused", "warnings")}


def _chunks(items: list, size: int = ROWS_PER_STATEMENT):
    for i in range(0, len(items), size):
        yield items[i : i + size]


def _in_chunks(conn: Connection, stmt, keys: list, **params) -> list:
    """The rows of `stmt` for all `keys` (its expanding "keys" parameter),
    a statement per ROWS_PER_STATEMENT of them."""
    rows = []
    for part in _chunks(keys):
        rows.extend(conn.execute(stmt, {"keys": part, **params}).all())
    return rows


# Built once, with the keys as a parameter: SQLAlchemy then compiles each
# once instead of building a statement around every thousand values.
_KEYS = bindparam("keys", expanding=True)
_SUPPRESSED = select(Suppression.email_hash, Suppression.reason).where(
    Suppression.email_hash.in_(_KEYS)
)
_EXISTING = select(Lead.id, Lead.email, Lead.status, Lead.name).where(Lead.email.in_(_KEYS))
_THEIR_TOPICS = select(LeadTopic.lead_id, LeadTopic.topic).where(LeadTopic.lead_id.in_(_KEYS))
_FROM_THIS_FILE = select(ConsentEvent.lead_id).where(
    ConsentEvent.lead_id.in_(_KEYS), ConsentEvent.import_id == bindparam("import_id")
)
_INSERTED = select(Lead.email, Lead.id).where(Lead.public_id.in_(_KEYS))


def run_batch(
    conn: Connection,
    batch: list[Candidate],
    opts: Options,
    now: datetime,
    *,
    write: bool,
    seen: dict[str, int] | None = None,
) -> Outcome:
    """Classify (and with `write`, import) one batch. `seen` maps addresses
    met earlier in the file to their line, where the database cannot tell
    (a dry run writes nothing)."""
    out = Outcome()
    first_line: dict[str, int] = {}
    unique: list[Candidate] = []
    for c in batch:
        earlier = first_line.get(c.email) or (seen.get(c.email) if seen is not None else None)
        if earlier:
            out.refuse(c.line, f"duplicate of line {earlier}")
            continue
        first_line[c.email] = c.line
        unique.append(c)
    if seen is not None:
        seen.update(first_line)

    hashes = {c.email: email_hash(c.email) for c in unique}
    suppressed = dict(_in_chunks(conn, _SUPPRESSED, list(hashes.values())))
    existing = {row.email: row for row in _in_chunks(conn, _EXISTING, [c.email for c in unique])}
    known_topics: dict[int, set[str]] = {}
    from_this_file: set[int] = set()
    ids = [row.id for row in existing.values()]
    for lead_id, topic in _in_chunks(conn, _THEIR_TOPICS, ids):
        known_topics.setdefault(lead_id, set()).add(topic)
    if opts.import_id is not None:
        from_this_file.update(
            lead_id
            for (lead_id,) in _in_chunks(conn, _FROM_THIS_FILE, ids, import_id=opts.import_id)
        )

    new: list[Candidate] = []
    updates: list[tuple[Candidate, object, list[str]]] = []
    for c in unique:
        reason = suppressed.get(hashes[c.email])
        lead = existing.get(c.email)
        if reason == "erased":
            out.refuse(c.line, "erased at the person's request: never imported again")
        elif reason:
            out.refuse(c.line, f"suppressed ({reason}): never imported again")
        elif lead is None:
            new.append(c)
            out.note(c)
        elif lead.id in from_this_file:
            out.refuse(c.line, "duplicate of an earlier line of this file")
        elif lead.status == LeadStatus.UNSUBSCRIBED:
            out.refuse(c.line, "unsubscribed: an import never subscribes them again")
        else:
            added = [t for t in c.topics if t not in known_topics.get(lead.id, set())]
            if added or (c.name and not lead.name):
                updates.append((c, lead, added))
            else:
                out.unchanged += 1
            out.note(c)
    if write:
        made = _insert_new(conn, new, opts, now)
        out.unchanged += len(new) - len(made)  # signed up meanwhile: theirs stands
        out.new += len(made)
        _update_existing(conn, updates, opts, now)
    else:
        out.new += len(new)
    out.updated += len(updates)
    out.issues.sort()
    return out


def _insert_new(
    conn: Connection, new: list[Candidate], opts: Options, now: datetime
) -> dict[str, int]:
    """Insert the new leads; address -> id of those this batch inserted
    (a concurrent signup of the same address wins the conflict)."""
    if not new:
        return {}
    ours = {c.email: new_public_id() for c in new}
    upsert.insert_rows(
        conn,
        Lead.__table__,
        ("public_id", "email", "name", "source_slug"),
        [(ours[c.email], c.email, c.name, c.source) for c in new],
        constants={
            "status": LeadStatus.PENDING if opts.confirm_by_mail else LeadStatus.CONFIRMED,
            "source_placement": PLACEMENT,
            "created_at": now,
            "confirmed_at": None if opts.confirm_by_mail else now,
            # The confirmation below claims the address's mail window.
            "last_confirmation_at": now if opts.confirm_by_mail else None,
        },
        conflict=("email",),
    )
    made = dict(_in_chunks(conn, _INSERTED, list(ours.values())))
    kept = [c for c in new if c.email in made]
    _topics_and_consent(conn, [(c, made[c.email], c.topics) for c in kept], opts, now)
    if opts.confirm_by_mail:
        reminder_delay = timedelta(hours=current_app.config["CONFIRM_REMINDER_HOURS"])
        # The same two rows as the public signup: the confirmation and its reminder.
        for part in _chunks(kept, ROWS_PER_STATEMENT // 2):
            rows = []
            for c in part:
                rows.append(outbox.row(MailKind.CONFIRMATION, made[c.email], now))
                rows.append(
                    outbox.row(
                        MailKind.CONFIRM_REMINDER,
                        made[c.email],
                        now,
                        send_after=now + reminder_delay,
                        dedupe_key=f"confirm-reminder:{made[c.email]}",
                    )
                )
            outbox.enqueue_rows(rows, conn=conn)
    by_source: dict[str | None, int] = {}
    for c in kept:
        by_source[c.source] = by_source.get(c.source, 0) + 1
    for source, n in by_source.items():
        counters = {"signups": n} if opts.confirm_by_mail else {"signups": n, "confirmed": n}
        funnel.bump(now.date(), source, PLACEMENT, None, conn=conn, **counters)
    return made


_NAME_IF_BLANK = (
    update(Lead)
    .where(Lead.id == bindparam("lead_id"), Lead.name.is_(None))
    .values(name=bindparam("new_name"))
)


def _update_existing(conn: Connection, updates: list, opts: Options, now: datetime) -> None:
    if not updates:
        return
    names = [{"lead_id": lead.id, "new_name": c.name} for c, lead, _ in updates if c.name]
    if names:
        conn.execute(_NAME_IF_BLANK, names)
    _topics_and_consent(conn, [(c, lead.id, added) for c, lead, added in updates], opts, now)


def _topics_and_consent(
    conn: Connection, leads: list[tuple[Candidate, int, tuple | list]], opts: Options, now: datetime
) -> None:
    """The topics each lead gains, and one consent event per lead pointing
    at the import (its file, stated basis, who and when)."""
    upsert.insert_rows(
        conn,
        LeadTopic.__table__,
        ("lead_id", "topic"),
        [(lead_id, t) for _, lead_id, added in leads for t in added],
        conflict=("lead_id", "topic"),
    )
    upsert.insert_rows(
        conn,
        ConsentEvent.__table__,
        ("lead_id", "topics", "source_slug"),
        [(lead_id, ",".join(added), c.source) for c, lead_id, added in leads],
        constants={
            "kind": ConsentKind.GIVEN,
            "at": now,
            "channel": "import",
            "consent_hash": opts.consent_hash,
            "placement": PLACEMENT,
            "import_id": opts.import_id,
        },
    )
