"""The deliverability page: bounce and complaint rates over 7 and 30 days,
per announcement and per day (server-side SVG with the Gmail/Yahoo
thresholds), bad signatures counted, and the warning on every admin page
when complaints pass 0.1% of the mail sent in the last 7 days."""

from __future__ import annotations

import itertools
import re
from datetime import datetime, timedelta

import pytest
from sqlalchemy import insert

from extensions import db
from models import InboundEvent, InboundKind, MailKind, OutboxMessage, OutboxStatus
from services.reporting import deliverability
from tests.factories import due_announcement
from tests.helpers import T0, page_text, sign_in_admin, sign_in_as

_keys = itertools.count()


def sent(n: int, when: datetime, *, announcement_id: int | None = None, status=OutboxStatus.SENT):
    """n mails to non-leads (no lead: the per-announcement unique index
    allows many), sent at `when`; returns the first row's id."""
    rows = [
        {
            "kind": MailKind.ANNOUNCEMENT if announcement_id else MailKind.WELCOME,
            "status": status,
            "to_email": f"r{i}@example.com",
            "send_after": when,
            "created_at": when,
            "sent_at": when if status == OutboxStatus.SENT else None,
            "announcement_id": announcement_id,
        }
        for i in range(n)
    ]
    db.session.execute(insert(OutboxMessage), rows)
    db.session.flush()
    return db.session.execute(
        db.select(db.func.min(OutboxMessage.id)).where(OutboxMessage.created_at == when)
    ).scalar_one()


def events(kind: InboundKind, n: int, when: datetime, outbox_id: int | None = None) -> None:
    for _ in range(n):
        db.session.add(
            InboundEvent(
                kind=kind,
                received_at=when,
                outbox_message_id=outbox_id,
                dedupe_key=f"key-{next(_keys)}",
            )
        )
    db.session.flush()


def announcement(subject: str, fanned_out_at: datetime | None):
    ann = due_announcement(fanned_out_at=fanned_out_at)
    ann.subject = subject
    db.session.commit()
    return ann


@pytest.fixture
def admin(app, client, frozen):
    sign_in_admin(app, client)
    return client


def test_rates_over_7_and_30_days_count_sent_mail_and_events_in_the_window(app, frozen):
    with app.app_context():
        sent(1000, T0 - timedelta(days=3))
        sent(500, T0 - timedelta(days=20))
        sent(300, T0 - timedelta(days=40))  # outside both windows
        sent(200, T0 - timedelta(days=1), status=OutboxStatus.QUEUED)  # not sent
        events(InboundKind.HARD_BOUNCE, 2, T0 - timedelta(days=2))
        events(InboundKind.SOFT_BOUNCE, 1, T0 - timedelta(days=2))
        events(InboundKind.COMPLAINT, 1, T0 - timedelta(days=2))
        events(InboundKind.COMPLAINT, 3, T0 - timedelta(days=10))
        events(InboundKind.COMPLAINT, 9, T0 - timedelta(days=45))
        events(InboundKind.BAD_SIGNATURE, 4, T0 - timedelta(days=1))
        week, month = deliverability.windows()
        assert (week.days, week.rates.sent, week.rates.hard_bounces) == (7, 1000, 2)
        assert (week.rates.soft_bounces, week.rates.complaints) == (1, 1)
        assert week.rates.bounce_rate == pytest.approx(0.003)
        assert week.rates.complaint_rate == pytest.approx(0.001)
        assert week.rates.complaint_level == "ok"  # 0.1% is not past 0.1%
        assert week.events["bad_signature"] == 4
        assert (month.rates.sent, month.rates.complaints) == (1500, 4)
        assert month.rates.complaint_rate == pytest.approx(4 / 1500)
        assert month.rates.complaint_level == "warn"


def test_rates_per_announcement_count_its_own_mails_and_what_came_back_for_them(app, frozen):
    with app.app_context():
        first = announcement("Spring dates", T0 - timedelta(days=9))
        second = announcement("Autumn dates", T0 - timedelta(days=2))
        announcement("Not sent yet", None)
        a = sent(2000, T0 - timedelta(days=9), announcement_id=first.id)
        b = sent(400, T0 - timedelta(days=2), announcement_id=second.id)
        sent(
            100,
            T0 - timedelta(days=2, hours=1),
            announcement_id=second.id,
            status=OutboxStatus.SKIPPED,
        )
        events(InboundKind.HARD_BOUNCE, 10, T0 - timedelta(days=8), a)
        events(InboundKind.COMPLAINT, 1, T0 - timedelta(days=8), a + 1)
        events(InboundKind.COMPLAINT, 2, T0 - timedelta(days=1), b)
        events(InboundKind.AUTO_REPLY, 5, T0 - timedelta(days=1), b)  # not a bounce
        events(InboundKind.HARD_BOUNCE, 3, T0 - timedelta(days=1))  # matched to no mail
        rows = deliverability.per_announcement()
        assert [r.announcement.subject for r in rows] == ["Autumn dates", "Spring dates"]
        autumn, spring = (r.rates for r in rows)
        assert (autumn.sent, autumn.bounces, autumn.complaints) == (400, 0, 2)
        assert autumn.complaint_rate == pytest.approx(0.005)
        assert autumn.complaint_level == "over"
        assert (spring.sent, spring.hard_bounces, spring.complaints) == (2000, 10, 1)
        assert spring.bounce_rate == pytest.approx(0.005)
        assert spring.complaint_level == "ok"


