"""The delivery worker: claim due outbox rows with a lease, send, record.

Guarantees (see README, "How delivery works"):
- a row is marked sent only after the server's 250, so nothing is lost;
- a claim increments `attempts`, the fencing token: a worker whose lease ran
  out and whose row was reclaimed cannot finish it, its UPDATE matches nothing;
- a crash between the 250 and the commit that records it re-sends that one
  row after its lease: at-least-once, one duplicate per crash at most.
"""

from __future__ import annotations

import functools
import logging
import os
import random
import signal
import socket
import threading
import time
from dataclasses import dataclass, field
from datetime import timedelta

from flask import current_app
from sqlalchemy import Connection, TextClause, and_, bindparam, or_, select, text, update

from config import ConfigError
from extensions import db
from models import (
    Announcement,
    AnnouncementStatus,
    ClassClick,
    ClassStatus,
    Lead,
    LeadStatus,
    LeadTopic,
    MailKind,
    OutboxMessage,
    OutboxStatus,
    TrainingClass,
    email_hash,
)
from models.base import UTCDateTime
from models.outbox import CONFIRMATION_KINDS
from services import clock, suppressions, topics, training
from services.compose import QueuedMail, Recipient, Refs, compose
from services.mailer import DeliveryError, Transport, transport_from_config

log = logging.getLogger("leads.worker")
OUTBOX = OutboxMessage.__table__
MAX_BACKOFF_SECONDS = 6 * 3600
# Suppressions that stop even transactional mail: the address does not exist
# or its owner complained. An erased lead may still ask to subscribe anew.
HARD_SUPPRESSIONS = ("hard_bounce", "complaint")


@dataclass
class BatchStats:
    claimed: int = 0
    sent: int = 0
    retried: int = 0
    failed: int = 0
    skipped: int = 0
    lost: int = 0  # lease lost: another worker owns the row now
    released: int = 0
    errors: list[str] = field(default_factory=list)


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def claim(batch_size: int, lease_seconds: int, owner: str) -> list[tuple[int, int]]:
    """Claim up to batch_size due rows; (id, fencing token) for each.

    One UPDATE ... WHERE id IN (SELECT ... FOR UPDATE SKIP LOCKED) RETURNING:
    on PostgreSQL concurrent workers skip each other's rows; on SQLite the
    statement takes the single write lock, so claims are serialised.
    """
    now = clock.now()
    due = (
        select(OUTBOX.c.id)
        .where(
            or_(
                and_(OUTBOX.c.status == OutboxStatus.QUEUED.value, OUTBOX.c.send_after <= now),
                and_(OUTBOX.c.status == OutboxStatus.SENDING.value, OUTBOX.c.lease_until < now),
            )
        )
        .order_by(OUTBOX.c.send_after, OUTBOX.c.id)
        .limit(batch_size)
        .with_for_update(skip_locked=True)
    )
    rows = db.session.execute(
        update(OUTBOX)
        .where(OUTBOX.c.id.in_(due.scalar_subquery()))
        .values(
            status=OutboxStatus.SENDING.value,
            attempts=OUTBOX.c.attempts + 1,
            lease_until=now + timedelta(seconds=lease_seconds),
            claimed_by=owner,
        )
        .returning(OUTBOX.c.id, OUTBOX.c.attempts, OUTBOX.c.lease_until)
    ).all()
    db.session.commit()
    return sorted((r.id, r.attempts) for r in rows)


@functools.lru_cache(maxsize=32)
def _finish_statement(columns: tuple[str, ...]) -> TextClause:
    """The fenced UPDATE that records an outcome, one per set of columns.
    Plain SQL text: SQLAlchemy builds its cache key in a fraction of the
    time a Core update() takes, and this runs after every mail."""
    sets = ", ".join(f"{OUTBOX.c[c].name} = :{c}" for c in columns)  # KeyError if not ours
    return text(
        f"UPDATE {OUTBOX.name} SET lease_until = NULL, {sets}"  # noqa: S608 (names from the model; values bound)
        " WHERE id = :row_id AND attempts = :token AND status = :sending"
    ).bindparams(
        *(
            bindparam(c, type_=OUTBOX.c[c].type)
            for c in columns
            if isinstance(OUTBOX.c[c].type, UTCDateTime)
        )
    )


