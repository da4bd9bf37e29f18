"""Follow-ups timed to class dates (CLASS_REMINDER_DAYS "21,7") and the
frequency cap, on a controllable clock: plan_due_work and the worker run at
moved times, mail goes through a real SMTP server on loopback."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time, timedelta

import pytest
from sqlalchemy import select

from extensions import db
from models import (
    Announcement,
    AnnouncementStatus,
    ClassReminderRun,
    ClassStatus,
    Lead,
    LeadStatus,
    MailKind,
    OutboxMessage,
    OutboxStatus,
)
from services.campaigns import classes
from services.delivery import worker
from services.delivery.worker import Worker
from tests.factories import make_class, make_lead
from tests.helpers import smtp_settings

# The class starts Monday 30 November 2026, 09:00 in Berlin = 08:00 UTC.
START = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)
PUBLISHED = START - timedelta(days=60)


@pytest.fixture
def app_config(app_config, smtp_server):
    return {
        **app_config,
        **smtp_settings(smtp_server),
        "CLASS_REMINDER_DAYS": [21, 7],
        "FREQUENCY_CAP_DAYS": 0,
        # The welcome/follow-up sequence of these leads is not under test.
        "CLASSES_FOLLOWUP_DAYS": 3,
    }


def at(frozen, moment: datetime, app) -> dict[str, int]:
    """Move the clock to `moment` and run `flask worker --once` in-process."""
    frozen.set(moment)
    with app.app_context():
        total = Worker(app).run(once=True)
    return {"sent": total.sent, "skipped": total.skipped}


def reminders_to(smtp, address: str) -> list:
    return [
        m
        for _, rcpts, m in smtp.messages
        if address in rcpts and m["X-Mail-Kind"] == MailKind.CLASS_REMINDER.value
    ]


def reminder_rows(app, address: str | None = None) -> list[tuple[str, str, str | None]]:
    """(email, status, last_error) of every class reminder row."""
    with app.app_context():
        stmt = (
            select(Lead.email, OutboxMessage.status, OutboxMessage.last_error)
            .join(Lead, Lead.id == OutboxMessage.lead_id)
            .where(OutboxMessage.kind == MailKind.CLASS_REMINDER)
            .order_by(OutboxMessage.id)
        )
        if address:
            stmt = stmt.where(Lead.email == address)
        return [(e, OutboxStatus(s).value, err) for e, s, err in db.session.execute(stmt)]


def new_class(app, frozen, published: datetime = PUBLISHED, **fields) -> str:
    frozen.set(published)
    with app.app_context():
        cls = make_class(
            title=fields.pop("title", "CSPO November"),
            start=(date(2026, 11, 30), time(9, 0)),
            **fields,
        )
        db.session.commit()
        return cls.public_id


def test_reminders_go_21_and_7_days_before_only_to_who_wants_them(app, client, smtp_server, frozen):
    frozen.set(PUBLISHED)
    with app.app_context():
        make_lead("ann@example.com", name="Ann")
        make_lead("clicker@example.com")
        make_lead("news@example.com", topics=("newsletter",))
        make_lead("pending@example.com", status=LeadStatus.PENDING)
        make_lead("gone@example.com", status=LeadStatus.UNSUBSCRIBED)
        db.session.commit()
    public_id = new_class(app, frozen)

    assert at(frozen, PUBLISHED, app)["sent"] == 0
    assert at(frozen, START - timedelta(days=21, minutes=1), app)["sent"] == 0  # not yet

    assert at(frozen, START - timedelta(days=21), app)["sent"] == 2
    assert at(frozen, START - timedelta(days=20), app)["sent"] == 0  # the step ran once
    first = reminders_to(smtp_server, "ann@example.com")
    assert len(first) == 1
    msg = first[0]
    assert msg["Subject"] == "Your CSPO class is coming up: CSPO November"
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    text = msg.get_body(("plain",)).get_content()
    assert text.startswith("Hello Ann,")
    assert "Monday 30 November 2026, 09:00–17:00 (Europe/Berlin)" in text
    assert f"/certified-scrum-product-owner-cspo-training/{public_id}.ics" in text

    # The clicker registers from their reminder: no 7-day one for them.
    clicker_mail = reminders_to(smtp_server, "clicker@example.com")[0]
    link = re.search(
        r"Register: http://localhost(/register/\S+)",
        clicker_mail.get_body(("plain",)).get_content(),
    ).group(1)
    r = client.get(link)
    assert r.status_code == 302 and r.headers["Location"] == "https://tickets.example.org/cspo/1"

    assert at(frozen, START - timedelta(days=7), app)["sent"] == 1
    assert at(frozen, START - timedelta(days=1), app)["sent"] == 0
    assert at(frozen, START + timedelta(days=1), app)["sent"] == 0

    assert len(reminders_to(smtp_server, "ann@example.com")) == 2
    assert len(reminders_to(smtp_server, "clicker@example.com")) == 1
    for other in ("news@example.com", "pending@example.com", "gone@example.com"):
        assert reminder_rows(app, other) == []
    with app.app_context():
        runs = db.session.execute(
            select(ClassReminderRun.days_before, ClassReminderRun.recipients).order_by(
                ClassReminderRun.days_before.desc()
            )
        ).all()
    assert [tuple(r) for r in runs] == [(21, 2), (7, 1)]


def test_a_class_published_5_days_before_gets_only_the_7_day_reminder(app, smtp_server, frozen):
    frozen.set(START - timedelta(days=30))
    with app.app_context():
        make_lead("ann@example.com")
        db.session.commit()
    new_class(app, frozen, published=START - timedelta(days=5))
    assert at(frozen, START - timedelta(days=5), app)["sent"] == 1
    assert at(frozen, START - timedelta(days=4), app)["sent"] == 0
    assert at(frozen, START - timedelta(days=1), app)["sent"] == 0
    assert len(reminders_to(smtp_server, "ann@example.com")) == 1
    with app.app_context():
        steps = db.session.execute(select(ClassReminderRun.days_before)).scalars().all()
    assert steps == [7]


@pytest.mark.parametrize(
    "change",
    ["full", "seats-taken", "cancelled"],
)
def test_no_reminder_for_a_full_or_cancelled_class(app, smtp_server, change, frozen):
    frozen.set(PUBLISHED)
    with app.app_context():
        make_lead("ann@example.com")
        db.session.commit()
    public_id = new_class(app, frozen, seats=10, seats_taken=3)

    def apply_change():
        with app.app_context():
            cls = classes.class_by_public_id(public_id)
            if change == "full":
                cls.status = ClassStatus.FULL
            elif change == "seats-taken":
                cls.seats_taken = cls.seats
            else:
                cls.status = ClassStatus.CANCELLED
            db.session.commit()

    # Queued while seats remained, but full or cancelled by the time it goes.
    frozen.set(START - timedelta(days=21))
    with app.app_context():
        worker.plan_due_work()
    apply_change()
    assert at(frozen, START - timedelta(days=21), app) == {"sent": 0, "skipped": 1}
    (row,) = reminder_rows(app)
    assert row[1] == "skipped"
    assert row[2] in {"class is full", "class is cancelled"}

    # And the 7-day step does not even queue.
    assert at(frozen, START - timedelta(days=7), app) == {"sent": 0, "skipped": 0}
    assert len(reminder_rows(app)) == 1
    assert smtp_server.messages == []


# --- The frequency cap.


def _sent_announcement_yesterday(app, email: str, now: datetime, ignore_cap: bool = False):
    with app.app_context():
        lead = db.session.execute(select(Lead).where(Lead.email == email)).scalar_one()
        ann = Announcement(
            subject="Earlier news",
            body="Hello",
            topic="cspo-classes",
            status=AnnouncementStatus.SENT,
            created_at=now - timedelta(days=2),
            ignore_frequency_cap=ignore_cap,
        )
        db.session.add(ann)
        db.session.flush()
        db.session.add(
            OutboxMessage(
                kind=MailKind.ANNOUNCEMENT,
                lead_id=lead.id,
                announcement_id=ann.id,
                status=OutboxStatus.SENT,
                send_after=now - timedelta(days=1),
                created_at=now - timedelta(days=1),
                sent_at=now - timedelta(days=1),
                attempts=1,
            )
        )
        db.session.commit()


def _queue_announcement(app, now: datetime, ignore_cap: bool) -> int:
    with app.app_context():
        ann = Announcement(
            subject="Urgent: room change",
            body="Hello {{ first_name or 'there' }}",
            topic="cspo-classes",
            status=AnnouncementStatus.SCHEDULED,
            send_at=now,
            created_at=now,
            ignore_frequency_cap=ignore_cap,
        )
        db.session.add(ann)
        db.session.commit()
        return ann.id


def test_frequency_cap_skips_a_reminder_after_yesterdays_announcement(app, smtp_server, frozen):
    app.config["FREQUENCY_CAP_DAYS"] = 2
    day21 = START - timedelta(days=21)
    frozen.set(PUBLISHED)
    with app.app_context():
        make_lead("capped@example.com")
        make_lead("free@example.com")
        db.session.commit()
    new_class(app, frozen)
    _sent_announcement_yesterday(app, "capped@example.com", day21)

    assert at(frozen, day21, app) == {"sent": 1, "skipped": 1}
    (row,) = reminder_rows(app, "capped@example.com")
    assert row[1] == "skipped"
    assert row[2].startswith("frequency cap")
    assert reminder_rows(app, "free@example.com")[0][1] == "sent"

    # Twelve hours later an announcement without the override is capped for
    # both (one got yesterday's announcement, the other today's reminder)...
    next_day = day21 + timedelta(hours=12)
    _queue_announcement(app, next_day, ignore_cap=False)
    assert at(frozen, next_day, app) == {"sent": 0, "skipped": 2}
    # ...one that overrides the cap explicitly goes to both.
    _queue_announcement(app, next_day, ignore_cap=True)
    assert at(frozen, next_day, app) == {"sent": 2, "skipped": 0}
    with app.app_context():
        errors = (
            db.session.execute(
                select(OutboxMessage.last_error).where(
                    OutboxMessage.kind == MailKind.ANNOUNCEMENT,
                    OutboxMessage.status == OutboxStatus.SKIPPED,
                )
            )
            .scalars()
            .all()
        )
    assert len(errors) == 2 and all(e.startswith("frequency cap") for e in errors)
    subjects = [m["Subject"] for _, _, m in smtp_server.messages]
    assert subjects.count("Urgent: room change") == 2

    # Past the cap's window, the 7-day reminder reaches both again.
    assert at(frozen, START - timedelta(days=7), app) == {"sent": 2, "skipped": 0}
