"""Dates at the edges (issue 14, finding 1): every form, filter and JSON
endpoint that takes a date keeps it between 2000-01-01 and 2100-12-31 with a
readable answer, never a 500; and a broken announcement already in the
database (old data, written before the rule) is marked failed and audited
while the worker plans every other announcement and class reminder."""

from __future__ import annotations

from datetime import date, time, timedelta

import pytest
from sqlalchemy import select, update

from extensions import db
from models import (
    Announcement,
    AnnouncementStatus,
    AuditEvent,
    MailKind,
    OutboxMessage,
    TrainingClass,
)
from services.campaigns import announcements
from services.delivery.worker import plan_due_work
from tests.factories import SEPT_2026, make_class, make_lead
from tests.helpers import (
    announcement_form,
    audit_actions,
    class_form,
    count,
    create_announcement,
    csrf_token,
    drain,
    page_text,
    sign_in_admin,
    sign_in_as,
)

RANGE_MESSAGE = "between 2000-01-01 and 2100-12-31"
OUTSIDE = ["9999-12-31", "0001-01-01", "1999-12-31", "2101-01-01"]


@pytest.fixture
def app_config(app_config):
    return {**app_config, "FREQUENCY_CAP_DAYS": 0, "CLASS_REMINDER_DAYS": [7]}


@pytest.fixture
def admin(app, client, frozen):
    frozen.set(SEPT_2026)
    sign_in_admin(app, client)
    return client


# --- The rule, in one place.


def test_the_bounds_are_inclusive_and_the_message_names_them():
    from services import dates

    assert dates.check(date(2000, 1, 1), "Start") == date(2000, 1, 1)
    assert dates.check(date(2100, 12, 31), "Start") == date(2100, 12, 31)
    for outside in (date(1999, 12, 31), date(2101, 1, 1), date.max, date.min):
        with pytest.raises(dates.DateRangeError) as caught:
            dates.check(outside, "Start")
        assert str(caught.value) == (
            f"Start: {outside.isoformat()} is out of range, use a date {RANGE_MESSAGE}."
        )


# --- Announcements: the audience dates, the live count, the schedule.


@pytest.mark.parametrize("field", ["signed_up_from", "signed_up_until"])
@pytest.mark.parametrize("value", OUTSIDE)
def test_announcement_audience_dates_outside_the_range_are_refused_on_the_form(
    app, admin, field, value
):
    token = csrf_token(admin, "/admin/announcements/new")
    r = admin.post("/admin/announcements/new", data=announcement_form(token, **{field: value}))
    assert r.status_code == 400
    assert RANGE_MESSAGE in page_text(r)
    assert count(app, Announcement) == 0


def test_announcement_audience_dates_at_the_bounds_are_kept(app, admin):
    public_id = create_announcement(
        admin, signed_up_from="2000-01-01", signed_up_until="2100-12-31"
    )
    r = admin.get(f"/admin/announcements/{public_id}")
    assert r.status_code == 200
    assert "from 2000-01-01" in page_text(r) and "until 2100-12-31" in page_text(r)


@pytest.mark.parametrize(
    "params",
    [{"until": "9999-12-31"}, {"from": "0001-01-01"}, {"until": "2101-01-01"}],
    ids=["until-9999", "from-0001", "until-2101"],
)
def test_audience_count_refuses_dates_outside_the_range_as_json(admin, params):
    r = admin.get("/admin/audience-count.json", query_string={"topic": "cspo-classes", **params})
    assert r.status_code == 400
    assert RANGE_MESSAGE in r.get_json()["error"]