def test_daily_rates_cover_every_day_of_30(app, frozen):
    with app.app_context():
        sent(500, T0 - timedelta(days=2, hours=3))
        sent(500, T0 - timedelta(days=2, hours=1))
        events(InboundKind.COMPLAINT, 2, T0 - timedelta(days=2))
        events(InboundKind.SOFT_BOUNCE, 5, T0 - timedelta(days=2))
        events(InboundKind.HARD_BOUNCE, 5, T0 - timedelta(days=2))
        days = deliverability.daily()
        assert len(days) == 30
        assert days[-1][0] == T0.date() and days[0][0] == T0.date() - timedelta(days=29)
        by_day = dict(days)
        peak = by_day[(T0 - timedelta(days=2)).date()]
        assert (peak.sent, peak.complaints, peak.bounces) == (1000, 2, 10)
        assert by_day[T0.date()].complaint_rate is None  # nothing sent: no rate
        chart = deliverability.rate_chart(days, "complaint", deliverability.COMPLAINT_THRESHOLDS)
        warn, over = chart["lines"]
        # The scale shows the 0.3% line; 0.2% sits between the two lines.
        assert chart["top"] == pytest.approx(0.003 * 1.25)
        assert over.y < warn.y < chart["height"]
        bar = next(b for b in chart["bars"] if b.sent)
        assert over.y < bar.y < warn.y


def test_the_page_shows_rates_thresholds_and_bad_signatures(app, admin):
    with app.app_context():
        ann = announcement("Autumn dates", T0 - timedelta(days=2))
        first = sent(1000, T0 - timedelta(days=2), announcement_id=ann.id)
        events(InboundKind.COMPLAINT, 2, T0 - timedelta(days=1), first)
        events(InboundKind.HARD_BOUNCE, 7, T0 - timedelta(days=1), first + 1)
        events(InboundKind.BAD_SIGNATURE, 3, T0 - timedelta(days=1))
        db.session.commit()
    response = admin.get("/admin/deliverability")
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    text = page_text(response)
    assert "Last 7 days" in text and "Last 30 days" in text
    assert "0.20%" in text and "0.70%" in text  # complaint and bounce rates
    row = re.search(r"<tr><th scope=\"row\">Last 7 days</th>(.*?)</tr>", html, re.S)[1]
    assert [re.sub(r"<.*?>", "", c) for c in re.findall(r"<td[^>]*>(.*?)</td>", row)][-3] == "3"
    assert "Autumn dates" in text
    assert html.count('class="threshold warn"') == 1 and html.count('class="threshold over"') == 1
    assert "0.3%: Gmail and Yahoo limit" in text
    # CSP: style-src 'self', no inline script or style.
    assert "style=" not in html and "<script>" not in html and "<style" not in html


def test_the_page_says_so_when_nothing_was_sent(app, admin):
    response = admin.get("/admin/deliverability")
    assert response.status_code == 200
    text = page_text(response)
    assert "No mail was sent in the last 30 days" in text
    assert "No announcement has been sent yet" in text
    assert "<svg" not in response.get_data(as_text=True)


def test_marketers_may_not_see_it(app, client):
    sign_in_as(app, client)
    assert client.get("/admin/deliverability").status_code == 403


def test_admin_pages_warn_past_a_01_percent_complaint_rate(app, admin, frozen):
    with app.app_context():
        sent(1000, T0 - timedelta(days=3))
        events(InboundKind.COMPLAINT, 2, T0 - timedelta(days=1))
        db.session.commit()
    for path in ("/admin/", "/admin/outbox", "/admin/deliverability"):
        response = admin.get(path)
        assert response.status_code == 200
        assert "Spam complaints were 0.20% of the mail sent in the last 7 days" in page_text(
            response
        ), path
        assert 'role="alert"' in response.get_data(as_text=True)
    # Marketing pages carry no admin warning, nor does a marketer's 403.
    assert "Spam complaints were" not in page_text(admin.get("/marketing/leads"))
    marketer = app.test_client()
    sign_in_as(app, marketer)
    refused = marketer.get("/admin/")
    assert refused.status_code == 403
    assert "Spam complaints were" not in page_text(refused)


def test_no_warning_at_or_below_01_percent_and_the_figure_is_kept_a_minute(app, admin, frozen):
    with app.app_context():
        sent(1000, T0 - timedelta(days=3))
        events(InboundKind.COMPLAINT, 1, T0 - timedelta(days=1))
        events(InboundKind.COMPLAINT, 5, T0 - timedelta(days=8))  # older than 7 days
        db.session.commit()
    assert "Spam complaints were" not in page_text(admin.get("/admin/"))
    with app.app_context():
        events(InboundKind.COMPLAINT, 1, T0 - timedelta(seconds=1))
        db.session.commit()
    # Read once a minute per process: the new complaint shows after it.
    frozen.advance(30)
    assert "Spam complaints were" not in page_text(admin.get("/admin/"))
    frozen.advance(31)
    assert "Spam complaints were 0.20%" in page_text(admin.get("/admin/"))
