"""The training page's calendar files (.ics) and the schedule in its JSON-LD:
a class over several days is its daily hours on each day, in its own zone."""

from __future__ import annotations

import json
import re
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from dateutil.rrule import rrulestr
from icalendar import Calendar
from sqlalchemy import select

from extensions import db
from models import ClassClick
from services.campaigns import classes
from tests.factories import SEPT_2026

TRAINING = "/certified-scrum-product-owner-cspo-training"
BERLIN = ZoneInfo("Europe/Berlin")


def _class(first: date, last: date, start: time, end: time, tz: str = "Europe/Berlin"):
    cls = classes.TrainingClass(created_at=SEPT_2026)
    classes.apply(
        cls,
        classes.ClassInput(
            title="CSPO online",
            start_day=first,
            start_time=start,
            end_day=last,
            end_time=end,
            timezone=tz,
            trainer="Dana Trainer",
            registration_url="https://tickets.example.org/cspo/raw",
        ),
    )
    db.session.add(cls)
    db.session.commit()
    return cls.public_id


def _sessions(event) -> list[tuple[datetime, datetime]]:
    """Each occurrence as a calendar app expands it: the RRULE on DTSTART's
    wall clock in its TZID."""
    start, end = event.decoded("dtstart"), event.decoded("dtend")
    if "RRULE" not in event:
        return [(start, end)]
    rule = event["RRULE"].to_ical().decode()
    return [(s, s + (end - start)) for s in rrulestr(rule, dtstart=start)]


def _calendar(client, public_id: str) -> Calendar:
    r = client.get(f"{TRAINING}/{public_id}.ics")
    assert r.status_code == 200
    assert r.mimetype == "text/calendar"
    raw = r.data
    # RFC 5545: CRLF line ends, lines folded at 75 octets.
    assert b"\r\n" in raw and b"\n" not in raw.replace(b"\r\n", b"")
    assert all(len(line) <= 75 for line in raw.split(b"\r\n"))
    return Calendar.from_ical(raw)


def test_a_two_day_class_is_its_morning_hours_on_each_day(app, client, frozen):
    frozen.set(SEPT_2026)
    with app.app_context():
        public_id = _class(date(2027, 1, 18), date(2027, 1, 19), time(9), time(13))

    cal = _calendar(client, public_id)
    [event] = cal.walk("VEVENT")
    # The class's own zone, with its definition for Outlook.
    assert event["DTSTART"].params["TZID"] == "Europe/Berlin"
    assert [str(tz["TZID"]) for tz in cal.walk("VTIMEZONE")] == ["Europe/Berlin"]
    assert event["RRULE"].to_ical() == b"FREQ=DAILY;COUNT=2"
    sessions = _sessions(event)
    assert [(s.astimezone(BERLIN), e.astimezone(BERLIN)) for s, e in sessions] == [
        (datetime(2027, 1, 18, 9, tzinfo=BERLIN), datetime(2027, 1, 18, 13, tzinfo=BERLIN)),
        (datetime(2027, 1, 19, 9, tzinfo=BERLIN), datetime(2027, 1, 19, 13, tzinfo=BERLIN)),
    ]
    # Not the night between: 08:00-12:00 UTC each day.
    assert [(s.astimezone(UTC).hour, e.astimezone(UTC).hour) for s, e in sessions] == [
        (8, 12),
        (8, 12),
    ]


def test_a_class_across_the_change_to_summer_time_keeps_its_wall_clock_hours(app, client, frozen):
    frozen.set(SEPT_2026)
    with app.app_context():
        # 28 March 2027: CET becomes CEST at 02:00.
        public_id = _class(date(2027, 3, 26), date(2027, 3, 29), time(9), time(13))

    [event] = _calendar(client, public_id).walk("VEVENT")
    sessions = _sessions(event)
    assert [s.astimezone(BERLIN).replace(tzinfo=None) for s, _ in sessions] == [
        datetime(2027, 3, day, 9) for day in (26, 27, 28, 29)
    ]
    assert {e - s for s, e in sessions} == {timedelta(hours=4)}
    assert [s.astimezone(UTC).hour for s, _ in sessions] == [8, 8, 7, 7]


