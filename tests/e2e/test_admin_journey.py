"""The admin's journey in Chromium against gunicorn, mail through a real SMTP
server on loopback.

Sign in, create a class, see it on the training page, write an announcement
linked to it, preview it, send it now; `flask worker --once` delivers it to
the confirmed leads of that topic only, with the list headers; one of them
unsubscribes with the one-click POST from the List-Unsubscribe header (no
cookie, no CSRF token) and is left out of the next announcement.
Screenshots go to test-artifacts/e2e/admin-*.png.
"""

from __future__ import annotations

import re
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from playwright.sync_api import expect

from app import create_app
from extensions import db
from models import LeadStatus
from tests import procs
from tests.e2e.chromium import launch_chromium, screenshots
from tests.factories import make_lead
from tests.helpers import received, smtp_settings

pytestmark = pytest.mark.e2e

ADMIN = "admin.e2e@example.com"
PASSWORD = "a long admin password for e2e"
TIMEOUT_MS = 15_000
CLASS_AUDIENCE = {"ann@example.com", "bob@example.com", "cara@example.com"}


@pytest.fixture
def site(tmp_path, smtp_server) -> Iterator[dict]:
    port = procs.free_port()
    url = f"sqlite:///{tmp_path / 'leads.sqlite3'}"
    env = procs.app_env(
        tmp_path,
        url,
        port=port,
        **smtp_settings(smtp_server),
        FREQUENCY_CAP_DAYS="0",
    )
    procs.flask_db_upgrade(env)
    procs.flask(env, "users", "create", ADMIN, "--role", "admin", "--password", PASSWORD)

    seed = create_app({"TESTING": True, "SQLALCHEMY_DATABASE_URI": url})
    with seed.app_context():
        make_lead("ann@example.com", name="Ann")
        make_lead("bob@example.com", name="Bob")
        make_lead("cara@example.com", topics=("cspo-classes", "newsletter"))
        make_lead("news@example.com", topics=("newsletter",))
        make_lead("gone@example.com", status=LeadStatus.UNSUBSCRIBED)
        make_lead("pending@example.com", status=LeadStatus.PENDING)
        db.session.commit()
        db.session.remove()
        db.engine.dispose()

    with procs.gunicorn(env, workers=2) as server:
        yield {"url": server.url, "env": env, "smtp": smtp_server}


@pytest.fixture
def page():
    with launch_chromium() as browser:
        context = browser.new_context(viewport={"width": 1200, "height": 900})
        context.set_default_timeout(TIMEOUT_MS)
        yield context.new_page()
        context.close()


def write_announcement(page, site: dict, subject: str, body: str, class_title: str) -> str:
    """From the class list's "Announce" link: write and save a draft.
    Returns the announcement's detail URL."""
    page.goto(site["url"] + "/admin/classes")
    row = page.get_by_role("row").filter(has_text=class_title)
    row.get_by_role("link", name="Announce").click()
    expect(page.get_by_role("heading", name="New announcement")).to_be_visible()
    expect(page.get_by_label("Linked class")).to_have_value(re.compile(r".+"))
    expect(page.get_by_label("Send to leads who want")).to_have_value("cspo-classes")
    page.get_by_label("Subject").fill(subject)
    page.get_by_label("Body (Markdown with merge tags)").fill(body)
    # The live count (admin.js) answers from the server.
    expect(page.locator("#audience-count")).to_contain_text("Reaches")
    page.get_by_role("button", name="Save draft").click()
    expect(page.get_by_role("status").first).to_contain_text("Draft saved")
    return page.url


