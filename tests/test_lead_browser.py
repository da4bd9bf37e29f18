"""The lead browser at /marketing/leads: every filter gives exactly the right
leads, keyset pages visit each lead once and in order, bad input is a 400
with a readable message, and a lead's page shows its whole story."""

from __future__ import annotations

import base64
import json
import re
from datetime import timedelta
from html import unescape
from urllib.parse import urlencode

import pytest
from sqlalchemy import select, update

from extensions import db
from models import MailKind, OutboxMessage, OutboxStatus
from services.delivery import outbox
from services.leads import consent, signup, subscriptions
from services.leads.signup import SignupRequest
from services.leads.subscriptions import Evidence
from tests.factories import (
    ARTICLE_SLUG,
    BASE,
    CASES,
    N_LEADS,
    Seeded,
    make_leads,
    newest_first,
    q_matches,
    store,
    subscribed_lead,
)
from tests.helpers import LEAD_ROW, NEXT_PAGE, PER_PAGE, sign_in_as, walk


@pytest.fixture
def seeded(app) -> list[Seeded]:
    return store(app, make_leads())


@pytest.fixture
def staff(app, client):
    sign_in_as(app, client)
    return client


def visible_text(html: str) -> str:
    """What a person reads: tags gone, entities decoded, spaces collapsed."""
    text = unescape(re.sub(r"<[^>]+>", " ", html))
    text = re.sub(r"\s+", " ", text)
    return re.sub(r" ([:,.)])", r"\1", text)


def test_each_filter_gives_exactly_the_right_leads(staff, seeded):
    failures = []
    for args, wanted in CASES:
        expected = [s.public_id for s in newest_first(seeded) if wanted(s)]
        got, _ = walk(staff, "/marketing/leads?" + urlencode(args))
        if got != expected:
            missing = sorted(set(expected) - set(got))
            extra = sorted(set(got) - set(expected))
            failures.append(
                f"{args}: {len(got)} shown, {len(expected)} expected; "
                f"missing {missing[:5]}, extra {extra[:5]}"
            )
    assert not failures, "\n".join(failures)


def test_the_count_shown_matches_the_result_set(staff, seeded):
    html = staff.get("/marketing/leads?status=confirmed").get_data(as_text=True)
    n = sum(1 for s in seeded if s.status == "confirmed")
    assert f"{n} leads" in html
    html = staff.get("/marketing/leads?q=bob.002").get_data(as_text=True)
    assert "1 lead<" in html