@pytest.mark.parametrize(
    ("day", "zone"),
    [("9999-12-31", "UTC"), ("0001-01-01", "Asia/Tokyo"), ("2101-01-01", "Europe/Berlin")],
)
def test_schedule_dates_outside_the_range_are_explained_and_change_nothing(app, admin, day, zone):
    public_id = create_announcement(admin)
    token = csrf_token(admin, f"/admin/announcements/{public_id}")
    r = admin.post(
        f"/admin/announcements/{public_id}/schedule",
        data={
            "csrf_token": token,
            "send_date": day,
            "send_time": "09:00",
            "timezone": zone,
            "schedule": "1",
        },
        follow_redirects=True,
    )
    assert r.status_code == 200
    assert RANGE_MESSAGE in page_text(r)
    with app.app_context():
        row = db.session.execute(select(Announcement)).scalar_one()
        assert row.status == AnnouncementStatus.DRAFT and row.send_at is None


def poison(app, public_id: str, **values) -> None:
    """Write straight into the row, as data saved before the rule would be."""
    with app.app_context():
        db.session.execute(
            update(Announcement).where(Announcement.public_id == public_id).values(**values)
        )
        db.session.commit()


def test_a_stored_far_future_date_still_shows_its_page_and_edit_form(app, admin):
    public_id = create_announcement(admin)
    poison(app, public_id, signed_up_until=date.max, signed_up_from=date.min)
    r = admin.get(f"/admin/announcements/{public_id}")
    assert r.status_code == 200
    assert "until 9999-12-31" in page_text(r)
    r = admin.get(f"/admin/announcements/{public_id}/edit")
    assert r.status_code == 200
    # Saving it as it is says what to fix.
    token = csrf_token(admin, f"/admin/announcements/{public_id}/edit")
    r = admin.post(
        f"/admin/announcements/{public_id}/edit",
        data=announcement_form(token, signed_up_until="9999-12-31"),
    )
    assert r.status_code == 400
    assert RANGE_MESSAGE in page_text(r)


# --- Classes.


@pytest.mark.parametrize(
    "fields",
    [
        {"start_date": "0001-01-01", "end_date": "0001-01-01", "timezone": "Asia/Tokyo"},
        {"start_date": "9999-12-31", "end_date": "9999-12-31", "timezone": "Pacific/Kiritimati"},
        {"end_date": "9999-12-31"},
        {"start_date": "1999-12-31"},
    ],
    ids=["year-1-tokyo", "year-9999", "end-9999", "1999"],
)
def test_class_dates_outside_the_range_are_refused_on_the_form(app, admin, fields):
    token = csrf_token(admin, "/admin/classes/new")
    r = admin.post("/admin/classes/new", data=class_form(token, **fields))
    assert r.status_code == 400
    assert RANGE_MESSAGE in page_text(r)
    assert count(app, TrainingClass) == 0


def test_class_service_refuses_what_a_form_did_not_check(app, frozen):
    from services.campaigns import classes

    frozen.set(SEPT_2026)
    with app.app_context(), pytest.raises(classes.ClassError) as caught:
        classes.create(
            classes.ClassInput(
                title="Far",
                start_day=date(9999, 12, 31),
                start_time=time(9),
                end_day=date(9999, 12, 31),
                end_time=time(17),
                timezone="UTC",
            )
        )
    assert RANGE_MESSAGE in str(caught.value)


# --- The lead browser, its export and the CLI export.


@pytest.mark.parametrize(
    "args",
    [{"until": "9999-12-31"}, {"since": "0001-01-01"}, {"since": "1999-12-31"}],
    ids=["until-9999", "since-0001", "since-1999"],
)
@pytest.mark.parametrize("path", ["/marketing/leads", "/marketing/leads.csv"])
def test_lead_filters_outside_the_range_are_a_readable_400(app, client, args, path):
    sign_in_as(app, client)
    r = client.get(path, query_string=args)
    body = r.get_data(as_text=True)  # read it whole: a streamed export holds a transaction
    assert r.status_code == 400
    assert RANGE_MESSAGE in body


def test_cli_export_refuses_a_date_outside_the_range(app, runner, tmp_path):
    result = runner.invoke(
        args=["leads", "export", "--since", "1999-01-01", "-o", str(tmp_path / "x.csv")]
    )
    assert result.exit_code != 0
    assert RANGE_MESSAGE in result.output
    assert not (tmp_path / "x.csv").exists()


# --- The worker: one broken announcement does not stop the others.