def test_a_one_day_class_has_no_recurrence_and_a_utc_class_stays_utc(app, client, frozen):
    frozen.set(SEPT_2026)
    with app.app_context():
        one_day = _class(date(2027, 2, 1), date(2027, 2, 1), time(9), time(17))
        in_utc = _class(date(2027, 2, 3), date(2027, 2, 4), time(14), time(18), tz="UTC")

    [event] = _calendar(client, one_day).walk("VEVENT")
    assert "RRULE" not in event
    assert _sessions(event) == [
        (datetime(2027, 2, 1, 9, tzinfo=BERLIN), datetime(2027, 2, 1, 17, tzinfo=BERLIN))
    ]
    [event] = _calendar(client, in_utc).walk("VEVENT")
    assert [(s.astimezone(UTC), e.astimezone(UTC)) for s, e in _sessions(event)] == [
        (datetime(2027, 2, d, 14, tzinfo=UTC), datetime(2027, 2, d, 18, tzinfo=UTC)) for d in (3, 4)
    ]


def test_the_calendar_links_to_the_counted_register_page(app, client, frozen):
    frozen.set(SEPT_2026)
    with app.app_context():
        public_id = _class(date(2027, 1, 18), date(2027, 1, 19), time(9), time(13))

    [event] = _calendar(client, public_id).walk("VEVENT")
    description = str(event["DESCRIPTION"])
    assert "tickets.example.org" not in description
    link = re.search(r"Register: (\S+)", description).group(1)
    assert link.startswith(app.config["SITE_URL"] + "/register/")
    assert str(event["URL"]) == app.config["SITE_URL"] + TRAINING

    r = client.get(link.removeprefix(app.config["SITE_URL"]), headers={"User-Agent": "Mozilla/5.0"})
    assert r.status_code == 302
    assert r.headers["Location"] == "https://tickets.example.org/cspo/raw"
    with app.app_context():
        [click] = db.session.execute(select(ClassClick)).scalars()
        assert click.via == "calendar"


def _course_instances(client) -> list[dict]:
    html = client.get(TRAINING).get_data(as_text=True)
    [block] = re.findall(r'<script type="application/ld\+json">(.*?)</script>', html, re.S)
    return json.loads(block)["hasCourseInstance"]


def test_json_ld_of_a_multi_day_class_gives_its_days_and_daily_hours(app, client, frozen):
    frozen.set(SEPT_2026)
    with app.app_context():
        _class(date(2027, 1, 18), date(2027, 1, 19), time(9), time(13))
        _class(date(2027, 2, 1), date(2027, 2, 1), time(9), time(17))

    multi, single = _course_instances(client)
    # Days only: no claim that the class runs through the night.
    assert multi["startDate"] == "2027-01-18"
    assert multi["endDate"] == "2027-01-19"
    assert multi["eventSchedule"] == {
        "@type": "Schedule",
        "startDate": "2027-01-18",
        "endDate": "2027-01-19",
        "startTime": "09:00",
        "endTime": "13:00",
        "repeatFrequency": "P1D",
        "repeatCount": 2,
        "scheduleTimezone": "Europe/Berlin",
    }
    assert single["startDate"] == "2027-02-01T09:00:00+01:00"
    assert single["endDate"] == "2027-02-01T17:00:00+01:00"
    assert "eventSchedule" not in single


def test_the_class_cards_event_microdata_says_the_same(app, client, frozen):
    frozen.set(SEPT_2026)
    with app.app_context():
        _class(date(2027, 1, 18), date(2027, 1, 19), time(9), time(13))
    html = client.get(TRAINING).get_data(as_text=True)
    [card] = re.findall(r'<li class="class-card".*?</li>', html, re.S)
    assert '<meta itemprop="startDate" content="2027-01-18">' in card
    assert '<meta itemprop="endDate" content="2027-01-19">' in card
    schedule = re.search(r'itemprop="eventSchedule" itemscope[^>]*>(.*?)</span>', card).group(1)
    assert dict(re.findall(r'<meta itemprop="(\w+)" content="([^"]*)">', schedule)) == {
        "startDate": "2027-01-18",
        "endDate": "2027-01-19",
        "startTime": "09:00",
        "endTime": "13:00",
        "repeatFrequency": "P1D",
        "repeatCount": "2",
        "scheduleTimezone": "Europe/Berlin",
    }
    assert "18–19 January 2027, 09:00–13:00</time>" in card
