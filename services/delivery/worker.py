"""The delivery worker: claims batches, sends them, and plans the work the
clock sets in motion. One process runs WORKER_CONNECTIONS sender threads.
The guarantees are in services.delivery.claim."""

from __future__ import annotations

import functools
import logging
import signal
import threading
import time
from collections.abc import Callable

from sqlalchemy import Connection, text
from sqlalchemy.exc import InterfaceError, OperationalError

from config import ConfigError
from extensions import db
from services.delivery.claim import claim, release, worker_id
from services.delivery.rules import load_batch
from services.delivery.send import BatchStats, deliver
from services.mail.mailer import Transport, transport_from_config
from services.outgoing_webhooks import delivery as webhook_delivery

log = logging.getLogger("leads.worker")


# Errors that pass (a lock, a lost connection, a serialization failure):
# the item stays due and the next pass tries again. Any other error is the
# item's own, and it is given up with its reason.
PASSING_ERRORS = (OperationalError, InterfaceError)


def _reason(exc: Exception) -> str:
    if isinstance(exc, ValueError):  # ours: AnnouncementError, MergeTagError...
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


def _isolated(
    label: str, work: Callable[[], int | None], give_up: Callable[[str], object]
) -> int | None:
    """Run one item of planned work in its own transaction. One that fails
    is rolled back alone: given up (with its reason) unless the error
    passes, and the loop goes on with the next."""
    try:
        result = work()
        db.session.commit()
        return result
    except PASSING_ERRORS:
        db.session.rollback()
        log.exception("%s: planning failed, trying again on the next pass", label)
    except Exception as exc:
        db.session.rollback()
        log.exception("%s: planning failed, giving up", label)
        try:
            give_up(_reason(exc))
            db.session.commit()
        except Exception:  # the next pass meets it again; the others go on now
            db.session.rollback()
            log.exception("%s: could not record the failure", label)
    return None


def plan_due_work() -> None:
    """Work the clock sets in motion: announcements whose time has come are
    fanned out, class reminders planned, finished announcements closed, old
    webhook deliveries dropped from their log.
    Safe to run from any number of workers at once. Each announcement and
    each reminder step is its own transaction: a broken one is marked
    failed and audited, and the others still go."""
    from services.campaigns import announcements, reminders

    for ann_id in announcements.due_announcements():
        queued = _isolated(
            f"announcement {ann_id}",
            functools.partial(announcements.fan_out, ann_id),
            functools.partial(announcements.fail, ann_id),
        )
        if queued is not None:
            log.info("announcement %s: queued %d mails", ann_id, queued)
    for step in reminders.due_steps():
        queued = _isolated(
            str(step),
            functools.partial(reminders.plan_step, step),
            functools.partial(reminders.give_up, step),
        )
        if queued:
            log.info("%s: queued %d mails", step, queued)
    announcements.finish_sent()
    webhook_delivery.prune_log()
    db.session.commit()


def optimise_sqlite_statistics() -> None:
    """SQLite's planner needs table statistics to pick the right index at a
    million rows; PRAGMA optimize refreshes them only where they went stale."""
    if db.session.get_bind().dialect.name == "sqlite":
        try:
            db.session.execute(text("PRAGMA optimize"))
            db.session.commit()
        except PASSING_ERRORS:  # busy with an import's batch: the next start does it
            db.session.rollback()
            log.warning("PRAGMA optimize skipped: the database is busy")


def send_margin(cfg) -> float:
    """The lease one send may need at worst: connect and a reply, each up to
    MAIL_TIMEOUT, and a second to record the outcome."""
    return 2 * cfg["MAIL_TIMEOUT"] + 1


def _lease_check(cfg) -> None:
    lease = cfg["WORKER_LEASE_SECONDS"]
    for margin, timeout in (
        (send_margin(cfg), "MAIL_TIMEOUT"),
        (webhook_delivery.send_margin(cfg), "WEBHOOK_TIMEOUT"),
    ):
        if lease <= margin:
            # A batch would release every row it claims, for ever.
            raise ConfigError(
                f"WORKER_LEASE_SECONDS ({lease}) must be longer than one send can take, "
                f"2 × {timeout} + 1 = {margin:g} s: raise it or lower {timeout}"
            )


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
        _lease_check(app.config)
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
                closed = False
                while not self._stop.is_set():
                    started = time.monotonic()
                    if planner and started >= next_plan:
                        self._plan()
                        next_plan = started + self.app.config["WORKER_PLAN_SECONDS"]
                    stats = self.run_batch(conn, transport, owner)
                    self._add(stats)
                    # Webhooks go beside the mail, from the same loop and lease rules.
                    hooks = webhook_delivery.run_batch(conn, owner, self._stop)
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
                    elif hooks:
                        continue
                    elif once:
                        if planner and not closed:
                            # Close announcements that just finished, then send
                            # what that queued (announcement.sent webhooks).
                            self._plan()
                            closed = True
                            continue
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

    def _imports(self, once: bool) -> None:
        """Uploaded CSV imports and their dry runs, in a thread of their own:
        a million-row import takes a minute, and mail keeps going meanwhile."""
        from services.imports import jobs

        with self.app.app_context():
            try:
                while not self._stop.is_set():
                    try:
                        ran = jobs.run_next(self.owner, should_stop=self._stop.is_set)
                    except PASSING_ERRORS:  # the lease runs out; any worker resumes it
                        db.session.rollback()
                        log.exception("import: stopped, resumed on a later pass")
                        ran = False
                    if not ran:
                        if once:
                            break
                        self._stop.wait(self.app.config["WORKER_POLL_SECONDS"])
            finally:
                db.session.remove()

    def run(self, once: bool = False) -> BatchStats:
        importer = threading.Thread(target=self._imports, args=(once,), name="imports", daemon=True)
        importer.start()
        try:
            return self._deliver(once)
        finally:
            while importer.is_alive():
                importer.join(0.5)

    def _deliver(self, once: bool) -> BatchStats:
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