def due_announcement(app, client, **overrides) -> str:
    public_id = create_announcement(client, **overrides)
    token = csrf_token(client, f"/admin/announcements/{public_id}")
    r = client.post(
        f"/admin/announcements/{public_id}/schedule",
        data={"csrf_token": token, "send_now": "1", "timezone": "UTC"},
    )
    assert r.status_code == 303
    return public_id


def test_a_poisoned_announcement_is_failed_and_audited_and_the_rest_is_planned(app, admin, frozen):
    with app.app_context():
        make_lead("ann@example.com")
        make_lead("bob@example.com")
        # A class starting in 5 days: its 7-day reminder is due now.
        cls = make_class(start=((SEPT_2026 + timedelta(days=5)).date(), time(9)))
        db.session.commit()
        class_id = cls.id
    # Made first, so the planner meets it first.
    broken = due_announcement(app, admin, subject="Broken")
    poison(app, broken, signed_up_until=date.max)
    healthy = due_announcement(app, admin, subject="Healthy")

    with app.app_context():
        plan_due_work()
        rows = dict(
            db.session.execute(
                select(Announcement.public_id, Announcement.status).where(
                    Announcement.public_id.in_([broken, healthy])
                )
            ).all()
        )
        failed = announcements.by_public_id(broken)
        assert rows == {broken: AnnouncementStatus.FAILED, healthy: AnnouncementStatus.SENDING}
        assert "9999-12-31" in failed.failure and RANGE_MESSAGE in failed.failure
        assert failed.recipients is None, "nothing was queued for it"
        queued = db.session.execute(
            select(
                OutboxMessage.kind, OutboxMessage.announcement_id, OutboxMessage.training_class_id
            )
        ).all()
        assert sorted(k.value if hasattr(k, "value") else k for k, _, _ in queued) == [
            MailKind.ANNOUNCEMENT.value,
            MailKind.ANNOUNCEMENT.value,
            MailKind.CLASS_REMINDER.value,
            MailKind.CLASS_REMINDER.value,
        ]
        assert {c for k, _, c in queued if c} == {class_id}
        event = db.session.execute(
            select(AuditEvent).where(AuditEvent.action == "announcement.failed")
        ).scalar_one()
        assert event.target == broken and event.actor == "system"
        assert "9999-12-31" in event.details["reason"]
    assert "announcement.failed" in audit_actions(app, broken)

    # A second pass neither retries nor audits it again, and the rest is sent.
    assert drain(app)["sent"] == 4
    assert audit_actions(app, broken).count("announcement.failed") == 1
    page = page_text(admin.get(f"/admin/announcements/{broken}"))
    assert "failed" in page and RANGE_MESSAGE in page


def test_cli_generate_keeps_signups_in_the_range(app, runner):
    result = runner.invoke(args=["leads", "generate", "3", "--days", "100000000"])
    assert result.exit_code == 2, result.output
    assert "--days" in result.output and "3650" in result.output


def test_a_reminder_step_given_up_is_audited_once_and_not_tried_again(app, frozen):
    """What the planner does with a reminder step that fails for a reason
    of its own (a lock or a lost connection leaves it for the next pass)."""
    from services.campaigns import reminders

    frozen.set(SEPT_2026)
    with app.app_context():
        make_lead("ann@example.com")
        cls = make_class(start=((SEPT_2026 + timedelta(days=5)).date(), time(9)))
        db.session.commit()
        (step,) = reminders.due_steps()
        assert (step.class_id, step.days) == (cls.id, 7)
        reminders.give_up(step, "ValueError: boom")
        db.session.commit()
        reminders.give_up(step, "ValueError: boom")  # another worker, later
        db.session.commit()
        plan_due_work()
        assert count(app, OutboxMessage) == 0
        event = db.session.execute(
            select(AuditEvent).where(AuditEvent.action == "class.reminder_failed")
        ).scalar_one()
        assert event.target == cls.public_id and event.actor == "system"
        assert event.details == {"days": 7, "reason": "ValueError: boom"}
