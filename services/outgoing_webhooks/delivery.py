"""Delivering queued webhook events, from the worker beside the mail. The
queue works as the outbox does (services.delivery.claim: a lease, the
attempt count as fencing token, backoff with jitter): several workers
never send one delivery at the same time, and a retry keeps its webhook-id."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from datetime import timedelta

from flask import current_app
from sqlalchemy import Connection, delete, select, update

from extensions import db
from models import (
    DeliveryStatus,
    MailKind,
    OutboxMessage,
    User,
    WebhookDelivery,
    WebhookEndpoint,
)
from services import clock
from services.delivery.claim import backoff_seconds, claim_due, finish, release
from services.outgoing_webhooks import signing, targets, transport
from services.staff import audit

log = logging.getLogger("leads.webhooks")
DELIVERIES = WebhookDelivery.__table__
# Standard Webhooks' schedule spans days; with the worker's backoff (capped
# at 6 h) 30 attempts outlast WEBHOOK_DISABLE_AFTER_DAYS' default of 5.
MAX_ATTEMPTS = 30
FINISHED = (DeliveryStatus.DELIVERED, DeliveryStatus.FAILED, DeliveryStatus.SKIPPED)
# Rows removed from the log per planning pass at most: a backlog goes over
# several passes, never in one long transaction.
PRUNE_ROWS = 5000


@dataclass(frozen=True)
class Due:
    id: int
    message_id: str
    body: str
    endpoint_id: int
    url: str
    secret_encrypted: str
    enabled: bool


def prune_log() -> int:
    """Finished deliveries older than WEBHOOK_LOG_DAYS leave the log; the
    number removed. Age is by send_after, which the (status, send_after)
    index finds: a finished row's last attempt was due then. The caller
    commits."""
    cutoff = clock.now() - timedelta(days=current_app.config["WEBHOOK_LOG_DAYS"])
    old = (
        select(WebhookDelivery.id)
        .where(WebhookDelivery.status.in_(FINISHED), WebhookDelivery.send_after < cutoff)
        .limit(PRUNE_ROWS)
    )
    return db.session.execute(
        delete(WebhookDelivery).where(WebhookDelivery.id.in_(old.scalar_subquery()))
    ).rowcount


def send_margin(cfg) -> float:
    """The lease one delivery may need at worst: connect and answer, each up
    to WEBHOOK_TIMEOUT, and a second to record the outcome."""
    return 2 * cfg["WEBHOOK_TIMEOUT"] + 1


def run_batch(conn: Connection, owner: str, stop: threading.Event) -> int:
    """Claim and deliver one batch; the number claimed."""
    cfg = current_app.config
    claimed = claim_due(DELIVERIES, cfg["WORKER_BATCH_SIZE"], cfg["WORKER_LEASE_SECONDS"], owner)
    if not claimed:
        return 0
    lease_end = time.monotonic() + cfg["WORKER_LEASE_SECONDS"]
    due = _load([row_id for row_id, _ in claimed])
    for i, (row_id, token) in enumerate(claimed):
        if stop.is_set() or time.monotonic() + send_margin(cfg) > lease_end:
            for rest_id, rest_token in claimed[i:]:
                release(conn, rest_id, rest_token, DELIVERIES)
            break
        if row_id in due:
            deliver(conn, due[row_id], token)
    return len(claimed)


def _load(ids: list[int]) -> dict[int, Due]:
    rows = db.session.execute(
        select(
            WebhookDelivery.id,
            WebhookDelivery.message_id,
            WebhookDelivery.body,
            WebhookEndpoint.id,
            WebhookEndpoint.url,
            WebhookEndpoint.secret_encrypted,
            WebhookEndpoint.enabled,
        )
        .join(WebhookEndpoint, WebhookEndpoint.id == WebhookDelivery.endpoint_id)
        .where(WebhookDelivery.id.in_(ids))
    ).all()
    db.session.commit()  # hold no snapshot while requests go out
    return {r[0]: Due(*r) for r in rows}


def deliver(conn: Connection, row: Due, token: int) -> None:
    cfg = current_app.config
    now = clock.now()

    def record(**values) -> bool:
        done = finish(conn, row.id, token, DELIVERIES, attempted_at=now, **values)
        if not done:
            log.warning("webhook delivery %s: lease lost before it was recorded", row.id)
        return done

    if not row.enabled:
        record(status=DeliveryStatus.SKIPPED.value, last_error="endpoint disabled")
        return
    if token > MAX_ATTEMPTS:
        record(status=DeliveryStatus.FAILED.value, last_error=f"gave up after {token - 1} attempts")
        return
    try:
        target = targets.parse(row.url)
        ip = targets.resolve(target, cfg["WEBHOOK_ALLOW_PRIVATE_TARGETS"])
        secret = signing.decrypt(row.secret_encrypted)
    except ValueError as exc:  # TargetError, SecretUnreadable: the same next time
        answer = transport.Answer(None, 0, f"refused: {exc}"[:500])
    else:
        stamp = int(now.timestamp())
        headers = {
            "webhook-id": row.message_id,
            "webhook-timestamp": str(stamp),
            "webhook-signature": signing.signature(secret, row.message_id, stamp, row.body),
        }
        answer = transport.post(target, ip, headers, row.body.encode(), cfg["WEBHOOK_TIMEOUT"])
    outcome = {"response_status": answer.status, "duration_ms": answer.duration_ms}
    if answer.delivered:
        if record(status=DeliveryStatus.DELIVERED.value, last_error=None, **outcome):
            _endpoint_answered(row.endpoint_id)
        return
    if token >= MAX_ATTEMPTS:
        values = {"status": DeliveryStatus.FAILED.value}
    else:
        delay = backoff_seconds(token, cfg["WORKER_BACKOFF_BASE_SECONDS"])
        retry_at = now + timedelta(seconds=delay)
        values = {"status": DeliveryStatus.QUEUED.value, "send_after": retry_at}
    if record(last_error=answer.error, **values, **outcome):
        _endpoint_failed(row.endpoint_id, now)


def _endpoint_answered(endpoint_id: int) -> None:
    db.session.execute(
        update(WebhookEndpoint)
        .where(WebhookEndpoint.id == endpoint_id, WebhookEndpoint.failing_since.is_not(None))
        .values(failing_since=None)
        .execution_options(synchronize_session=False)
    )
    db.session.commit()


def _endpoint_failed(endpoint_id: int, now) -> None:
    """Note when the endpoint started failing; past WEBHOOK_DISABLE_AFTER_DAYS
    of failures with no success, disable it (one worker wins the UPDATE),
    audit it and tell the admin who made it, through the outbox."""
    db.session.execute(
        update(WebhookEndpoint)
        .where(WebhookEndpoint.id == endpoint_id, WebhookEndpoint.failing_since.is_(None))
        .values(failing_since=now)
        .execution_options(synchronize_session=False)
    )
    days = current_app.config["WEBHOOK_DISABLE_AFTER_DAYS"]
    reason = f"failing for {days} days or more"
    disabled = db.session.execute(
        update(WebhookEndpoint)
        .where(
            WebhookEndpoint.id == endpoint_id,
            WebhookEndpoint.enabled.is_(True),
            WebhookEndpoint.failing_since <= now - timedelta(days=days),
        )
        .values(enabled=False, disabled_reason=reason)
        .returning(WebhookEndpoint.public_id, WebhookEndpoint.url, WebhookEndpoint.created_by_id)
        .execution_options(synchronize_session=False)
    ).one_or_none()
    if disabled is not None:
        audit.record(
            None, "webhook.disabled", disabled.url, endpoint=disabled.public_id, why=reason
        )
        creator = db.session.get(User, disabled.created_by_id) if disabled.created_by_id else None
        if creator is not None:
            db.session.add(
                OutboxMessage(
                    kind=MailKind.STAFF_NOTICE,
                    to_email=creator.email,
                    subject=f"Webhook disabled: {disabled.url} has been {reason}"[:300],
                    created_at=now,
                    send_after=now,
                )
            )
        log.warning("webhook endpoint %s disabled: %s", disabled.public_id, reason)
    db.session.commit()
