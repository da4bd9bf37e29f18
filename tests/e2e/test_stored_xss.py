"""Stored XSS: hostile lead data rendered to staff, in Chromium.

Leads, consent records, outbox rows, bounces and complaints (whose text
anyone on the internet writes), a class, an announcement, suppressions
and funnel figures are written straight into the database with markup and
`javascript:` URLs in every text column (the form would refuse most of it;
an import, an older version or a bug elsewhere might not). An admin signs in
through the login page and opens every page that shows that data: the lead
browser, each lead, the dashboard, the outbox list and each row with its mail
preview, each bounce, the announcement with its preview, classes,
suppressions, the audit log. Nothing may run: no dialog, no page error, no injected element in the
DOM, no `javascript:` link, no CSP report in the console. The CSV export
neutralises every cell a spreadsheet would run as a formula.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import text

from app import create_app
from extensions import db
from models import (
    Announcement,
    AnnouncementStatus,
    AuditEvent,
    ConsentEvent,
    ConsentKind,
    InboundEvent,
    InboundKind,
    Lead,
    LeadStatus,
    LeadTopic,
    MailKind,
    OutboxMessage,
    OutboxStatus,
    Role,
    Suppression,
    TrainingClass,
    User,
)
from services.staff.auth import hash_password
from tests import procs
from tests.e2e.chromium import launch_chromium

pytestmark = pytest.mark.e2e

ADMIN = "admin@example.com"
PASSWORD = "correct horse battery staple"

# Every payload calls alert(): a dialog means something ran.
XSS = [
    "<img src=x onerror=alert(1)>",
    '"><script>alert(2)</script>',
    "'><svg onload=alert(3)>",
    "</title></textarea><script>alert(4)</script>",
    "javascript:alert(5)",
    '" autofocus onfocus="alert(6)',
    "{{7*7}}<b>bold</b>",
    "<a href=javascript:alert(8)>click</a>",
]
FORMULAS = ['=HYPERLINK("http://evil.example","x")', "+1+1", "-2+3", "@SUM(1,1)", "\t=1"]


def _seed(url: str, secret: str) -> dict[str, list]:
    app = create_app({"TESTING": True, "SQLALCHEMY_DATABASE_URI": url, "SECRET_KEY": secret})
    now = datetime.now(UTC)
    ids: dict[str, list] = {
        "leads": [],
        "rows": [],
        "announcements": [],
        "classes": [],
        "inbound": [],
    }
    with app.app_context():
        db.session.add(User(email=ADMIN, password_hash=hash_password(PASSWORD), role=Role.ADMIN))
        cls = TrainingClass(
            title=XSS[0],
            starts_at=now + timedelta(days=40),
            ends_at=now + timedelta(days=41),
            timezone="Europe/Berlin",
            online=False,
            location=XSS[1],
            trainer=XSS[2],
            price=Decimal("999.00"),
            seats=10,
            registration_url="https://register.example/cspo",
        )
        db.session.add(cls)
        db.session.flush()
        ids["classes"].append(cls.public_id)
        ann = Announcement(
            subject=XSS[0],
            body=(
                f"Hello {{{{ first_name }}}}\n\n{XSS[1]}\n\n[click](javascript:alert(9))\n\n"
                f"<iframe src=javascript:alert(10)></iframe>\n\n{XSS[2]}"
            ),
            topic="cspo-classes",
            training_class_id=cls.id,
            status=AnnouncementStatus.DRAFT,
        )
        db.session.add(ann)
        db.session.flush()
        ids["announcements"].append(ann.public_id)
        for i, payload in enumerate(XSS + FORMULAS):
            lead = Lead(
                email=f'x{i}"><img src=x onerror=alert({100 + i})>@example.com',
                name=payload[:100],
                status=[LeadStatus.PENDING, LeadStatus.CONFIRMED, LeadStatus.UNSUBSCRIBED][i % 3],
                source_slug=payload[:200],
                source_placement=payload[:20],
                utm_source=payload,
                utm_medium=XSS[(i + 1) % len(XSS)],
                utm_campaign=XSS[(i + 2) % len(XSS)],
                utm_term=FORMULAS[i % len(FORMULAS)],
                utm_content=payload,
                referrer=f"javascript:alert({200 + i})//" if i % 2 else payload,
                created_at=now - timedelta(days=i % 20),
                confirmed_at=now if i % 3 == 1 else None,
                topics=[LeadTopic(topic="cspo-classes"), LeadTopic(topic="newsletter")],
            )
            db.session.add(lead)
            db.session.flush()
            ids["leads"].append(lead.public_id)
            db.session.add(
                ConsentEvent(
                    lead_id=lead.id,
                    kind=ConsentKind.GIVEN,
                    at=now,
                    channel=payload[:20],
                    ip=payload[:45],
                    user_agent=payload,
                    topics=payload[:200],
                    source_slug=payload[:200],
                    placement=payload[:20],
                )
            )
            for kind, status in (
                (MailKind.CONFIRMATION, OutboxStatus.FAILED),
                (MailKind.WELCOME, OutboxStatus.SENT),
                (MailKind.ANNOUNCEMENT, OutboxStatus.SKIPPED),
            ):
                row = OutboxMessage(
                    kind=kind,
                    lead_id=lead.id,
                    status=status,
                    send_after=now,
                    created_at=now,
                    attempts=1,
                    last_error=payload,
                    subject=payload[:300],
                    claimed_by=payload[:100],
                    announcement_id=ann.id if kind == MailKind.ANNOUNCEMENT else None,
                )
                db.session.add(row)
                db.session.flush()
                ids["rows"].append(row.id)
            event = InboundEvent(
                kind=list(InboundKind)[i % len(InboundKind)],
                source=payload[:40],
                status_code=payload[:20],
                diagnostic=payload,
                recipient=payload,
                envelope_to=payload,
                outcome=payload,
                outbox_message_id=row.id,
                lead_id=lead.id,
                dedupe_key=f"xss-{i}",
                raw=f"Subject: {payload}\r\n\r\n{payload}".encode(),
                raw_size=1000,
            )
            db.session.add(event)
            db.session.flush()
            ids["inbound"].append(event.id)
            db.session.add(
                Suppression(
                    email_hash=f"{i:064d}",
                    reason=payload[:40],
                    detail=payload,
                    lead_id=lead.id,
                    inbound_event_id=event.id,
                )
            )
            db.session.execute(
                text(
                    "INSERT INTO signup_stats_daily (day, source_slug, placement, utm_source, "
                    "submissions, signups, confirmed, unsubscribed, clicks) "
                    "VALUES (:day, :slug, :placement, :utm, 3, 2, 1, 0, 1)"
                ),
                {
                    "day": (now - timedelta(days=i)).date(),
                    "slug": payload[:200],
                    "placement": payload[:20],
                    "utm": payload[:200],
                },
            )
        test_send = OutboxMessage(
            kind=MailKind.ANNOUNCEMENT,
            to_email=XSS[0],
            announcement_id=ann.id,
            status=OutboxStatus.FAILED,
            last_error=XSS[1],
            created_at=now,
        )
        db.session.add(test_send)
        db.session.flush()
        ids["rows"].append(test_send.id)
        db.session.add(Suppression(email_hash="f" * 64, reason=XSS[0][:20], detail=XSS[1]))
        db.session.add(
            AuditEvent(actor=XSS[0], action=XSS[1][:50], target=XSS[2], details={"x": XSS[3]})
        )
        db.session.commit()
        db.engine.dispose()
    return ids


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Iterator[dict]:
    tmp = tmp_path_factory.mktemp("xss")
    port = procs.free_port()
    url = f"sqlite:///{tmp / 'leads.sqlite3'}"
    env = procs.app_env(tmp, url, port=port, LOGIN_RATE_LIMIT="100 per minute")
    procs.flask_db_upgrade(env)
    ids = _seed(url, env["SECRET_KEY"])
    with procs.gunicorn(env, workers=1) as server:
        yield {"url": server.url, "ids": ids, "server": server}


@pytest.fixture(scope="module")
def admin_page(site):
    with launch_chromium() as browser:
        context = browser.new_context(base_url=site["url"])
        page = context.new_page()
        events: dict[str, list[str]] = {"dialogs": [], "errors": [], "console": []}

        def on_dialog(dialog):
            events["dialogs"].append(f"{page.url}: {dialog.type} {dialog.message}")
            dialog.dismiss()

        page.on("dialog", on_dialog)
        page.on("pageerror", lambda exc: events["errors"].append(f"{page.url}: {exc}"))
        page.on(
            "console",
            lambda msg: (
                events["console"].append(f"{page.url}: {msg.type}: {msg.text}")
                if msg.type in ("error", "warning")
                else None
            ),
        )
        page.goto("/login")
        page.fill("input[name=email]", ADMIN)
        page.fill("input[name=password]", PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_url("**/admin/")  # admins land on /admin/
        yield page, context, events


# Elements and attributes that exist only if a payload became markup.
INJECTED = """() => {
  const found = [];
  const docs = [document];
  for (const f of document.querySelectorAll('iframe')) {
    try { if (f.contentDocument) docs.push(f.contentDocument); } catch (e) {}
  }
  for (const d of docs) {
    const suspects = 'img[src="x"], script:not([src]), iframe[src^="javascript"], b';
    for (const el of d.querySelectorAll(suspects)) {
      if (el.tagName === 'SCRIPT' && !/alert/.test(el.textContent)) continue;
      // Structured data is JSON, never run: hostile text inside it is fine
      // as long as it stayed inside (the whole script still parses).
      if (el.type === 'application/ld+json') {
        try { JSON.parse(el.textContent); continue; } catch (e) {}
      }
      if (el.tagName === 'B' && el.textContent !== 'bold') continue;
      found.push(el.outerHTML.slice(0, 120));
    }
    for (const el of d.querySelectorAll('*')) {
      for (const a of el.attributes) {
        if (/^on/i.test(a.name) || /^\\s*javascript:/i.test(a.value)) {
          found.push(el.tagName + ' ' + a.name + '=' + a.value.slice(0, 80));
        }
      }
    }
  }
  return found;
}"""


def _pages(ids: dict) -> list[str]:
    q = (
        "?q=%3Cimg%20src%3Dx%20onerror%3Dalert(11)%3E"
        "&utm_source=%22%3E%3Cscript%3Ealert(12)%3C/script%3E"
    )
    pages = [
        "/marketing/",
        "/marketing/?days=90",
        "/marketing/leads",
        "/marketing/leads" + q,
        "/marketing/leads?sort=oldest",
        "/admin/",
        "/admin/outbox",
        "/admin/outbox?status=failed",
        "/admin/announcements",
        "/admin/classes",
        "/admin/suppressions",
        "/admin/audit",
        "/admin/users",
        "/account/",
        "/certified-scrum-product-owner-cspo-training",
    ]
    pages += [f"/marketing/leads/{p}" for p in ids["leads"]]
    pages += [f"/admin/outbox/{r}" for r in ids["rows"]]
    pages += [f"/admin/outbox/{r}/html" for r in ids["rows"][:6]]
    for p in ids["announcements"]:
        pages += [
            f"/admin/announcements/{p}",
            f"/admin/announcements/{p}/preview.html",
            f"/admin/announcements/{p}/edit",
        ]
    pages += [f"/admin/classes/{p}" for p in ids["classes"]]
    pages += [f"/admin/inbound/{e}" for e in ids["inbound"]]
    return pages


def test_hostile_lead_data_never_runs_in_staff_pages(site, admin_page):
    page, _, events = admin_page
    problems: list[str] = []
    visited = 0
    for path in _pages(site["ids"]):
        response = page.goto(path)
        assert response is not None and response.status < 500, (path, response and response.status)
        assert response.status == 200, (path, response.status)
        page.wait_for_load_state("load")
        for frame in page.frames[1:]:
            frame.wait_for_load_state("load")
        injected = page.evaluate(INJECTED)
        problems += [f"{path}: {el}" for el in injected]
        visited += 1
        if path in ("/marketing/leads", "/marketing/", "/admin/outbox"):
            # The payloads are there, as text: the test saw them rendered.
            shown = page.inner_text("main")
            assert sum(p in shown for p in XSS) >= 3, (path, shown[:500])
    assert visited >= 40
    assert events["dialogs"] == [], events["dialogs"]
    assert events["errors"] == [], events["errors"]
    assert problems == [], "\n".join(problems)
    # No CSP report: escaping did the work, not the policy as a last line.
    csp = [m for m in events["console"] if "Content Security Policy" in m or "sandbox" in m]
    assert csp == [], "\n".join(csp)
    print("\n".join(events["console"]))
    assert "Traceback" not in site["server"].log(tail=1_000_000)


@pytest.mark.parametrize("excel", ["0", "1"])
def test_the_export_neutralises_every_formula(site, admin_page, excel):
    _, context, _ = admin_page
    r = context.request.get(f"/marketing/leads.csv?excel={excel}")
    assert r.status == 200
    assert r.headers["content-type"].startswith("text/csv")
    body = r.text().lstrip("\ufeff")
    rows = list(csv.reader(io.StringIO(body)))
    assert len(rows) == 1 + len(XSS) + len(FORMULAS)
    cells = [cell for row in rows[1:] for cell in row]
    dangerous = [c for c in cells if c[:1] in ("=", "+", "-", "@", "\t", "\r", "\n")]
    assert dangerous == [], dangerous
    # The formulas are all still there, as text.
    for formula in FORMULAS:
        assert "'" + formula in cells, formula