def _finish(conn: Connection, row_id: int, token: int, **values) -> bool:
    """Fenced update: applies only while this worker still owns the row."""
    result = conn.execute(
        _finish_statement(tuple(values)),
        {**values, "row_id": row_id, "token": token, "sending": OutboxStatus.SENDING.value},
    )
    conn.commit()
    return result.rowcount == 1


def release(conn: Connection, row_id: int, token: int) -> bool:
    """Give a claimed, unsent row back without counting the attempt."""
    return _finish(conn, row_id, token, status=OutboxStatus.QUEUED.value, attempts=token - 1)


def backoff_seconds(attempt: int, base: float) -> float:
    """Exponential backoff with full jitter, capped."""
    ceiling = min(MAX_BACKOFF_SECONDS, base * 2 ** max(attempt - 1, 0))
    return random.uniform(ceiling / 2, ceiling)


# Marketing mail about classes goes only to leads who asked for that topic.
REQUIRED_TOPIC = {
    MailKind.CLASSES_FOLLOWUP: topics.CSPO_CLASSES,
    MailKind.CLASS_REMINDER: topics.CSPO_CLASSES,
}


# Marketing mail that counts against the frequency cap (the welcome does
# not: it answers the lead's own click).
CAPPED_KINDS = (MailKind.CLASSES_FOLLOWUP, MailKind.CLASS_REMINDER, MailKind.ANNOUNCEMENT)


@dataclass
class Batch:
    """Claimed rows and what their checks and mails need, read in a few
    queries per batch instead of several per mail: rows and leads as plain
    snapshots (Core rows, not ORM objects: a fraction of the loading time),
    announcements and classes detached from the session. What may change
    while the batch is sent (the lead's status, a cancelled announcement, a
    suppression) is read again right before each mail leaves: _reason_now.
    Outcomes are recorded on `conn`, a connection of the worker's own, so no
    ORM session work is done per mail."""

    conn: Connection
    rows: dict[int, QueuedMail]
    leads: dict[int, Recipient]
    refs: Refs
    recently_mailed: set[int]  # leads with capped mail inside the cap
    clicked: set[tuple[int, int]]  # (class, lead): register clicked

    def lead_for(self, row: QueuedMail) -> Recipient | None:
        return self.leads.get(row.lead_id) if row.lead_id else None


def _by_id(model, ids: set[int]) -> dict:
    if not ids:
        return {}
    found = {o.id: o for o in db.session.execute(select(model).where(model.id.in_(ids))).scalars()}
    for obj in found.values():
        db.session.expunge(obj)  # commits after each mail must not expire it
    return found


_ROW_COLUMNS = [OUTBOX.c[name] for name in QueuedMail.__slots__]
_LEAD = Lead.__table__
_TOPIC = LeadTopic.__table__


