"""Sending one claimed mail and recording what the server said."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import timedelta

from flask import current_app

from extensions import db
from models import MailKind, OutboxStatus
from services import clock
from services.campaigns import announcements
from services.delivery.claim import backoff_seconds, finish
from services.delivery.rules import CAPPED_KINDS, Batch, reason_now, skip_reason
from services.leads import suppressions
from services.mail import templating
from services.mail.compose import QueuedMail, compose
from services.mail.mailer import DeliveryError, Transport
from services.metrics.instruments import MAIL_SENT, SMTP_ERRORS, smtp_error_class

log = logging.getLogger("leads.worker")


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


def _count(stats: BatchStats, outcome: str, row_id: int, recorded: bool) -> None:
    """A fenced update that matched nothing is a lost lease, whatever the
    outcome was: count it as such, so the batch log line shows it."""
    if recorded:
        setattr(stats, outcome, getattr(stats, outcome) + 1)
    else:
        stats.lost += 1
        log.warning("outbox row %s: lease lost before it was marked %s", row_id, outcome)


def deliver(
    row: QueuedMail, token: int, batch: Batch, transport: Transport, stats: BatchStats
) -> None:
    cfg = current_app.config

    def record(outcome: str, **values) -> bool:
        recorded = finish(batch.conn, row.id, token, **values)
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
    except templating.TemplateLimitError as exc:
        # Past the render bounds: every mail of the text would be, so the
        # announcement fails with the reason and its other rows do not go.
        record("failed", status=OutboxStatus.FAILED.value, last_error=f"render: {exc}"[:2000])
        if row.announcement_id is not None and row.lead_id is not None:
            batch.failed_announcements.add(row.announcement_id)
            try:
                announcements.fail(row.announcement_id, str(exc))
                db.session.commit()
            except Exception:  # its rows fail one by one instead; the queue goes on
                db.session.rollback()
                log.exception("announcement %s: could not mark it failed", row.announcement_id)
        return
    except Exception as exc:  # a template bug must not stop the queue
        log.exception("could not render outbox row %s", row.id)
        record("failed", status=OutboxStatus.FAILED.value, last_error=f"render: {exc}"[:2000])
        return
    reason = reason_now(batch.conn, row, lead)
    if reason:
        record("skipped", status=OutboxStatus.SKIPPED.value, last_error=reason)
        return
    try:
        transport.send(composed.mail)
    except DeliveryError as exc:
        stats.errors.append(str(exc))
        SMTP_ERRORS.labels(smtp_error_class(exc.code)).inc()
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
    if sent:  # committed by record(): the mail and its row agree
        MAIL_SENT.labels(MailKind(row.kind).value).inc()
    if sent and lead is not None and MailKind(row.kind) in CAPPED_KINDS:
        batch.recently_mailed.add(lead.id)
