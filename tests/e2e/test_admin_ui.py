"""The admin pages in Chromium against gunicorn, mail through a real SMTP
server on loopback and `flask worker --once` sending in between (issue 16,
part 2): the announcement's progress updating by itself, backing off and
stopping when finished, and with JavaScript off through its Refresh link;
the audience form's count naming the frequency cap and a topic select wide
enough for its labels; the training page's class times in the visitor's
own zone. Screenshots go to test-artifacts/e2e/admin-ui-*.png."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from datetime import time as clock_time

import pytest
from playwright.sync_api import expect

from app import create_app
from extensions import db
from models import MailKind, OutboxMessage, OutboxStatus
from tests import procs
from tests.e2e.chromium import launch_chromium, screenshots
from tests.factories import make_class, make_lead
from tests.helpers import smtp_settings

pytestmark = pytest.mark.e2e

ADMIN = "admin.ui@example.com"
PASSWORD = "a long admin password for e2e"
TIMEOUT_MS = 15_000
CAP_REASON = "frequency cap: marketing mail sent in the last 2 days"


@pytest.fixture
def site(tmp_path, smtp_server) -> Iterator[dict]:
    """Four confirmed leads of the class topic, one of them sent marketing
    mail an hour ago (the cap holds it back), and an online class in
    Berlin at 09:00–17:00 in January (CET)."""
    url = f"sqlite:///{tmp_path / 'leads.sqlite3'}"
    env = procs.app_env(
        tmp_path, url, port=procs.free_port(), **smtp_settings(smtp_server), FREQUENCY_CAP_DAYS="2"
    )
    procs.flask_db_upgrade(env)
    procs.flask(env, "users", "create", ADMIN, "--role", "admin", "--password", PASSWORD)
    seed = create_app({"TESTING": True, "SQLALCHEMY_DATABASE_URI": url})
    with seed.app_context():
        for name in ("ann", "bob", "cara", "dan"):
            make_lead(f"{name}@example.com", name=name.title())
        hour_ago = datetime.now(UTC) - timedelta(hours=1)
        db.session.add(
            OutboxMessage(
                kind=MailKind.CLASSES_FOLLOWUP,
                lead_id=make_lead("mailed@example.com").id,
                status=OutboxStatus.SENT,
                sent_at=hour_ago,
                send_after=hour_ago,
                created_at=hour_ago,
            )
        )
        year = datetime.now(UTC).year + 1
        make_class(
            title="CSPO live online",
            start=(datetime(year, 1, 14).date(), clock_time(9, 0)),
            tz="Europe/Berlin",
            online=True,
        )
        db.session.commit()
        db.session.remove()
        db.engine.dispose()
    with procs.gunicorn(env, workers=2) as server:
        yield {"url": server.url, "env": env, "smtp": smtp_server}


@pytest.fixture
def browser():
    with launch_chromium() as b:
        yield b


def new_page(browser, **options):
    context = browser.new_context(viewport={"width": 1200, "height": 900}, **options)
    context.set_default_timeout(TIMEOUT_MS)
    return context.new_page()


def sign_in(page, base: str) -> None:
    page.goto(base + "/admin/announcements")
    page.get_by_label("Email").fill(ADMIN)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Announcements")).to_be_visible()


def write_and_send_now(page, base: str, subject: str) -> str:
    page.goto(base + "/admin/announcements/new")
    page.get_by_label("Subject").fill(subject)
    page.get_by_label("Body (Markdown with merge tags)").fill("Hello {{ first_name or 'there' }}.")
    page.get_by_label("Send to leads who want").select_option("cspo-classes")
    page.get_by_role("button", name="Save draft").click()
    expect(page.get_by_role("status").first).to_contain_text("Draft saved")
    page.get_by_role("button", name="Send now").click()
    expect(page.get_by_role("status").first).to_contain_text("Sending now")
    expect(page.locator("#ann-status")).to_have_text("scheduled")
    return page.url


def test_progress_updates_by_itself_backs_off_and_stops_when_finished(site, browser):
    page = new_page(browser)
    shot = screenshots("admin-ui")
    polls: list[float] = []
    page.on(
        "request",
        lambda r: polls.append(time.monotonic()) if r.url.endswith("/progress.json") else None,
    )
    sign_in(page, site["url"])
    write_and_send_now(page, site["url"], "Progress by itself")
    expect(page.locator("#progress-waiting")).to_be_visible()
    expect(page.locator("#progress-auto")).to_contain_text("update by themselves")
    page.evaluate("window.notReloaded = true")
    shot(page, "progress-waiting")

    # Nothing moves while it waits for a worker: the polls space out.
    polls.clear()
    deadline = time.monotonic() + 20
    while len(polls) < 3 and time.monotonic() < deadline:
        page.wait_for_timeout(200)
    assert len(polls) >= 3, polls
    first_gap, second_gap = polls[1] - polls[0], polls[2] - polls[1]
    assert second_gap > first_gap * 1.2, (first_gap, second_gap)

    counts = procs.worker_once(site["env"])
    assert (counts["sent"], counts["skipped"]) == (4, 1), counts

    # The page catches up without a reload: status, bar, counts, skips.
    expect(page.locator("#ann-status")).to_have_text("sent", timeout=30_000)
    expect(page.locator("#progress-text")).to_contain_text("5 of 5 done")
    expect(page.locator("#progress-bar")).to_have_js_property("value", 5)
    expect(page.locator("#progress-waiting")).to_be_hidden()
    expect(page.locator("#skips-body")).to_contain_text(CAP_REASON)
    expect(page.locator("#progress-auto")).to_contain_text("finished")
    assert page.evaluate("window.notReloaded") is True
    shot(page, "progress-sent")

    # Finished: no more polling.
    settled = len(polls)
    page.wait_for_timeout(5000)
    assert len(polls) == settled

    # The pages around it name the announcement and link back to it.
    detail = page.url
    page.goto(site["url"] + "/admin/outbox?kind=announcement")
    expect(page.get_by_role("link", name="Progress by itself")).to_have_count(5)
    shot(page, "outbox")
    page.goto(site["url"] + "/admin/audit")
    page.get_by_role("row").filter(has_text="announcement.schedule").get_by_role(
        "link", name="Progress by itself"
    ).click()
    assert page.url == detail
    page.goto(site["url"] + "/admin/audit")
    shot(page, "audit")
    page.goto(site["url"] + "/admin/announcements")
    shot(page, "announcements")


def test_without_javascript_the_refresh_link_shows_the_progress(site, browser):
    page = new_page(browser, java_script_enabled=False)
    shot = screenshots("admin-ui-nojs")
    sign_in(page, site["url"])
    write_and_send_now(page, site["url"], "Progress without JS")
    refresh = page.get_by_role("link", name="Refresh")
    expect(refresh).to_be_visible()
    assert procs.worker_once(site["env"])["sent"] == 4
    expect(page.locator("#ann-status")).to_have_text("scheduled")  # nothing polls
    refresh.click()
    expect(page.locator("#ann-status")).to_have_text("sent")
    expect(page.locator("#progress-text")).to_contain_text("5 of 5 done")
    expect(page.locator("#skips-body")).to_contain_text(CAP_REASON)
    shot(page, "progress-refreshed")


def test_the_audience_form_names_the_cap_and_its_select_shows_whole_labels(site, browser):
    page = new_page(browser)
    shot = screenshots("admin-ui-form")
    sign_in(page, site["url"])
    page.goto(site["url"] + "/admin/announcements/new")
    count = page.locator("#audience-count")
    expect(count).to_contain_text("Reaches 5 confirmed leads right now.")
    expect(count).to_contain_text(
        "The frequency cap holds back 1 of them: they got marketing mail in the last 2 days."
    )
    page.get_by_label("Send even to leads who got marketing mail recently").check()
    expect(count).to_contain_text("1 of them got marketing mail in the last 2 days and get this")

    # Every option's label fits in its select, the arrow aside.
    for label in ("Send to leads who want", "Only leads who signed up on", "Linked class"):
        select = page.get_by_label(label)
        room, widest = select.evaluate(
            """(el) => {
              const ctx = document.createElement("canvas").getContext("2d");
              const style = getComputedStyle(el);
              ctx.font = style.font;
              const widest = Math.max(...[...el.options].map((o) => ctx.measureText(o.text).width));
              const room = el.clientWidth - parseFloat(style.paddingLeft)
                - parseFloat(style.paddingRight) - 20;
              return [room, widest];
            }"""
        )
        assert widest <= room, (label, widest, room)
    shot(page, "announcement-form")


@pytest.mark.parametrize(
    ("zone", "local"),
    [("America/New_York", "03:00–11:00"), ("Asia/Tokyo", "17:00–01:00"), ("Europe/Berlin", None)],
)
def test_online_class_times_also_show_in_the_visitors_zone(site, browser, zone, local):
    page = new_page(browser, timezone_id=zone, locale="en-GB")
    page.goto(site["url"] + "/certified-scrum-product-owner-cspo-training")
    card = page.locator("li.class-card").filter(has_text="CSPO live online")
    expect(card).to_contain_text("09:00–17:00")
    expect(card.locator(".zone")).to_have_text(re.compile(r"\(Europe/Berlin, CET\)"))
    if local is None:  # the visitor is in the class's zone: nothing added
        expect(card.locator(".local-time")).to_have_count(0)
        return
    expect(card.locator(".local-time")).to_contain_text("Your time: ")
    expect(card.locator(".local-time")).to_contain_text(local)
    expect(card.locator(".local-time")).to_contain_text(zone)
    screenshots(f"admin-ui-training-{zone.replace('/', '-')}")(page, "training")


def test_without_javascript_the_training_page_is_unchanged(site, browser):
    page = new_page(browser, timezone_id="America/New_York", java_script_enabled=False)
    page.goto(site["url"] + "/certified-scrum-product-owner-cspo-training")
    card = page.locator("li.class-card").filter(has_text="CSPO live online")
    expect(card).to_contain_text("09:00–17:00")
    expect(card.locator(".local-time")).to_have_count(0)
