"""The visitor's journey in Chromium against gunicorn, mail written as files.

Read the article (from a search, on a campaign link), sign up with the
inline form, run the worker, open the link in the delivered mail (that alone
leaves the lead pending) and confirm with its button, change topics from the
welcome mail, unsubscribe with the button; and the same signup with
JavaScript off (UTM values from the post's Referer). Screenshots of every
step go to test-artifacts/e2e/.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

import pytest
from playwright.sync_api import expect
from sqlalchemy import create_engine, text

from tests import procs
from tests.e2e.chromium import launch_chromium, screenshots

pytestmark = pytest.mark.e2e

ARTICLE = "/cspo-certification-benefits"
CAMPAIGN = "?utm_source=newsletter-e2e&utm_medium=email&utm_campaign=cspo-autumn"
SEARCH = "https://www.google.com/"
# Real visitors read for a while; the time trap drops faster posts silently.
FORM_MIN_SECONDS = 1


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Iterator[dict]:
    tmp = tmp_path_factory.mktemp("e2e")
    port = procs.free_port()
    env = procs.app_env(
        tmp,
        f"sqlite:///{tmp / 'leads.sqlite3'}",
        port=port,
        FORM_MIN_SECONDS=FORM_MIN_SECONDS,
    )
    procs.flask_db_upgrade(env)
    with procs.gunicorn(env, workers=2) as server:
        yield {"url": server.url, "env": env, "mail_dir": Path(env["MAIL_FILE_DIR"])}


@pytest.fixture(scope="module")
def browser():
    with launch_chromium() as browser:
        yield browser


@pytest.fixture
def shots(request):
    """shot(page, name): a full-page screenshot test-artifacts/e2e/<test>-NN-name.png."""
    return screenshots(request.node.name)


# --- Mail and database helpers.


def mails_to(mail_dir: Path, address: str, kind: str) -> list[EmailMessage]:
    found = []
    for path in sorted(mail_dir.glob("*.eml")):
        msg = message_from_bytes(path.read_bytes(), policy=policy.default)
        if msg["To"] and address in msg["To"].lower() and msg["X-Mail-Kind"] == kind:
            found.append(msg)
    return found


def one_mail(site: dict, address: str, kind: str) -> EmailMessage:
    mails = mails_to(site["mail_dir"], address, kind)
    names = sorted(p.name for p in site["mail_dir"].glob("*.eml"))
    assert len(mails) == 1, f"{len(mails)} {kind} mails to {address}; files: {names}"
    return mails[0]


def link(msg: EmailMessage, site: dict, path: str) -> str:
    body = msg.get_body(("plain",)).get_content()
    match = re.search(rf"{re.escape(site['url'])}/{path}/\S+", body)
    assert match, f"no /{path}/ link to {site['url']} in:\n{body}"
    return match.group(0)


def lead_row(site: dict, address: str) -> dict:
    engine = create_engine(site["env"]["DATABASE_URL"])
    try:
        with engine.connect() as conn:
            lead = (
                conn.execute(text("SELECT * FROM lead WHERE email = :e"), {"e": address})
                .mappings()
                .one()
            )
            topics = (
                conn.execute(
                    text("SELECT topic FROM lead_topic WHERE lead_id = :id ORDER BY topic"),
                    {"id": lead["id"]},
                )
                .scalars()
                .all()
            )
            events = conn.execute(
                text("SELECT kind, channel FROM consent_event WHERE lead_id = :id ORDER BY id"),
                {"id": lead["id"]},
            ).all()
    finally:
        engine.dispose()
    return {**lead, "topics": topics, "events": [tuple(e) for e in events]}


def confirm_with_the_button(page, site: dict, address: str, confirmation, shots) -> None:
    """Open the link in the mail: a page with the address and one button,
    and nothing changed yet (mail filters open links too). Then click it."""
    page.goto(link(confirmation, site, "confirm"))
    expect(page.get_by_role("heading", name="Confirm your subscription")).to_be_visible()
    expect(page.locator("main")).to_contain_text(address)
    button = page.locator("main").get_by_role("button")
    assert button.count() == 1
    assert lead_row(site, address)["status"] == "pending", "opening the link must not confirm"
    page.reload()  # opened again: still nothing
    assert lead_row(site, address)["status"] == "pending"
    shots(page, "confirm-button")
    page.get_by_role("button", name="Yes, confirm my subscription").click()
    page.wait_for_load_state()
    expect(page.get_by_role("heading", name="You're in — thank you!")).to_be_visible()
    assert lead_row(site, address)["status"] == "confirmed"


def sign_up(page, form_id: str, email: str, name: str) -> None:
    """Fill the form at #form_id's container like a person, after reading a while."""
    shown = time.monotonic()
    form = page.locator("form.signup").filter(has=page.locator(f"#email-{form_id}"))
    form.get_by_label("Email address").fill(email)
    form.get_by_label("First name (optional)").fill(name)
    form.get_by_label("CSPO class announcements").check()
    # The page's time stamp is rounded down (services.leads.signup_guard): the app
    # never sees the form as younger than it is, so a little past is enough.
    time.sleep(max(0.0, FORM_MIN_SECONDS + 0.3 - (time.monotonic() - shown)))
    form.get_by_role("button", name="Subscribe").click()
    page.wait_for_load_state()


# --- The journeys.