@pytest.mark.parametrize(
    ("sort", "key", "reverse"),
    [
        ("newest", lambda s: (s.created_at, s.id), True),
        ("oldest", lambda s: (s.created_at, s.id), False),
        ("email", lambda s: (s.email, s.id), False),
    ],
)
def test_keyset_pages_visit_every_lead_once_in_order(staff, seeded, sort, key, reverse):
    expected = [s.public_id for s in sorted(seeded, key=key, reverse=reverse)]
    got, pages = walk(staff, f"/marketing/leads?sort={sort}")
    assert pages == -(-N_LEADS // PER_PAGE)
    assert len(got) == len(set(got)), "a lead appeared on two pages"
    assert got == expected


def test_keyset_pages_keep_the_filters(staff, seeded):
    wanted = [
        s.public_id for s in sorted(seeded, key=lambda s: (s.email, s.id)) if s.status != "pending"
    ]
    assert len(wanted) > PER_PAGE, "the filter must leave more than one page"
    got = []
    for status in ("confirmed", "unsubscribed"):
        ids, _ = walk(staff, f"/marketing/leads?sort=email&status={status}")
        got.extend(ids)
    assert sorted(got) == sorted(wanted)
    ids, pages = walk(staff, "/marketing/leads?sort=email&q=a")
    expected = [
        s.public_id for s in sorted(seeded, key=lambda s: (s.email, s.id)) if q_matches("a")(s)
    ]
    assert ids == expected
    assert pages >= 2


def test_a_lead_that_arrives_while_paging_does_not_shift_the_pages(app, staff, seeded):
    first = staff.get("/marketing/leads").get_data(as_text=True)
    next_url = unescape(NEXT_PAGE.search(first).group(1))
    store(
        app,
        [
            Seeded(
                "late0001",
                "late@example.com",
                None,
                "pending",
                None,
                "page",
                None,
                None,
                BASE + timedelta(days=1),
            )
        ],
    )
    rest, _ = walk(staff, next_url)
    expected = [s.public_id for s in newest_first(seeded)][PER_PAGE:]
    assert rest == expected


def _cursor(value, lead_id) -> str:
    raw = json.dumps([value, lead_id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


BROKEN_CURSORS = [
    ("newest", "not a cursor!"),
    ("newest", "%%%"),
    ("newest", base64.urlsafe_b64encode(b"\xff\xfe").decode()),
    ("newest", _cursor(None, None)),
    ("newest", base64.urlsafe_b64encode(b"[1]").decode()),
    ("newest", base64.urlsafe_b64encode(b'{"a": 1}').decode()),
    ("newest", _cursor({"t": "yesterday"}, 5)),
    ("newest", _cursor({"t": "2026-03-01T00:00:00"}, 5)),  # no time zone
    ("newest", _cursor("2026-03-01", 5)),
    ("newest", _cursor(12345, 5)),
    ("newest", _cursor({"t": "2026-03-01T00:00:00+00:00"}, "5")),
    ("newest", _cursor({"t": "2026-03-01T00:00:00+00:00"}, 10**30)),
    ("newest", _cursor({"t": "2026-03-01T00:00:00+00:00"}, -(10**30))),
    ("newest", _cursor({"t": "9999-12-31T23:59:59-05:00"}, 5)),
    ("newest", base64.urlsafe_b64encode(b"[" * 3000).decode()),
    ("email", _cursor({"t": "2026-03-01T00:00:00+00:00"}, 5)),  # another sort's cursor
    ("email", _cursor(7, 5)),
    ("email", _cursor("a\u0000b", 5)),
    ("oldest", _cursor({"t": "9999-12-31T23:59:59+00:00", "x": 1}, 5)),
]


def test_a_broken_cursor_is_a_readable_400(staff, seeded):
    failures = []
    for sort, cursor in BROKEN_CURSORS:
        r = staff.get("/marketing/leads?" + urlencode({"sort": sort, "after": cursor}))
        html = r.get_data(as_text=True)
        if (
            r.status_code != 400
            or "That page link is broken; start from the first page." not in html
        ):
            failures.append(f"sort={sort} after={cursor[:60]}: {r.status_code}")
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"since": "2026-02-30"}, "since: use a date like 2026-01-31"),
        ({"until": "yesterday"}, "until: use a date like 2026-01-31"),
        ({"since": "2026-03-10", "until": "2026-03-01"}, "since is after until"),
        # Dates at Python's edges overflowed a day after them (issue 14).
        (
            {"until": "9999-12-31"},
            "until: 9999-12-31 is out of range, use a date between 2000-01-01 and 2100-12-31",
        ),
        ({"since": "0001-01-01"}, "since: 0001-01-01 is out of range"),
        ({"status": "vip"}, "status: one of pending, confirmed, unsubscribed"),
        ({"topic": "cats"}, "topic: one of cspo-classes, newsletter"),
        ({"sort": "random"}, "sort: one of newest, oldest, email"),
    ],
)
def test_bad_filters_are_a_readable_400(staff, args, message):
    r = staff.get("/marketing/leads?" + urlencode(args))
    assert r.status_code == 400
    html = r.get_data(as_text=True)
    assert message in html
    assert 'role="alert"' in html
    assert "<form" in html, "the filter form stays on the page to fix the input"