def test_admin_creates_a_class_announces_it_and_an_unsubscriber_hears_no_more(site, page):
    base = site["url"]
    start = (datetime.now(UTC) + timedelta(days=45)).date()
    shot = screenshots("admin")

    # Sign in.
    page.goto(base + "/admin/classes")
    expect(page.get_by_role("heading", name="Staff sign-in")).to_be_visible()
    page.get_by_label("Email").fill(ADMIN)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Classes")).to_be_visible()

    # Create a class.
    page.get_by_role("link", name="New class").click()
    page.get_by_label("Title", exact=True).fill("CSPO live online (e2e)")
    page.get_by_label("Start date").fill(start.isoformat())
    page.get_by_label("Start time").fill("09:00")
    page.get_by_label("End date").fill((start + timedelta(days=1)).isoformat())
    page.get_by_label("End time").fill("17:00")
    page.get_by_label("Time zone").fill("Europe/Berlin")
    page.get_by_label("Online class").check()
    page.get_by_label("Trainer").fill("Dana Trainer")
    page.get_by_label("Price").fill("1290")
    page.get_by_label("Seats", exact=True).fill("12")
    page.get_by_label("Seats taken").fill("4")
    page.get_by_label("Registration link").fill("https://tickets.example.org/cspo-e2e")
    shot(page, "class-form")
    page.get_by_role("button", name="Save class").click()
    expect(page.get_by_role("status").first).to_contain_text("Saved “CSPO live online (e2e)”")
    expect(page.get_by_role("row").filter(has_text="CSPO live online (e2e)")).to_contain_text(
        "09:00 Europe/Berlin"
    )
    shot(page, "class-list")

    # It is on the public training page, with a calendar file.
    page.goto(base + "/certified-scrum-product-owner-cspo-training")
    card = page.locator("li.class-card").filter(has_text="CSPO live online (e2e)")
    expect(card).to_contain_text("09:00")
    expect(card).to_contain_text("Europe/Berlin")
    expect(card).to_contain_text("8 seats left")
    expect(card.get_by_role("link", name="Register")).to_have_attribute(
        "href", re.compile(r"^/register/")
    )
    ics_href = card.get_by_role("link", name="Add to calendar").get_attribute("href")
    with urllib.request.urlopen(base + ics_href, timeout=10) as r:
        assert r.headers["Content-Type"].startswith("text/calendar")
        assert b"SUMMARY:CSPO live online (e2e)" in r.read()
    shot(page, "training-page")

    # Write the announcement, preview it, send it now.
    detail_url = write_announcement(
        page,
        site,
        "{{ class.title }}: seats open",
        "Hello {{ first_name or 'there' }},\n\n**{{ class.title }}** starts {{ class.start }}.",
        "CSPO live online (e2e)",
    )
    expect(page.get_by_text("Subject: CSPO live online (e2e): seats open")).to_be_visible()
    preview = page.frame_locator("iframe.mail-preview")
    expect(preview.get_by_text("Hello Alex,")).to_be_visible()
    expect(preview.get_by_role("link", name="Register")).to_be_visible()
    expect(page.locator("#ann-status")).to_have_text("draft")
    expect(page.get_by_label("Time zone")).to_have_value("Europe/Berlin")  # the class's zone
    shot(page, "announcement-preview")

    page.get_by_role("button", name="Send now").click()
    expect(page.get_by_role("status").first).to_contain_text("Sending now")
    expect(page.locator("#ann-status")).to_have_text("scheduled")

    counts = procs.worker_once(site["env"])
    assert counts["sent"] == 3, counts

    inbox = received(site["smtp"])
    assert set(inbox) == CLASS_AUDIENCE
    for address, msgs in inbox.items():
        assert len(msgs) == 1, address
        msg = msgs[0]
        assert msg["Subject"] == "CSPO live online (e2e): seats open"
        assert re.fullmatch(rf"<{re.escape(base)}/unsubscribe/[\w.-]+>", msg["List-Unsubscribe"])
        assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        assert msg["List-Id"]
        text = msg.get_body(("plain",)).get_content()
        assert f"Register: {base}/register/" in text
    assert inbox["ann@example.com"][0].get_body(("plain",)).get_content().startswith("Hello Ann,")

    page.goto(detail_url)
    expect(page.locator("#ann-status")).to_have_text("sent")
    expect(page.locator("#progress-text")).to_contain_text("3 of 3 done")
    shot(page, "announcement-sent")

    # Bob unsubscribes the way his mail program does: one POST, no cookie.
    unsubscribe = inbox["bob@example.com"][0]["List-Unsubscribe"].strip("<>")
    request = urllib.request.Request(
        unsubscribe,
        data=b"List-Unsubscribe=One-Click",
        method="POST",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    with urllib.request.urlopen(request, timeout=10) as r:
        assert r.status == 200
        assert "Set-Cookie" not in r.headers

    # The next announcement reaches everyone else, not him.
    site["smtp"].messages.clear()
    write_announcement(
        page,
        site,
        "Last seats for {{ class.title }}",
        "Hello {{ first_name or 'there' }}, only a few seats are left.",
        "CSPO live online (e2e)",
    )
    expect(page.get_by_text("confirmed leads who want")).to_contain_text("2")
    page.get_by_role("button", name="Send now").click()
    expect(page.get_by_role("status").first).to_contain_text("Sending now")
    assert procs.worker_once(site["env"])["sent"] == 2
    assert set(received(site["smtp"])) == CLASS_AUDIENCE - {"bob@example.com"}