def load_batch(conn: Connection, ids: list[int]) -> Batch:
    rows = {
        r.id: QueuedMail(*r)
        for r in db.session.execute(select(*_ROW_COLUMNS).where(OUTBOX.c.id.in_(ids)))
    }
    lead_ids = {r.lead_id for r in rows.values() if r.lead_id}
    leads: dict[int, Recipient] = {}
    if lead_ids:
        wanted: dict[int, set[str]] = {i: set() for i in lead_ids}
        for lead_id, topic in db.session.execute(
            select(_TOPIC.c.lead_id, _TOPIC.c.topic).where(_TOPIC.c.lead_id.in_(lead_ids))
        ):
            wanted[lead_id].add(topic)
        for r in db.session.execute(
            select(
                _LEAD.c.id, _LEAD.c.public_id, _LEAD.c.email, _LEAD.c.name, _LEAD.c.status
            ).where(_LEAD.c.id.in_(lead_ids))
        ):
            leads[r.id] = Recipient(*r, topic_slugs=frozenset(wanted[r.id]))
    ann_ids = {r.announcement_id for r in rows.values() if r.announcement_id}
    anns = _by_id(Announcement, ann_ids)
    class_ids = {r.training_class_id for r in rows.values() if r.training_class_id}
    class_ids |= {a.training_class_id for a in anns.values() if a.training_class_id}
    classes = _by_id(TrainingClass, class_ids)
    refs = Refs(
        announcements={i: anns.get(i) for i in ann_ids},
        classes={i: classes.get(i) for i in class_ids},
    )
    kinds = {MailKind(r.kind) for r in rows.values()}
    if MailKind.CLASSES_FOLLOWUP in kinds:
        for cls in refs.upcoming_classes():
            if cls in db.session:
                db.session.expunge(cls)
    recently_mailed: set[int] = set()
    days = current_app.config["FREQUENCY_CAP_DAYS"]
    capped = {r.lead_id for r in rows.values() if r.lead_id and MailKind(r.kind) in CAPPED_KINDS}
    if days > 0 and capped:
        recently_mailed = set(
            db.session.execute(
                select(OUTBOX.c.lead_id)
                .where(
                    OUTBOX.c.lead_id.in_(capped),
                    OUTBOX.c.sent_at > clock.now() - timedelta(days=days),
                    OUTBOX.c.status == OutboxStatus.SENT.value,
                    OUTBOX.c.kind.in_([k.value for k in CAPPED_KINDS]),
                )
                .distinct()
            ).scalars()
        )
    clicked: set[tuple[int, int]] = set()
    reminders = [r for r in rows.values() if r.kind == MailKind.CLASS_REMINDER and r.lead_id]
    if reminders:
        clicked = set(
            db.session.execute(
                select(ClassClick.training_class_id, ClassClick.lead_id).where(
                    ClassClick.training_class_id.in_({r.training_class_id for r in reminders}),
                    ClassClick.lead_id.in_({r.lead_id for r in reminders}),
                )
            ).tuples()
        )
    db.session.commit()  # end the read: nothing may hold a snapshot while mail goes
    return Batch(conn, rows, leads, refs, recently_mailed, clicked)


def _class_reminder_reason(row: QueuedMail, lead: Recipient, batch: Batch) -> str | None:
    cls = batch.refs.training_class(row.training_class_id)
    if cls is None:
        return "class no longer exists"
    if cls.starts_at <= clock.now():
        return "class has started"
    if not training.seats_remain(cls):
        return (
            "class is full"
            if cls.status == ClassStatus.SCHEDULED
            else f"class is {cls.status.value}"
        )
    if (cls.id, lead.id) in batch.clicked:
        return "lead already clicked register for this class"
    return None


def _status_reason(kind: MailKind, status: LeadStatus | str | None) -> str | None:
    if status is None:
        return "lead no longer exists"
    status = LeadStatus(status)
    if kind in CONFIRMATION_KINDS:
        if status != LeadStatus.PENDING:
            return f"lead is {status.value}, not pending"
    elif status != LeadStatus.CONFIRMED:
        return f"lead is {status.value}"
    return None


