"""The lead browser at /marketing/leads: every filter gives exactly the right
leads, keyset pages visit each lead once and in order, bad input is a 400
with a readable message, and a lead's page shows its whole story."""

from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from html import unescape
from urllib.parse import urlencode

import pytest
from sqlalchemy import insert, select, update

from extensions import db
from models import Lead, LeadStatus, LeadTopic, MailKind, OutboxMessage, OutboxStatus
from services import consent, outbox, subscriptions
from services.subscriptions import Evidence, SignupRequest
from tests.helpers import sign_in_as

BASE = datetime(2026, 3, 20, 23, 30, tzinfo=UTC)
ARTICLE = "cspo-certification-benefits"
OTHER = "how-hard-is-the-cspo"
TRAINING = "certified-scrum-product-owner-cspo-training"
PER_PAGE = 50
N_LEADS = 130

_ROW = re.compile(r'<td><a href="/marketing/leads/([^"/]+)">([^<]*)</a></td>')
_NEXT = re.compile(r'<a href="([^"]+)" rel="next">Next page</a>')


@dataclass
class Seeded:
    public_id: str
    email: str
    name: str | None
    status: str
    source_slug: str | None
    source_placement: str | None
    utm_source: str | None
    utm_campaign: str | None
    created_at: datetime
    topics: list[str] = field(default_factory=list)
    id: int = 0


