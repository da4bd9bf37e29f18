"""Two workers pick up the same due announcement at once: exactly one outbox
row and one mail per lead, on SQLite and PostgreSQL.

First the planner itself (services.delivery.worker.plan_due_work, which fans out)
from two threads released by one barrier, 2,000 leads; then two real
`flask worker --once` processes started at the same moment on a migrated
database, mail written as .eml files.
"""

from __future__ import annotations

import threading
from collections import Counter
from datetime import UTC, datetime
from email import message_from_bytes, policy
from pathlib import Path

import pytest
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.exc import IntegrityError

from app import create_app
from extensions import db
from models import (
    Announcement,
    AnnouncementStatus,
    MailKind,
    OutboxMessage,
    OutboxStatus,
)
from services.campaigns import announcement_report, announcements
from services.delivery import worker
from tests import procs
from tests.factories import bulk_leads, due_announcement, make_lead

pytestmark = pytest.mark.slow

LEADS = 2_000


def duplicates(ann_id: int) -> list[tuple[int, int]]:
    return [
        tuple(r)
        for r in db.session.execute(
            select(OutboxMessage.lead_id, func.count())
            .where(OutboxMessage.announcement_id == ann_id)
            .group_by(OutboxMessage.lead_id)
            .having(func.count() > 1)
        )
    ]


# --- Two planners in one process, on both backends.


def test_two_planners_at_once_queue_one_row_per_lead(app):
    with app.app_context():
        bulk_leads(LEADS)
        make_lead("news-only@example.com", topics=("newsletter",))
        db.session.commit()
        ann_id = due_announcement().id

    barrier = threading.Barrier(2, timeout=30)
    results: list[object] = [None, None]

    def planner(n: int) -> None:
        with app.app_context():
            try:
                barrier.wait()
                worker.plan_due_work()
                results[n] = "ok"
            except Exception as exc:  # reported below, with its type
                results[n] = exc
            finally:
                db.session.remove()

    threads = [threading.Thread(target=planner, args=(n,)) for n in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not any(t.is_alive() for t in threads), "a planner hung"
    assert results == ["ok", "ok"], results

    with app.app_context():
        rows = db.session.execute(
            select(func.count()).where(OutboxMessage.announcement_id == ann_id)
        ).scalar_one()
        assert rows == LEADS
        assert duplicates(ann_id) == []
        ann = db.session.get(Announcement, ann_id)
        assert ann.status == AnnouncementStatus.SENDING
        assert ann.recipients == LEADS
        assert ann.fanned_out_at is not None
        statuses = db.session.execute(
            select(OutboxMessage.status, func.count())
            .where(OutboxMessage.announcement_id == ann_id)
            .group_by(OutboxMessage.status)
        ).all()
        assert [(OutboxStatus(s), n) for s, n in statuses] == [(OutboxStatus.QUEUED, LEADS)]

        # Re-running the fan-out, directly or through the planner, is a no-op.
        assert announcements.fan_out(ann_id) is None
        worker.plan_due_work()
        db.session.commit()
        assert announcement_report.progress(ann_id)["total"] == LEADS

        # And the database itself refuses a second row for a lead.
        lead_id = db.session.execute(
            select(OutboxMessage.lead_id).where(OutboxMessage.announcement_id == ann_id).limit(1)
        ).scalar_one()
        db.session.add(
            OutboxMessage(
                kind=MailKind.ANNOUNCEMENT,
                lead_id=lead_id,
                announcement_id=ann_id,
                status=OutboxStatus.QUEUED,
                send_after=datetime.now(UTC),
                created_at=datetime.now(UTC),
            )
        )
        with pytest.raises(IntegrityError):
            db.session.flush()
        db.session.rollback()


# --- Two `flask worker --once` processes, at the same moment.


WORKER_LEADS = 400


def test_two_worker_processes_started_together_mail_each_lead_once(tmp_path, empty_db_url):
    env = procs.app_env(tmp_path, empty_db_url, MAIL_BACKEND="file", WORKER_BATCH_SIZE="50")
    procs.flask_db_upgrade(env)

    seed_app = create_app({"TESTING": True, "SQLALCHEMY_DATABASE_URI": empty_db_url})
    with seed_app.app_context():
        bulk_leads(WORKER_LEADS)
        make_lead("news-only@example.com", topics=("newsletter",))
        db.session.commit()
        ann_id = due_announcement().id
        db.session.remove()
        db.engine.dispose()

    workers = [procs.worker_proc(env, tmp_path / f"worker-{n}.log", "--once") for n in range(2)]
    try:
        for w in workers:
            w.start()
        for w in workers:
            w.popen.wait(timeout=90)
    finally:
        for w in workers:
            w.stop()
    logs = "\n".join(w.log() for w in workers)
    assert [w.popen.returncode for w in workers] == [0, 0], logs
    sent = [
        int(line.split()[0].split("=")[1])
        for w in workers
        for line in w.log().splitlines()
        if line.startswith("sent=")
    ]
    assert len(sent) == 2 and sum(sent) == WORKER_LEADS, logs

    engine = create_engine(empty_db_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                text("SELECT count(*) FROM outbox_message WHERE announcement_id = :a"),
                {"a": ann_id},
            ).scalar_one()
            dupes = conn.execute(
                text(
                    "SELECT lead_id FROM outbox_message WHERE announcement_id = :a "
                    "GROUP BY lead_id HAVING count(*) > 1"
                ),
                {"a": ann_id},
            ).all()
            status, recipients = conn.execute(
                text("SELECT status, recipients FROM announcement WHERE id = :a"), {"a": ann_id}
            ).one()
            by_status = dict(
                conn.execute(
                    text("SELECT status, count(*) FROM outbox_message GROUP BY status")
                ).all()
            )
    finally:
        engine.dispose()
    assert rows == WORKER_LEADS
    assert dupes == []
    assert (status, recipients) == ("sent", WORKER_LEADS), logs
    assert by_status == {"sent": WORKER_LEADS}

    mails = sorted(Path(env["MAIL_FILE_DIR"]).glob("*.eml"))
    recipients_seen = Counter(
        message_from_bytes(p.read_bytes(), policy=policy.default)["To"] for p in mails
    )
    assert len(mails) == WORKER_LEADS
    assert len(recipients_seen) == WORKER_LEADS
    assert max(recipients_seen.values()) == 1
    assert "news-only@example.com" not in recipients_seen
