"""Admin classes: DST-aware times, validation shown as readable pages, list,
edit, cancel; the public training page and its calendar files."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time
from decimal import Decimal

import pytest
from icalendar import Calendar
from sqlalchemy import select

from extensions import db
from models import (
    ClassStatus,
    Role,
    TrainingClass,
)
from services.campaigns import classes
from tests.factories import SEPT_2026, make_class
from tests.helpers import (
    audit_actions,
    class_form,
    count,
    csrf_token,
    input_value,
    page_text,
    sign_in_admin,
    sign_in_as,
)

TRAINING = "/certified-scrum-product-owner-cspo-training"


# --- Classes entered across a DST change.


def test_class_on_the_day_summer_time_ends_is_stored_in_utc_and_shown_in_local_time(
    app, client, frozen
):
    frozen.set(SEPT_2026)
    sign_in_admin(app, client)
    token = csrf_token(client, "/admin/classes/new")

    r = client.post("/admin/classes/new", data=class_form(token))
    assert r.status_code == 303, page_text(r)
    assert r.headers["Location"] == "/admin/classes"

    with app.app_context():
        cls = db.session.execute(select(TrainingClass)).scalar_one()
        # 25 October 2026: CEST ends at 03:00, so 09:00 is CET (UTC+1).
        assert cls.starts_at == datetime(2026, 10, 25, 8, 0, tzinfo=UTC)
        assert cls.ends_at == datetime(2026, 10, 25, 16, 0, tzinfo=UTC)
        assert cls.timezone == "Europe/Berlin"
        assert cls.price == Decimal("1290.00")
        assert cls.seats_left == 9
        public_id = cls.public_id
    assert audit_actions(app, public_id) == ["class.create"]

    page = page_text(client.get(TRAINING))
    assert "Sunday 25 October 2026, 09:00–17:00</time>" in page
    assert "(Europe/Berlin, CET)" in page
    assert '<time datetime="2026-10-25T09:00:00+01:00">' in page

    r = client.get(f"{TRAINING}/{public_id}.ics")
    assert r.status_code == 200
    assert r.mimetype == "text/calendar"
    assert f'filename="cspo-{public_id}.ics"' in r.headers["Content-Disposition"]
    raw = r.get_data(as_text=True)
    # The class's own zone (tests/test_class_calendar.py has the rest).
    assert "DTSTART;TZID=Europe/Berlin:20261025T090000" in raw
    assert "DTEND;TZID=Europe/Berlin:20261025T170000" in raw
    event = Calendar.from_ical(r.data).walk("VEVENT")[0]
    assert event.decoded("dtstart") == datetime(2026, 10, 25, 8, 0, tzinfo=UTC)
    assert str(event["summary"]) == "CSPO in Berlin"
    assert str(event["location"]) == "Alexanderplatz 1, Berlin"
    assert "Register: http://localhost/register/" in str(event["description"])

    # The edit form gives the admin back the wall-clock time they typed.
    form = page_text(client.get(f"/admin/classes/{public_id}"))
    assert input_value(form, "start_time") == "09:00"
    assert input_value(form, "start_date") == "2026-10-25"
    assert input_value(form, "timezone") == "Europe/Berlin"


def test_a_class_in_the_repeated_hour_gets_the_documented_note(app, client, frozen):
    frozen.set(SEPT_2026)
    sign_in_admin(app, client)
    token = csrf_token(client, "/admin/classes/new")
    r = client.post(
        "/admin/classes/new",
        data=class_form(token, start_time="02:30", end_time="10:30"),
        follow_redirects=True,
    )
    assert r.status_code == 200
    assert "02:30 happens twice on 25 October 2026 in Europe/Berlin" in page_text(r)
    with app.app_context():
        cls = db.session.execute(select(TrainingClass)).scalar_one()
        assert cls.starts_at == datetime(2026, 10, 25, 0, 30, tzinfo=UTC)  # 02:30 CEST


# --- Validation: a readable 400 page, nothing saved.


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)  # form rules, not SQL
@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"end_time": "08:00"}, "The class must end after it starts."),
        ({"end_date": "2026-10-24"}, "The class must end after it starts."),
        ({"timezone": "Mars/Olympus_Mons"}, "Unknown time zone 'Mars/Olympus_Mons'"),
        ({"timezone": "../../etc/passwd"}, "Unknown time zone"),
        ({"location": ""}, "Give a location, or mark the class as online."),
        (
            {"registration_url": "javascript:alert(document.cookie)"},
            "The registration link must be a full https:// address.",
        ),
        (
            {"registration_url": "ftp://tickets.example.org/x"},
            "The registration link must be a full https:// address.",
        ),
        ({"registration_url": "//evil.example/x"}, "must be a full https:// address"),
        ({"seats": "2", "seats_taken": "5"}, "More seats are taken than the class has."),
        ({"start_date": "25.10.2026"}, "Not a valid date value."),
    ],
    ids=[
        "end-before-start",
        "end-day-before",
        "unknown-zone",
        "path-as-zone",
        "in-person-no-location",
        "javascript-url",
        "ftp-url",
        "scheme-relative-url",
        "overbooked",
        "bad-date",
    ],
)
def test_invalid_class_is_refused_with_a_readable_page_and_nothing_saved(
    app, client, overrides, message, frozen
):
    frozen.set(SEPT_2026)
    sign_in_admin(app, client)
    token = csrf_token(client, "/admin/classes/new")
    r = client.post("/admin/classes/new", data=class_form(token, **overrides))
    assert r.status_code == 400
    html = page_text(r)
    assert message in html
    assert "Please check the form." in html
    assert 'role="alert"' in html
    # What the admin typed is still there to correct.
    assert input_value(html, "title") == "CSPO in Berlin"
    assert count(app, TrainingClass) == 0


def test_online_class_needs_no_location(app, client, frozen):
    frozen.set(SEPT_2026)
    sign_in_admin(app, client)
    token = csrf_token(client, "/admin/classes/new")
    r = client.post(
        "/admin/classes/new", data=class_form(token, location="", online="y", title="Online")
    )
    assert r.status_code == 303
    with app.app_context():
        cls = db.session.execute(select(TrainingClass)).scalar_one()
        assert cls.online and cls.location is None


def test_class_pages_are_for_admins_only(app, client):
    r = client.get("/admin/classes")
    assert r.status_code == 302 and "/login" in r.headers["Location"]
    sign_in_as(app, client, Role.MARKETER, "marketer@example.com")
    assert client.get("/admin/classes").status_code == 403
    token = csrf_token(client, "/marketing/")
    r = client.post("/admin/classes/new", data=class_form(token))
    assert r.status_code == 403
    assert count(app, TrainingClass) == 0


# --- List, edit, cancel.


def test_admin_lists_edits_and_cancels_a_class(app, client, frozen):
    frozen.set(SEPT_2026)
    sign_in_admin(app, client)
    with app.app_context():
        cls = make_class(title="CSPO remote", start=(date(2026, 11, 3), time(9, 0)))
        past = make_class(title="Last year's CSPO", start=(date(2026, 8, 1), time(9, 0)))
        db.session.commit()
        public_id, past_id = cls.public_id, past.public_id

    listing = page_text(client.get("/admin/classes"))
    assert "CSPO remote" in listing
    assert "Tue 3 Nov 2026, 09:00 Europe/Berlin" in listing
    assert "(past)" in listing  # the August class
    assert listing.index("CSPO remote") < listing.index("Last year's CSPO")  # newest first

    # Edit: move it to New York time, same wall clock.
    edit = page_text(client.get(f"/admin/classes/{public_id}"))
    assert input_value(edit, "title") == "CSPO remote"
    token = csrf_token(client, f"/admin/classes/{public_id}")
    r = client.post(
        f"/admin/classes/{public_id}",
        data=class_form(
            token,
            title="CSPO remote (US)",
            start_date="2026-11-03",
            end_date="2026-11-03",
            timezone="America/New_York",
            online="y",
            location="",
        ),
    )
    assert r.status_code == 303, page_text(r)
    with app.app_context():
        cls = classes.class_by_public_id(public_id)
        assert cls.title == "CSPO remote (US)"
        assert cls.starts_at == datetime(2026, 11, 3, 14, 0, tzinfo=UTC)  # EST, UTC-5
        assert count(app, TrainingClass) == 2

    # An edit that breaks a rule changes nothing.
    r = client.post(
        f"/admin/classes/{public_id}",
        data=class_form(token, title="Broken", end_time="08:00"),
    )
    assert r.status_code == 400
    with app.app_context():
        assert classes.class_by_public_id(public_id).title == "CSPO remote (US)"

    assert client.get("/admin/classes/no-such-class").status_code == 404

    # Cancel needs its CSRF token; then the class leaves the training page.
    assert client.post(f"/admin/classes/{public_id}/cancel").status_code == 400
    r = client.post(f"/admin/classes/{public_id}/cancel", data={"csrf_token": token})
    assert r.status_code == 303
    with app.app_context():
        assert classes.class_by_public_id(public_id).status == ClassStatus.CANCELLED
        assert classes.class_by_public_id(past_id).status == ClassStatus.SCHEDULED
    assert audit_actions(app, public_id) == ["class.update", "class.cancel"]
    listing = page_text(client.get("/admin/classes"))
    assert "Reminders for it will not be sent." in listing
    assert "CSPO remote (US)" not in page_text(client.get(TRAINING))

    # Its calendar file says so, for people who added it before.
    ics = client.get(f"{TRAINING}/{public_id}.ics").get_data(as_text=True)
    assert "STATUS:CANCELLED" in ics


# --- The public training page.


def test_training_page_groups_classes_by_month_with_microdata(app, client, frozen):
    frozen.set(SEPT_2026)
    with app.app_context():
        make_class(
            title="CSPO October",
            start=(date(2026, 10, 12), time(9, 0)),
            online=False,
            location="Hamburg",
            trainer="Dana Trainer",
            price=Decimal("1290"),
            seats=10,
            seats_taken=7,
        )
        make_class(
            title="CSPO November online",
            start=(date(2026, 11, 16), time(10, 0)),
            tz="Europe/London",
            seats=8,
            seats_taken=8,
        )
        make_class(
            title="CSPO November Berlin",
            start=(date(2026, 11, 30), time(9, 0)),
            online=False,
            location="Berlin",
            seats=None,
            registration_url=None,
        )
        make_class(title="Already over", start=(date(2026, 8, 3), time(9, 0)))
        gone = make_class(title="CSPO cancelled", start=(date(2026, 10, 20), time(9, 0)))
        gone.status = ClassStatus.CANCELLED
        ids = {c.title: c.public_id for c in db.session.execute(select(TrainingClass)).scalars()}
        db.session.commit()

    r = client.get(TRAINING)
    assert r.status_code == 200
    html = page_text(r)
    months = re.findall(r'<h3 class="month">([^<]+)</h3>', html)
    assert months == ["October 2026", "November 2026"]
    cards = re.findall(r'<li class="class-card".*?</li>', html, re.S)
    titles = [re.search(r'itemprop="name">([^<]+)<', c).group(1) for c in cards]
    assert titles == ["CSPO October", "CSPO November online", "CSPO November Berlin"]
    october, full, no_link = cards

    assert 'itemscope itemtype="https://schema.org/Event"' in october
    assert '<meta itemprop="startDate" content="2026-10-12T09:00:00+02:00">' in october
    assert 'itemtype="https://schema.org/Place"' in october
    assert 'content="https://schema.org/OfflineEventAttendanceMode"' in october
    assert 'itemtype="https://schema.org/Offer"' in october
    assert "Monday 12 October 2026, 09:00–17:00</time>" in october
    assert "(Europe/Berlin, CEST)" in october
    assert "3 seats left" in october
    assert 'Trainer: <span itemprop="name">Dana Trainer</span>' in october
    assert "EUR 1,290.00" in october
    register = re.search(r'<a class="button" href="(/register/[^"]+)"[^>]*>Register</a>', october)
    assert register, october
    assert f'href="{TRAINING}/{ids["CSPO October"]}.ics">Add to calendar</a>' in october

    # Full: no seats left, no Register button, still a calendar link.
    assert "(Europe/London, GMT)" in full
    assert 'itemtype="https://schema.org/VirtualLocation"' in full
    assert "Full" in full and ">Register<" not in full
    assert "Add to calendar" in full
    # No registration link: nothing to click.
    assert ">Register<" not in no_link

    assert "Already over" not in html
    assert "CSPO cancelled" not in html
    assert html.count(">Register</a>") == 1


def test_training_page_without_classes_shows_an_empty_state_and_a_signup_form(app, client):
    html = page_text(client.get(TRAINING))
    assert "No classes are scheduled right now" in html
    assert 'class="month"' not in html
    assert "schema.org/Event" not in html
    assert '<form class="signup"' in html


def test_unknown_calendar_file_is_404(app, client):
    assert client.get(f"{TRAINING}/nope.ics").status_code == 404