def test_read_sign_up_confirm_choose_topics_unsubscribe(browser, site, shots):
    address = "ann.e2e@example.com"
    context = browser.new_context(viewport={"width": 1100, "height": 900})
    page = context.new_page()
    try:
        # Read the article, arriving from a search on a campaign link.
        response = page.goto(site["url"] + ARTICLE + CAMPAIGN, referer=SEARCH)
        assert response.status == 200
        assert "set-cookie" not in response.headers
        # The page is the same for all; its script fills in this visit's values.
        assert "newsletter-e2e" not in response.text()
        inline_fields = page.locator("article form.signup")
        expect(inline_fields.locator("input[name=utm_source]")).to_have_value("newsletter-e2e")
        expect(inline_fields.locator("input[name=ref]")).to_have_value(SEARCH)
        assert page.title().startswith("CSPO Certification Benefits")
        assert page.get_by_role("heading", level=1).inner_text() == "CSPO Certification Benefits"
        expect(
            page.get_by_role("heading", name="Enhanced Product Ownership Skills")
        ).to_be_visible()
        assert "Things change so quickly in our world today" in page.inner_text("article")
        assert page.locator("form.signup").count() == 2
        shots(page, "article")

        # Sign up with the inline form (a third of the way in).
        inline = page.locator("article form.signup")
        inline.scroll_into_view_if_needed()
        sign_up(page, "inline", "  Ann.E2E@Example.com ", "Ann")
        expect(page.get_by_role("heading", name="Check your inbox")).to_be_visible()
        shots(page, "check-your-inbox")

        # The script recorded where the visitor came from.
        lead = lead_row(site, address)
        assert lead["status"] == "pending"
        assert (lead["utm_source"], lead["utm_medium"], lead["utm_campaign"]) == (
            "newsletter-e2e",
            "email",
            "cspo-autumn",
        )
        assert lead["referrer"] == SEARCH

        # The worker delivers the confirmation; its link shows the button.
        assert procs.worker_once(site["env"])["sent"] >= 1
        confirmation = one_mail(site, address, "confirmation")
        assert "List-Unsubscribe" not in confirmation
        confirm_with_the_button(page, site, address, confirmation, shots)
        shots(page, "confirmed")

        # The welcome mail: preferences link, then tick Newsletter and save.
        assert procs.worker_once(site["env"])["sent"] >= 1
        welcome = one_mail(site, address, "welcome")
        assert welcome["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        page.goto(link(welcome, site, "preferences"))
        expect(page.get_by_role("heading", name="Your email preferences")).to_be_visible()
        assert page.get_by_label("CSPO class announcements").is_checked()
        assert not page.get_by_label("Newsletter").is_checked()
        page.get_by_label("Newsletter").check()
        page.get_by_role("button", name="Save my choices").click()
        page.wait_for_load_state()
        expect(page.get_by_role("status")).to_have_text("Your choices are saved.")
        expect(page.get_by_label("Newsletter")).to_be_checked()
        shots(page, "preferences-saved")
        assert lead_row(site, address)["topics"] == ["cspo-classes", "newsletter"]

        # Unsubscribe from the List-Unsubscribe header: GET shows one button.
        unsub = re.search(r"<(http[^>]+/unsubscribe/[^>]+)>", welcome["List-Unsubscribe"])[1]
        assert unsub.startswith(site["url"])
        page.goto(unsub)
        buttons = page.locator("main").get_by_role("button")
        assert buttons.count() == 1
        assert lead_row(site, address)["status"] == "confirmed", "GET must not unsubscribe"
        shots(page, "unsubscribe-button")
        buttons.click()
        page.wait_for_load_state()
        expect(page.get_by_role("heading", name="You are unsubscribed")).to_be_visible()
        shots(page, "unsubscribed")
    finally:
        context.close()

    lead = lead_row(site, address)
    assert lead["status"] == "unsubscribed"
    assert lead["unsubscribed_at"] is not None
    assert lead["source_slug"] == "cspo-certification-benefits"
    assert lead["source_placement"] == "inline"
    assert lead["name"] == "Ann"
    kinds = [kind for kind, _ in lead["events"]]
    assert kinds[:2] == ["given", "confirmed"]
    assert lead["events"][-1] == ("withdrawn", "link")


def test_sign_up_with_javascript_off(browser, site, shots):
    address = "noscript.e2e@example.com"
    context = browser.new_context(
        java_script_enabled=False, viewport={"width": 1100, "height": 900}
    )
    page = context.new_page()
    try:
        page.goto(site["url"] + ARTICLE + CAMPAIGN, referer=SEARCH)
        end = page.locator("section.end form.signup")
        end.scroll_into_view_if_needed()
        sign_up(page, "end", address, "")
        expect(page.get_by_role("heading", name="Check your inbox")).to_be_visible()
        shots(page, "check-your-inbox")

        procs.worker_once(site["env"])
        confirmation = one_mail(site, address, "confirmation")
        confirm_with_the_button(page, site, address, confirmation, shots)
        shots(page, "confirmed")
    finally:
        context.close()

    lead = lead_row(site, address)
    assert lead["status"] == "confirmed"
    assert lead["source_placement"] == "end"
    assert lead["topics"] == ["cspo-classes"]
    # Without the script, the UTM values come from the post's Referer (the
    # page's whole URL); the outside referrer is not known.
    assert (lead["utm_source"], lead["utm_campaign"]) == ("newsletter-e2e", "cspo-autumn")
    assert lead["referrer"] is None