def skip_reason(row: QueuedMail, lead: Recipient | None, batch: Batch) -> str | None:
    """Send-time checks on what the batch read: the state now decides, not
    the state when the row was queued."""
    kind = MailKind(row.kind)
    if lead is None:
        if row.to_email and row.lead_id is None:  # an admin's test send
            return None
        return "lead no longer exists"
    reason = _status_reason(kind, lead.status)
    if reason:
        return reason
    announcement = None
    if kind == MailKind.ANNOUNCEMENT:
        announcement = batch.refs.announcement(row.announcement_id)
        if announcement is None or announcement.status == AnnouncementStatus.CANCELLED:
            return "announcement cancelled"
        topic = announcement.topic
    else:
        topic = REQUIRED_TOPIC.get(kind)
    if topic and topic not in lead.topic_slugs:
        return f"lead does not want {topic}"
    if kind == MailKind.CLASSES_FOLLOWUP and not batch.refs.upcoming_classes():
        return "no upcoming classes"
    if kind == MailKind.CLASS_REMINDER:
        reason = _class_reminder_reason(row, lead, batch)
        if reason:
            return reason
    capped = kind in CAPPED_KINDS and not (announcement and announcement.ignore_frequency_cap)
    days = current_app.config["FREQUENCY_CAP_DAYS"]
    if capped and days > 0 and lead.id in batch.recently_mailed:
        return f"frequency cap: marketing mail sent in the last {days:g} days"
    return None


# What can change while a batch is being sent, read in one statement right
# before each mail leaves: an unsubscribe, an erasure, a confirmation, a
# cancelled announcement or a new suppression a second ago still decides.
_STATE_NOW = text(
    "SELECT"
    " (SELECT status FROM lead WHERE id = :lead_id),"
    " (SELECT status FROM announcement WHERE id = :announcement_id),"
    " (SELECT reason FROM suppression WHERE email_hash = :email_hash)"
)


def _reason_now(conn: Connection, row: QueuedMail, lead: Recipient | None) -> str | None:
    kind = MailKind(row.kind)
    status, ann_status, suppressed = conn.execute(
        _STATE_NOW,
        {
            "lead_id": row.lead_id,
            "announcement_id": row.announcement_id,
            "email_hash": email_hash(lead.email) if lead is not None else "",
        },
    ).one()
    conn.commit()  # end the read before the mail goes: no snapshot held
    if lead is not None:
        reason = _status_reason(kind, status)
        if reason:
            return reason
    if ann_status == AnnouncementStatus.CANCELLED.value:
        return "announcement cancelled"
    if suppressed and (not kind.transactional or suppressed in HARD_SUPPRESSIONS):
        return f"address suppressed ({suppressed})"
    return None


def _count(stats: BatchStats, outcome: str, row_id: int, recorded: bool) -> None:
    """A fenced update that matched nothing is a lost lease, whatever the
    outcome was: count it as such, so the batch log line shows it."""
    if recorded:
        setattr(stats, outcome, getattr(stats, outcome) + 1)
    else:
        stats.lost += 1
        log.warning("outbox row %s: lease lost before it was marked %s", row_id, outcome)


def deliver_one(row_id: int, token: int, transport: Transport, stats: BatchStats) -> None:
    """One claimed row on its own (a batch of one)."""
    with db.engine.connect() as conn:
        batch = load_batch(conn, [row_id])
        deliver(batch.rows[row_id], token, batch, transport, stats)