ODD_BUT_VALID = [
    {"until": "2100-12-31"},
    {"since": "2000-01-01"},
    {"since": "2000-01-01", "until": "2100-12-31", "sort": "oldest"},
    {"q": "a\tb"},
    {"utm_source": "x\n"},
    {"q": "x" * 5000},
    {"q": "\U0001f600"},
    {"q": "%_"},
    {"after": ""},
    {"status": ""},
]


def test_odd_but_valid_input_is_not_an_error(staff, seeded):
    failures = []
    for args in ODD_BUT_VALID:
        r = staff.get("/marketing/leads?" + urlencode(args))
        if r.status_code != 200:
            failures.append(f"{args!r:.80}: {r.status_code}")
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("args", [{"q": "a\u0000b"}, {"utm_source": "x\u0000"}, {"source": "\x1b"}])
def test_control_characters_in_a_filter_are_refused(staff, seeded, args):
    # No one types them; PostgreSQL refuses NUL in text (web/access.py).
    assert staff.get("/marketing/leads?" + urlencode(args)).status_code == 400
    assert staff.get("/marketing/leads.csv?" + urlencode(args)).status_code == 400


def test_wide_date_range_keeps_every_lead(staff, seeded):
    ids, _ = walk(staff, "/marketing/leads?since=2000-01-01&until=2100-12-31")
    assert ids == [s.public_id for s in newest_first(seeded)]


def test_empty_state_when_nothing_matches(staff, seeded):
    r = staff.get("/marketing/leads?q=zzz-nobody")
    assert r.status_code == 200
    html = r.get_data(as_text=True)
    assert "No lead matches these filters." in html
    assert "Clear the filters" in html
    assert "<table" not in html
    assert 'rel="next"' not in html


def test_empty_state_with_no_leads_at_all(staff):
    r = staff.get("/marketing/leads")
    assert r.status_code == 200
    html = r.get_data(as_text=True)
    assert "No leads yet" in html
    assert "<table" not in html


def test_the_filter_form_shows_the_current_filters(staff, seeded):
    html = staff.get(
        "/marketing/leads?status=pending&topic=newsletter&placement=end&utm_source=x%22y&sort=email"
    ).get_data(as_text=True)
    assert '<option value="pending" selected>' in html
    assert '<option value="newsletter" selected>' in html
    assert '<option value="end" selected>' in html
    assert '<option value="email" selected>' in html
    assert 'value="x&#34;y"' in html or 'value="x&quot;y"' in html


# --- A lead's page: its timeline.


