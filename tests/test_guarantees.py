"""Delivery guarantees, each in a test that breaking the guarantee fails
(issue 14, finding 10: with one rule removed, the suite must go red).

- fencing: a worker whose lease ran out records nothing over the new owner;
- send-time checks: a topic unticked after the fan-out, and an unsubscribe,
  a complaint or a cancel committed after the batch was read, stop the mail;
- SKIP LOCKED: a claim on PostgreSQL passes over a row another transaction
  holds, without waiting for it.

Mail goes through a real SMTP server on loopback (aiosmtpd); the worker's
functions run in-process so the clock can move.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select, text

from app import create_app
from extensions import db
from models import Announcement, OutboxMessage, OutboxStatus
from services.campaigns import announcement_report, announcements
from services.delivery.claim import OUTBOX, claim, finish, release
from services.delivery.rules import load_batch
from services.delivery.send import BatchStats, deliver
from services.delivery.worker import plan_due_work
from services.leads import subscriptions, suppressions
from services.leads.subscriptions import Evidence
from services.mail.mailer import transport_from_config
from tests import delivery_procs as dp
from tests.factories import due_announcement, make_lead
from tests.helpers import (
    base_config,
    csrf_token,
    deliver_one,
    drain,
    page_text,
    received,
    smtp_settings,
)

LEASE = 60


@pytest.fixture
def app_config(app_config, smtp_server):
    return {**app_config, **smtp_settings(smtp_server), "FREQUENCY_CAP_DAYS": 0}


def outbox_row(row_id: int) -> dict:
    """The row as the database holds it now (app context)."""
    row = db.session.execute(select(OUTBOX).where(OUTBOX.c.id == row_id)).mappings().one()
    db.session.commit()  # end the read: the next one sees other connections' commits
    return dict(row)


def announced_to(email: str) -> int:
    """A confirmed lead who wants cspo-classes, and the outbox row of an
    announcement fanned out to them; app context."""
    make_lead(email)
    db.session.commit()
    ann = due_announcement()
    plan_due_work()
    return db.session.execute(
        select(OutboxMessage.id).where(OutboxMessage.announcement_id == ann.id)
    ).scalar_one()


# --- Fencing: the claim's token decides who may record an outcome.


def test_a_worker_whose_lease_ran_out_records_nothing_over_the_new_owner(app, frozen, smtp_server):
    with app.app_context():
        row_id = announced_to("fenced@example.com")
        ((_, token_a),) = claim(10, LEASE, "worker-a")
        frozen.advance(LEASE + 1)  # A is paused past its lease (a GC pause, a stopped VM)
        ((reclaimed, token_b),) = claim(10, LEASE, "worker-b")
        assert (reclaimed, token_a, token_b) == (row_id, 1, 2)
        held_by_b = outbox_row(row_id)
        assert (held_by_b["status"], held_by_b["claimed_by"]) == ("sending", "worker-b")

        # A wakes while B is still sending, and records whatever it had in hand.
        with db.engine.connect() as conn:
            late = {
                "sent": finish(conn, row_id, token_a, status="sent", sent_at=frozen.now),
                "retry": finish(
                    conn,
                    row_id,
                    token_a,
                    status="queued",
                    last_error="421 try later",
                    send_after=frozen.now + timedelta(minutes=5),
                ),
                "failed": finish(conn, row_id, token_a, status="failed", last_error="550 gone"),
                "release": release(conn, row_id, token_a),
            }
        assert late == dict.fromkeys(late, False), f"A's stale token was accepted: {late}"
        assert outbox_row(row_id) == held_by_b

        # B's outcome is recorded.
        transport, stats = transport_from_config(app.config), BatchStats()
        deliver_one(row_id, token_b, transport, stats)
        transport.close()
        assert (stats.sent, stats.lost) == (1, 0)
        final = outbox_row(row_id)
    assert (final["status"], final["attempts"], final["claimed_by"]) == ("sent", 2, "worker-b")
    assert final["sent_at"] is not None and final["lease_until"] is None
    assert list(received(smtp_server)) == ["fenced@example.com"]


# --- The announcement's topic, checked at send time.


def test_a_topic_unticked_after_the_fan_out_stops_the_announcement(app, client, smtp_server):
    with app.app_context():
        make_lead("keeps@example.com", topics=("cspo-classes", "newsletter"))
        leaver = make_lead("unticks@example.com", topics=("cspo-classes", "newsletter"))
        db.session.commit()
        leaver_id = leaver.id
        preferences = f"/preferences/{subscriptions.preferences_token(leaver)}"
        ann = due_announcement()
        plan_due_work()
        assert announcement_report.progress(ann.id)["queued"] == 2

    # The lead keeps the newsletter and unticks the classes on the preferences page.
    token = csrf_token(client, preferences)
    r = client.post(preferences, data={"csrf_token": token, "topics": ["newsletter"], "save": "1"})
    assert "Your choices are saved" in page_text(r)

    drained = drain(app)
    assert list(received(smtp_server)) == ["keeps@example.com"], "mail for an unticked topic"
    assert drained == {"sent": 1, "skipped": 1, "failed": 0}
    with app.app_context():
        row = db.session.execute(
            select(OutboxMessage).where(OutboxMessage.lead_id == leaver_id)
        ).scalar_one()
        assert (row.status, row.last_error) == (
            OutboxStatus.SKIPPED,
            "lead does not want cspo-classes",
        )


# --- The state read again right before the mail leaves.


def _unsubscribe(email: str, _ann_id: int) -> None:
    subscriptions.unsubscribe(subscriptions.lead_by_email(email), "link", Evidence())


def _complain(email: str, _ann_id: int) -> None:
    suppressions.suppress(email, "complaint", "feedback loop report")


def _cancel(_email: str, ann_id: int) -> None:
    announcements.cancel(db.session.get(Announcement, ann_id))


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (_unsubscribe, "lead is unsubscribed"),
        (_complain, "address suppressed (complaint)"),
        (_cancel, "announcement cancelled"),
    ],
    ids=["unsubscribe", "complaint", "cancel"],
)
def test_a_change_committed_after_the_batch_was_read_stops_the_mail(
    app, smtp_server, change, reason
):
    email = "changes-mind@example.com"
    with app.app_context():
        row_id = announced_to(email)
        ann_id = db.session.get(OutboxMessage, row_id).announcement_id
        ((_, token),) = claim(10, LEASE, "worker")
        transport, stats = transport_from_config(app.config), BatchStats()
        with db.engine.connect() as conn:
            batch = load_batch(conn, [row_id])
            # Committed by someone else (a session of its own) after the
            # worker read the batch and before this mail leaves.
            with app.app_context():
                change(email, ann_id)
                db.session.commit()
            deliver(batch.rows[row_id], token, batch, transport, stats)
        transport.close()
        row = outbox_row(row_id)
    assert list(received(smtp_server)) == [], "the mail left after the change"
    assert (stats.sent, stats.skipped) == (0, 1)
    assert (row["status"], row["last_error"]) == ("skipped", reason)


# --- SKIP LOCKED: concurrent claims pass over each other's rows.


@pytest.mark.postgres
def test_a_claim_passes_over_a_row_another_transaction_holds(tmp_path, fresh_pg_url):
    dp.prepare_schema(fresh_pg_url)
    engine = dp.engine_for(fresh_pg_url)
    dp.seed(engine, 3)
    app = create_app({**base_config(tmp_path), "SQLALCHEMY_DATABASE_URI": fresh_pg_url})
    try:
        with engine.connect() as holder, app.app_context():
            # Another worker's claim, mid-transaction, holds the first due row.
            holder.execute(text("SELECT id FROM outbox_message WHERE id = 1 FOR UPDATE")).one()
            # A claim that waited for that lock would fail after 100 ms.
            db.session.execute(text("SET LOCAL lock_timeout = '100ms'"))
            claimed = claim(10, LEASE, "worker")
            holder.rollback()
            first = outbox_row(1)
            db.engine.dispose()
    finally:
        engine.dispose()
    assert claimed == [(2, 1), (3, 1)]
    assert (first["status"], first["attempts"]) == ("queued", 0)