def deliver(
    row: QueuedMail, token: int, batch: Batch, transport: Transport, stats: BatchStats
) -> None:
    cfg = current_app.config

    def record(outcome: str, **values) -> bool:
        recorded = _finish(batch.conn, row.id, token, **values)
        _count(stats, outcome, row.id, recorded)
        return recorded

    if token > cfg["MAIL_MAX_ATTEMPTS"]:
        # Claimed more often than it may be tried: its earlier tries ended with
        # no verdict (a worker died on it). Stop, rather than crash forever.
        record(
            "failed",
            status=OutboxStatus.FAILED.value,
            last_error=f"gave up after {token - 1} claims that ended without an answer",
        )
        return
    lead = batch.lead_for(row)
    reason = skip_reason(row, lead, batch)
    if reason:
        record("skipped", status=OutboxStatus.SKIPPED.value, last_error=reason)
        return
    try:
        composed = compose(row, lead, batch.refs)
    except Exception as exc:  # a template bug must not stop the queue
        log.exception("could not render outbox row %s", row.id)
        record("failed", status=OutboxStatus.FAILED.value, last_error=f"render: {exc}"[:2000])
        return
    reason = _reason_now(batch.conn, row, lead)
    if reason:
        record("skipped", status=OutboxStatus.SKIPPED.value, last_error=reason)
        return
    try:
        transport.send(composed.mail)
    except DeliveryError as exc:
        stats.errors.append(str(exc))
        if exc.permanent:
            if exc.recipient_refused and lead is not None:
                suppressions.suppress(lead.email, "hard_bounce", str(exc))
                db.session.commit()
            record("failed", status=OutboxStatus.FAILED.value, last_error=str(exc)[:2000])
        elif token >= cfg["MAIL_MAX_ATTEMPTS"]:
            record(
                "failed",
                status=OutboxStatus.FAILED.value,
                last_error=f"gave up after {token} attempts: {exc}"[:2000],
            )
        else:
            delay = backoff_seconds(token, cfg["WORKER_BACKOFF_BASE_SECONDS"])
            record(
                "retried",
                status=OutboxStatus.QUEUED.value,
                last_error=str(exc)[:2000],
                send_after=clock.now() + timedelta(seconds=delay),
            )
        return
    # The server said 250: record it at once. A crash before this commit is
    # the one window in which a mail can go twice.
    sent = record(
        "sent",
        status=OutboxStatus.SENT.value,
        sent_at=clock.now(),
        subject=composed.subject,
        last_error=None,
    )
    if sent and lead is not None and MailKind(row.kind) in CAPPED_KINDS:
        batch.recently_mailed.add(lead.id)


def plan_due_work() -> None:
    """Work the clock sets in motion: announcements whose time has come are
    fanned out, class reminders planned, finished announcements closed.
    Safe to run from any number of workers at once."""
    from services import announcements, class_reminders

    for ann_id in announcements.due_announcements():
        queued = announcements.fan_out(ann_id)
        db.session.commit()
        if queued is not None:
            log.info("announcement %s: queued %d mails", ann_id, queued)
    queued = class_reminders.plan()
    db.session.commit()
    if queued:
        log.info("class reminders: queued %d mails", queued)
    announcements.finish_sent()
    db.session.commit()


def optimise_sqlite_statistics() -> None:
    """SQLite's planner needs table statistics to pick the right index at a
    million rows; PRAGMA optimize refreshes them only where they went stale."""
    if db.session.get_bind().dialect.name == "sqlite":
        db.session.execute(text("PRAGMA optimize"))
        db.session.commit()


def send_margin(cfg) -> float:
    """The lease one send may need at worst: connect and a reply, each up to
    MAIL_TIMEOUT, and a second to record the outcome."""
    return 2 * cfg["MAIL_TIMEOUT"] + 1


class RateLimiter:
    """At most `rate` sends per second across all of a worker's connections."""

    def __init__(self, rate: float):
        self.interval = 1.0 / rate if rate > 0 else 0.0
        self._next = time.monotonic()
        self._lock = threading.Lock()

    def wait(self, stop: threading.Event) -> None:
        if not self.interval:
            return
        with self._lock:
            now = time.monotonic()
            slot = max(self._next, now)
            self._next = slot + self.interval
        if slot > now:
            stop.wait(slot - now)