def test_lead_page_shows_consent_evidence_mails_and_statuses(app, staff):
    with app.app_context():
        signup.subscribe(
            SignupRequest(
                email="zoe@example.com",
                name="Zoë <b>",
                topics=["cspo-classes", "newsletter"],
                placement="inline",
                source_slug=ARTICLE_SLUG,
                utm={"utm_source": "linkedin", "utm_campaign": "spring-cspo"},
                referrer="https://www.linkedin.com/feed/",
            ),
            Evidence(ip="203.0.113.7", user_agent="Mozilla/5.0 <script>alert(1)</script>"),
        )
        db.session.commit()
        lead = subscriptions.lead_by_email("zoe@example.com")
        subscriptions.confirm(
            lead, lead.created_at, Evidence(ip="198.51.100.2", user_agent="Phone")
        )
        db.session.commit()
        # The confirmation went out; the welcome failed for good.
        db.session.execute(
            update(OutboxMessage)
            .where(OutboxMessage.lead_id == lead.id, OutboxMessage.kind == MailKind.CONFIRMATION)
            .values(status=OutboxStatus.SENT, sent_at=lead.created_at + timedelta(seconds=3))
        )
        db.session.execute(
            update(OutboxMessage)
            .where(OutboxMessage.lead_id == lead.id, OutboxMessage.kind == MailKind.WELCOME)
            .values(status=OutboxStatus.FAILED, attempts=3, last_error="550 mailbox unavailable")
        )
        subscriptions.unsubscribe(lead, "one-click", Evidence(ip="192.0.2.9"))
        db.session.commit()
        public_id = lead.public_id
        kinds = {
            m.kind.value
            for m in db.session.execute(
                select(OutboxMessage).where(OutboxMessage.lead_id == lead.id)
            ).scalars()
        }

    r = staff.get(f"/marketing/leads/{public_id}")
    assert r.status_code == 200
    html = r.get_data(as_text=True)
    text = visible_text(html)
    # Where it signed up, and what it was shown.
    assert "zoe@example.com" in text
    assert "Zoë <b>" in text and "Zoë <b>" not in html, "the name is escaped"
    assert f"{ARTICLE_SLUG} (inline form)" in text
    assert "https://www.linkedin.com/feed/" in text
    assert "source: linkedin" in text and "campaign: spring-cspo" in text
    assert "Consent given via form" in text
    assert "IP 203.0.113.7" in text
    assert "<script>alert(1)</script>" not in html
    assert "Mozilla/5.0 <script>alert(1)</script>" in text
    assert consent.ARTICLE_TEXT in text
    assert "topics: cspo-classes,newsletter" in text
    # Confirmation, every mail with its status, the unsubscribe.
    assert "Consent confirmed via link" in text
    assert "IP 198.51.100.2" in text
    assert "Consent withdrawn via one-click" in text
    assert "IP 192.0.2.9" in text
    assert "Mail “confirmation”: sent" in text
    assert "Mail “welcome”: failed" in text
    assert "after 3 attempts" in text
    assert "550 mailbox unavailable" in text
    for kind in kinds:
        assert f"Mail “{kind.replace('_', ' ')}”" in text
    assert "unsubscribed" in text


def test_lead_page_timeline_is_in_time_order(app, staff):
    with app.app_context():
        lead = subscribed_lead("t@example.com")
        subscriptions.confirm(lead, lead.created_at, Evidence())
        db.session.commit()
        public_id = lead.public_id
    html = staff.get(f"/marketing/leads/{public_id}").get_data(as_text=True)
    stamps = re.findall(r'<time datetime="([^"]+)"', html)
    assert len(stamps) >= 4  # given, confirmation mail, confirmed, welcome mail
    assert stamps == sorted(stamps)
    text = visible_text(html)
    assert "UTM —" in text
    # A mail planned for later says when it is due, not only when it was queued.
    with app.app_context():
        queued = select(OutboxMessage).where(OutboxMessage.status == OutboxStatus.QUEUED)
        planned = next(
            (
                m
                for m in db.session.execute(queued).scalars()
                if m.send_after > m.created_at + timedelta(minutes=1)
            ),
            None,
        )
        assert planned is not None, "the follow-up sequence plans mail ahead"
        due = planned.send_after.strftime("%Y-%m-%d %H:%M")
    assert f"· due {due} UTC" in text


def test_unknown_lead_is_404(staff):
    assert staff.get("/marketing/leads/no-such-lead").status_code == 404


def test_lead_links_from_the_browser_open_the_lead(staff, seeded):
    html = staff.get("/marketing/leads?q=carla.003").get_data(as_text=True)
    ((public_id, email),) = LEAD_ROW.findall(html)
    assert email == "carla.003@example.com"
    page = staff.get(f"/marketing/leads/{public_id}").get_data(as_text=True)
    assert "<h1>carla.003@example.com</h1>" in page


def test_outbox_rows_by_enqueue_show_as_queued(app, staff, seeded):
    with app.app_context():
        outbox.enqueue(MailKind.CLASSES_FOLLOWUP, seeded[0].id)
        db.session.commit()
    html = staff.get(f"/marketing/leads/{seeded[0].public_id}").get_data(as_text=True)
    assert "classes followup" in html
    assert "queued" in html