def make_leads(n: int = N_LEADS) -> list[Seeded]:
    """Varied leads, deterministic. Leads 44-57 share one signup instant, so a
    page boundary falls inside a tie of the sort key."""
    prefixes = ["ann", "anna", "bob", "carla", "dave"]
    domains = ["example.com", "example.org", "test.example"]
    names = ["Ann", "anna", "Annabel", "Ben", "Zoë", "Élodie", "O'Brien", None, "bob", "Ann😀"]
    statuses = ["pending", "confirmed", "confirmed", "unsubscribed"]
    places = [(ARTICLE, "inline"), (ARTICLE, "end"), (OTHER, "inline"), (TRAINING, "training")]
    places.append((None, "page"))
    utm_sources = [None, "linkedin", "newsletter", "google"]
    campaigns = [None, "spring-cspo", "autumn-cspo"]
    topic_sets = [["cspo-classes"], ["newsletter"], ["cspo-classes", "newsletter"]]
    leads = []
    for i in range(n):
        created = BASE - timedelta(hours=7 * i, minutes=i % 3)
        if 44 <= i <= 57:
            created = BASE - timedelta(hours=7 * 44)
        slug, placement = places[i % len(places)]
        leads.append(
            Seeded(
                public_id=f"lead{i:04d}",
                email=f"{prefixes[i % 5]}.{i:03d}@{domains[i % 3]}",
                name=names[(i * 7) % len(names)],
                status=statuses[(i * 3) % len(statuses)],
                source_slug=slug,
                source_placement=placement,
                utm_source=utm_sources[(i // 2) % len(utm_sources)],
                utm_campaign=campaigns[(i // 3) % len(campaigns)],
                created_at=created,
                topics=topic_sets[(i // 5) % len(topic_sets)],
            )
        )
    return leads


def store(app, leads: list[Seeded]) -> list[Seeded]:
    with app.app_context():
        db.session.execute(
            insert(Lead),
            [
                {
                    "public_id": s.public_id,
                    "email": s.email,
                    "name": s.name,
                    "status": LeadStatus(s.status),
                    "source_slug": s.source_slug,
                    "source_placement": s.source_placement,
                    "utm_source": s.utm_source,
                    "utm_campaign": s.utm_campaign,
                    "created_at": s.created_at,
                    "confirmed_at": s.created_at + timedelta(minutes=5)
                    if s.status != "pending"
                    else None,
                }
                for s in leads
            ],
        )
        ids = dict(db.session.execute(select(Lead.public_id, Lead.id)).all())
        for s in leads:
            s.id = ids[s.public_id]
        topic_rows = [{"lead_id": s.id, "topic": t} for s in leads for t in s.topics]
        if topic_rows:
            db.session.execute(insert(LeadTopic), topic_rows)
        db.session.commit()
    return leads


@pytest.fixture
def seeded(app) -> list[Seeded]:
    return store(app, make_leads())


@pytest.fixture
def staff(app, client):
    sign_in_as(app, client)
    return client


def walk(client, url: str, max_pages: int = 20) -> tuple[list[str], int]:
    """Follow Next page links from url; (public ids in order, pages seen)."""
    seen: list[str] = []
    pages = 0
    while url:
        r = client.get(url)
        assert r.status_code == 200, f"{url}: {r.status_code}"
        html = r.get_data(as_text=True)
        rows = _ROW.findall(html)
        assert len(rows) <= PER_PAGE
        seen.extend(public_id for public_id, _ in rows)
        pages += 1
        assert pages <= max_pages, "the Next page links never end"
        match = _NEXT.search(html)
        url = unescape(match.group(1)) if match else None
        if url:
            assert len(rows) == PER_PAGE, "a Next page link under a part-filled page"
    return seen, pages


def page_text(html: str) -> str:
    """What a person reads: tags gone, entities decoded, spaces collapsed."""
    text = unescape(re.sub(r"<[^>]+>", " ", html))
    text = re.sub(r"\s+", " ", text)
    return re.sub(r" ([:,.)])", r"\1", text)


def newest_first(leads):
    return sorted(leads, key=lambda s: (s.created_at, s.id), reverse=True)


def q_matches(q: str):
    q = q.lower()
    return lambda s: s.email.startswith(q) or (s.name or "").lower().startswith(q)


def day_start(d: date) -> datetime:
    return datetime(d.year, d.month, d.day, tzinfo=UTC)


SINCE = date(2026, 3, 1)
UNTIL = date(2026, 3, 10)

# (query string, which seeded leads match)
CASES = [
    ({}, lambda s: True),
    ({"q": "ann"}, q_matches("ann")),
    ({"q": "anna."}, q_matches("anna.")),
    ({"q": "ANN"}, q_matches("ann")),
    ({"q": "bob.002"}, q_matches("bob.002")),
    ({"q": "ÉLODIE"}, q_matches("élodie")),
    ({"q": "zo"}, q_matches("zo")),
    ({"q": "ann😀"}, q_matches("ann😀")),
    ({"q": "o'b"}, q_matches("o'b")),
    ({"q": "Élo"}, q_matches("élo")),
    ({"q": "élodie"}, q_matches("élodie")),
    ({"q": "  Ben  "}, q_matches("ben")),
    ({"status": "pending"}, lambda s: s.status == "pending"),
    ({"status": "confirmed"}, lambda s: s.status == "confirmed"),
    ({"status": "unsubscribed"}, lambda s: s.status == "unsubscribed"),
    ({"topic": "newsletter"}, lambda s: "newsletter" in s.topics),
    ({"topic": "cspo-classes"}, lambda s: "cspo-classes" in s.topics),
    ({"source": ARTICLE}, lambda s: s.source_slug == ARTICLE),
    ({"source": TRAINING}, lambda s: s.source_slug == TRAINING),
    ({"placement": "inline"}, lambda s: s.source_placement == "inline"),
    ({"placement": "page"}, lambda s: s.source_placement == "page"),
    ({"utm_source": "linkedin"}, lambda s: s.utm_source == "linkedin"),
    ({"utm_campaign": "spring-cspo"}, lambda s: s.utm_campaign == "spring-cspo"),
    ({"since": SINCE.isoformat()}, lambda s: s.created_at >= day_start(SINCE)),
    (
        {"until": UNTIL.isoformat()},
        lambda s: s.created_at < day_start(UNTIL + timedelta(days=1)),
    ),
    (
        {"since": SINCE.isoformat(), "until": UNTIL.isoformat()},
        lambda s: day_start(SINCE) <= s.created_at < day_start(UNTIL + timedelta(days=1)),
    ),
    ({"since": "2026-03-20", "until": "2026-03-20"}, lambda s: s.created_at.date() == BASE.date()),
    (
        {"status": "confirmed", "topic": "newsletter", "source": ARTICLE, "q": "a"},
        lambda s: (
            s.status == "confirmed"
            and "newsletter" in s.topics
            and s.source_slug == ARTICLE
            and q_matches("a")(s)
        ),
    ),
    ({"utm_source": "nobody-uses-this"}, lambda s: False),
]


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
    next_url = unescape(_NEXT.search(first).group(1))
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
    {"until": "9999-12-31"},
    {"since": "0001-01-01"},
    {"since": "0001-01-01", "until": "9999-12-31", "sort": "oldest"},
    {"q": "a\u0000b"},
    {"utm_source": "x\u0000"},
    {"source": "\u0000"},
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


def test_wide_date_range_keeps_every_lead(staff, seeded):
    ids, _ = walk(staff, "/marketing/leads?since=0001-01-01&until=9999-12-31")
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
        subscriptions.subscribe(
            SignupRequest(
                email="zoe@example.com",
                name="Zoë <b>",
                topics=["cspo-classes", "newsletter"],
                placement="inline",
                source_slug=ARTICLE,
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
    text = page_text(html)
    # Where it signed up, and what it was shown.
    assert "zoe@example.com" in text
    assert "Zoë <b>" in text and "Zoë <b>" not in html, "the name is escaped"
    assert f"{ARTICLE} (inline form)" in text
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
        subscriptions.subscribe(
            SignupRequest(email="t@example.com", topics=["newsletter"], placement="page"),
            Evidence(),
        )
        db.session.commit()
        lead = subscriptions.lead_by_email("t@example.com")
        subscriptions.confirm(lead, lead.created_at, Evidence())
        db.session.commit()
        public_id = lead.public_id
    html = staff.get(f"/marketing/leads/{public_id}").get_data(as_text=True)
    stamps = re.findall(r'<time datetime="([^"]+)"', html)
    assert len(stamps) >= 4  # given, confirmation mail, confirmed, welcome mail
    assert stamps == sorted(stamps)
    text = page_text(html)
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
    ((public_id, email),) = _ROW.findall(html)
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
