"""The marketer's day in Chromium against gunicorn: sign in, filter the
leads, open a lead, download the export, look at the dashboard's charts.

A visitor signs up through the article first (and the worker sends the
confirmation), so the lead page has a real timeline. Screenshots go to
test-artifacts/e2e/marketer-*.png.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from playwright.sync_api import expect
from sqlalchemy import create_engine, text

from tests import procs
from tests.e2e.chromium import launch_chromium, screenshots

pytestmark = pytest.mark.e2e

MARKETER = "marketer@example.com"
PASSWORD = "correct horse battery staple"
VISITOR = "visitor.e2e@example.com"
GENERATED = 300
TIMEOUT_MS = 15_000


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Iterator[dict]:
    tmp = tmp_path_factory.mktemp("e2e-marketer")
    port = procs.free_port()
    env = procs.app_env(tmp, f"sqlite:///{tmp / 'leads.sqlite3'}", port=port, FORM_MIN_SECONDS=0)
    procs.flask_db_upgrade(env)
    procs.flask(env, "leads", "generate", str(GENERATED), "--days", "60", "--seed", "5")
    procs.flask(env, "users", "create", MARKETER, "--role", "marketer", "--password", PASSWORD)
    with procs.gunicorn(env, workers=2) as server:
        yield {"url": server.url, "env": env}


@pytest.fixture(scope="module")
def browser():
    with launch_chromium() as browser:
        yield browser


@pytest.fixture
def shot():
    return screenshots("marketer")


def query(site: dict, sql: str, **params) -> list:
    engine = create_engine(site["env"]["DATABASE_URL"])
    try:
        with engine.connect() as conn:
            return conn.execute(text(sql), params).all()
    finally:
        engine.dispose()


def test_marketer_signs_in_filters_opens_exports_and_reads_the_dashboard(browser, site, shot):
    context = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    # The deliberately wrong password answers 401; any other error counts.
    page.on(
        "console",
        lambda msg: msg.type == "error" and "401" not in msg.text and errors.append(msg.text),
    )
    try:
        # A visitor signs up on the article; the worker sends the confirmation.
        page.goto(site["url"] + "/cspo-certification-benefits")
        form = page.locator("article form.signup")
        form.get_by_label("Email address").fill(VISITOR)
        form.get_by_label("First name (optional)").fill("Zoë")
        form.get_by_label("CSPO class announcements").check()
        form.get_by_role("button", name="Subscribe").click()
        expect(page.get_by_role("heading", name="Check your inbox")).to_be_visible()
        assert procs.worker_once(site["env"])["sent"] == 1
        context.clear_cookies()

        # A staff page sends an anonymous visitor to the sign-in form.
        page.goto(site["url"] + "/marketing/leads")
        assert urlsplit(page.url).path == "/login"
        assert parse_qs(urlsplit(page.url).query)["next"] == ["/marketing/leads"]
        page.get_by_label("Email").fill(MARKETER)
        page.get_by_label("Password").fill("not the password at all")
        page.get_by_role("button", name="Sign in").click()
        expect(page.get_by_text("do not match an active account")).to_be_visible()
        shot(page, "login-refused")
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url(re.compile(r"/marketing/leads$"))
        expect(page.get_by_role("heading", name="Leads", exact=True)).to_be_visible()
        expect(page.get_by_role("status")).to_have_text(re.compile(r"^\d[\d,]*\+? leads$"))

        # Filter by status: pending. The visitor is the newest pending lead.
        page.get_by_label("Status").select_option("pending")
        page.get_by_role("button", name="Filter").click()
        page.wait_for_url(re.compile(r"status=pending"))
        pending = query(site, "SELECT count(*) FROM lead WHERE status = 'pending'")[0][0]
        expect(page.get_by_role("status")).to_have_text(f"{pending:,} leads")
        statuses = page.locator("table.leads tbody td span.status").all_inner_texts()
        assert statuses and set(statuses) == {"pending"}
        assert len(statuses) == min(pending, 50)
        shot(page, "leads-pending")

        # Open that lead: its timeline, consent evidence and mail.
        page.locator("table.leads tbody tr").first.get_by_role("link").click()
        expect(page.get_by_role("heading", name=VISITOR)).to_be_visible()
        timeline = page.locator("ol.timeline")
        expect(timeline).to_contain_text("Consent given via form")
        expect(timeline).to_contain_text("cspo-certification-benefits (inline form)")
        expect(timeline).to_contain_text("Mail “confirmation”: sent")
        page.get_by_text("Text shown").click()
        expect(timeline.locator("blockquote")).to_contain_text("We will email you a link")
        shot(page, "lead")

        # Export the confirmed leads; the file is the browser's result set.
        page.goto(site["url"] + "/marketing/leads?status=confirmed")
        with page.expect_download() as info:
            page.get_by_role("link", name="Export these to CSV").click()
        download = info.value
        assert re.fullmatch(r"leads-\d{4}-\d{2}-\d{2}\.csv", download.suggested_filename)
        body = Path(download.path()).read_bytes()
        rows = list(csv.reader(io.StringIO(body.decode("utf-8"), newline="")))
        assert rows[0][:4] == ["id", "email", "name", "status"]
        expected = query(
            site,
            "SELECT public_id, email FROM lead WHERE status = 'confirmed' "
            "ORDER BY created_at DESC, id DESC",
        )
        assert [(r[0], r[1]) for r in rows[1:]] == [tuple(e) for e in expected]
        assert {r[3] for r in rows[1:]} == {"confirmed"}
        audit = query(site, "SELECT action, actor FROM audit_event ORDER BY id DESC LIMIT 1")
        assert tuple(audit[0]) == ("leads.export", MARKETER)

        # The dashboard: funnels and a server-side SVG chart, no CDN.
        page.get_by_role("navigation", name="Main").get_by_role("link", name="Dashboard").click()
        page.wait_for_url(re.compile(r"/marketing/$"))
        chart = page.locator("svg.chart")
        expect(chart).to_be_visible()
        expect(chart.locator("rect.bar")).to_have_count(30)
        heights = [
            float(h)
            for h in chart.locator("rect.bar").evaluate_all(
                "bars => bars.map(b => b.getAttribute('height'))"
            )
        ]
        assert max(heights) > 0, "the chart shows the generated signups"
        box = chart.bounding_box()
        assert box and box["width"] > 400 and box["height"] > 100
        expect(page.get_by_role("heading", name="Funnel by article")).to_be_visible()
        expect(
            page.locator("section", has=page.locator("#funnel-article")).locator("tbody tr")
        ).not_to_have_count(0)
        shot(page, "dashboard-30")
        page.get_by_role("link", name="90 days").click()
        page.wait_for_url(re.compile(r"days=90"))
        expect(chart.locator("rect.bar")).to_have_count(90)
        shot(page, "dashboard-90")

        # Sign out with the button; staff pages are closed again.
        page.get_by_role("button", name="Sign out").click()
        page.wait_for_url(re.compile(r"/login$"))
        page.goto(site["url"] + "/marketing/")
        assert urlsplit(page.url).path == "/login"
    finally:
        context.close()
    assert not errors, errors