class Worker:
    """Claims and delivers batches until stopped (or until idle, with once).

    WORKER_CONNECTIONS threads each hold one SMTP connection and claim their
    own batches, exactly as that many worker processes would.
    """

    def __init__(self, app, transport: Transport | None = None):
        lease, margin = app.config["WORKER_LEASE_SECONDS"], send_margin(app.config)
        if lease <= margin:
            # run_batch would release every row it claims, for ever.
            raise ConfigError(
                f"WORKER_LEASE_SECONDS ({lease}) must be longer than one send can take, "
                f"2 × MAIL_TIMEOUT + 1 = {margin:g} s: raise it or lower MAIL_TIMEOUT"
            )
        self.app = app
        self.transport = transport
        self.owner = worker_id()
        self._stop = threading.Event()
        self.rate = RateLimiter(app.config["WORKER_RATE_PER_SECOND"])
        self.total = BatchStats()
        self._total_lock = threading.Lock()

    def stop(self, *_args) -> None:
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def install_signal_handlers(self) -> None:
        signal.signal(signal.SIGTERM, self.stop)
        signal.signal(signal.SIGINT, self.stop)

    def run_batch(
        self, conn: Connection, transport: Transport, owner: str | None = None
    ) -> BatchStats:
        cfg = self.app.config
        stats = BatchStats()
        claimed = claim(cfg["WORKER_BATCH_SIZE"], cfg["WORKER_LEASE_SECONDS"], owner or self.owner)
        stats.claimed = len(claimed)
        if not claimed:
            return stats
        lease_end = time.monotonic() + cfg["WORKER_LEASE_SECONDS"]
        # Leave the rest of the batch to others rather than send on a lease
        # that may run out mid-conversation with a slow server.
        margin = send_margin(cfg)
        batch = load_batch(conn, [row_id for row_id, _ in claimed])
        for i, (row_id, token) in enumerate(claimed):
            # Wait for the rate limit first: the wait itself uses up lease.
            self.rate.wait(self._stop)
            if self._stop.is_set() or time.monotonic() + margin > lease_end:
                for rest_id, rest_token in claimed[i:]:
                    stats.released += release(conn, rest_id, rest_token)
                break
            deliver(batch.rows[row_id], token, batch, transport, stats)
        return stats

    def _loop(self, transport: Transport, owner: str, once: bool) -> None:
        with self.app.app_context(), db.engine.connect() as conn:
            try:
                optimise_sqlite_statistics()
                planner = owner.endswith("/0") or owner == self.owner
                next_plan = 0.0
                while not self._stop.is_set():
                    started = time.monotonic()
                    if planner and started >= next_plan:
                        self._plan()
                        next_plan = started + self.app.config["WORKER_PLAN_SECONDS"]
                    stats = self.run_batch(conn, transport, owner)
                    self._add(stats)
                    if stats.claimed:
                        elapsed = max(time.monotonic() - started, 1e-6)
                        log.info(
                            "batch claimed=%d sent=%d retried=%d failed=%d skipped=%d "
                            "lost=%d released=%d rate=%.1f/s",
                            stats.claimed,
                            stats.sent,
                            stats.retried,
                            stats.failed,
                            stats.skipped,
                            stats.lost,
                            stats.released,
                            stats.sent / elapsed,
                        )
                    elif once:
                        if planner:
                            self._plan()  # close announcements that just finished
                        break
                    else:
                        transport.close()  # do not hold an idle SMTP connection
                        self._stop.wait(self.app.config["WORKER_POLL_SECONDS"])
            finally:
                transport.close()
                db.session.remove()

    def _plan(self) -> None:
        try:
            plan_due_work()
        except Exception:  # planning must never stop delivery
            db.session.rollback()
            log.exception("planning due work failed")

    def _add(self, stats: BatchStats) -> None:
        with self._total_lock:
            for name in ("claimed", "sent", "retried", "failed", "skipped", "lost", "released"):
                setattr(self.total, name, getattr(self.total, name) + getattr(stats, name))

    def run(self, once: bool = False) -> BatchStats:
        connections = max(1, int(self.app.config["WORKER_CONNECTIONS"]))
        if self.transport is not None or connections == 1:
            transport = self.transport or transport_from_config(self.app.config)
            self._loop(transport, self.owner, once)
            return self.total
        threads = [
            threading.Thread(
                target=self._loop,
                args=(transport_from_config(self.app.config), f"{self.owner}/{n}", once),
                name=f"sender-{n}",
                daemon=True,
            )
            for n in range(connections)
        ]
        for t in threads:
            t.start()
        for t in threads:
            # join with a timeout so the main thread still receives signals
            while t.is_alive():
                t.join(0.5)
        return self.total
