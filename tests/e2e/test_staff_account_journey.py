"""A staff member's account in Chromium against gunicorn, mail through a
real SMTP server on loopback and `flask worker --once`.

Set up two-factor sign-in on the account page (the key read off the page,
the code computed here with pyotp), sign out, sign in with password and
code, then with a recovery code; then a password reset from the login
page's "Forgot your password?" through the mail's link.
Screenshots go to test-artifacts/e2e/account-*.png.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

import pyotp
import pytest
from playwright.sync_api import Page, expect

from tests import procs
from tests.e2e.chromium import launch_chromium, screenshots
from tests.helpers import received, smtp_settings

pytestmark = pytest.mark.e2e

ADMIN = "owner.e2e@example.com"
PASSWORD = "a long admin password for e2e"
NEW_PASSWORD = "the new password after the reset"
TIMEOUT_MS = 15_000


@pytest.fixture
def site(tmp_path, smtp_server) -> Iterator[dict]:
    port = procs.free_port()
    env = procs.app_env(
        tmp_path, f"sqlite:///{tmp_path / 'leads.sqlite3'}", port=port, **smtp_settings(smtp_server)
    )
    procs.flask_db_upgrade(env)
    procs.flask(env, "users", "create", ADMIN, "--role", "admin", "--password", PASSWORD)
    with procs.gunicorn(env, workers=2) as server:
        yield {"url": server.url, "env": env, "smtp": smtp_server}


@pytest.fixture
def page() -> Iterator[Page]:
    with launch_chromium() as browser:
        context = browser.new_context(viewport={"width": 1100, "height": 900})
        context.set_default_timeout(TIMEOUT_MS)
        yield context.new_page()
        context.close()


def sign_in(page: Page, site: dict, password: str = PASSWORD) -> None:
    page.goto(site["url"] + "/login")
    page.get_by_label("Email").fill(ADMIN)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()


def sign_out(page: Page) -> None:
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("heading", name="Staff sign-in")).to_be_visible()


def next_code(totp: pyotp.TOTP) -> str:
    # The next time step's code: accepted now (one step of clock drift
    # either side), and later than any step used before, however the
    # seconds fall (a code of a step already used is refused).
    return totp.at(time.time(), counter_offset=1)


def test_two_factor_sign_in_and_a_password_reset(site, page):
    shot = screenshots("account")

    sign_in(page, site)
    expect(page).to_have_url(site["url"] + "/admin/")
    page.get_by_role("link", name="Account").click()
    expect(page.get_by_role("heading", name="Your account")).to_be_visible()
    expect(page.get_by_role("heading", name="API tokens")).to_be_visible()
    shot(page, "account-page")

    # Set up 2FA: the QR code, the key as text, a code from the "app".
    page.get_by_role("link", name="Set up two-factor sign-in").click()
    expect(page.locator("figure.qr svg")).to_be_visible()
    secret = page.locator("#totp-secret").inner_text().strip()
    assert re.fullmatch(r"[A-Z2-7]{32}", secret)
    page.get_by_text("The full otpauth:// link").click()
    expect(page.get_by_text(f"secret={secret}")).to_be_visible()
    shot(page, "two-factor-setup")
    totp = pyotp.TOTP(secret)
    page.get_by_label("6-digit code from your app").fill(totp.now())
    page.get_by_role("button", name="Turn on two-factor sign-in").click()
    expect(page.get_by_role("heading", name="Your recovery codes")).to_be_visible()
    codes = [c.strip() for c in page.locator("#recovery-codes code").all_inner_texts()]
    assert len(codes) == 10
    shot(page, "recovery-codes")
    page.get_by_role("link", name="I have saved them").click()
    expect(page.get_by_text("Recovery codes left: 10")).to_be_visible()
    sign_out(page)

    # Password, then a code.
    sign_in(page, site)
    expect(page.get_by_role("heading", name="Two-factor sign-in")).to_be_visible()
    shot(page, "code-step")
    page.get_by_label(re.compile("Code from your authenticator app")).fill(next_code(totp))
    page.get_by_role("button", name="Continue").click()
    expect(page).to_have_url(site["url"] + "/admin/")
    sign_out(page)

    # Password, then a recovery code; it works once.
    sign_in(page, site)
    page.get_by_label(re.compile("Code from your authenticator app")).fill(codes[0])
    page.get_by_role("button", name="Continue").click()
    expect(page).to_have_url(site["url"] + "/admin/")
    expect(page.get_by_text("9 left")).to_be_visible()
    sign_out(page)
    sign_in(page, site)
    page.get_by_label(re.compile("Code from your authenticator app")).fill(codes[0])
    page.get_by_role("button", name="Continue").click()
    expect(page.get_by_text("That code is not right, or it was used already.")).to_be_visible()

    # Forgot the password: the login page's link, the mail, its link.
    page.goto(site["url"] + "/login")
    page.get_by_role("link", name="Forgot your password?").click()
    page.get_by_label("Your email address").fill(ADMIN)
    shot(page, "forgot")
    page.get_by_role("button", name="Send me a link").click()
    expect(page.get_by_role("heading", name="Check your mail")).to_be_visible()
    assert procs.worker_once(site["env"])["sent"] == 1
    (mail,) = received(site["smtp"])[ADMIN]
    assert mail["X-Mail-Kind"] == "password_reset"
    link = re.search(
        r"http://127\.0\.0\.1:\d+/password/reset/\S+", mail.get_body(("plain",)).get_content()
    )[0]
    page.goto(link)
    expect(page.get_by_role("heading", name="Choose a new password")).to_be_visible()
    expect(page.get_by_text("At least 12 characters")).to_be_visible()
    page.get_by_label(re.compile(r"^New password \(")).fill(NEW_PASSWORD)
    page.get_by_label("New password again").fill(NEW_PASSWORD)
    shot(page, "reset")
    page.get_by_role("button", name="Set new password").click()
    expect(page.get_by_text(f"Your password is set. Sign in as {ADMIN}.")).to_be_visible()

    # The old password no longer works; the new one (and 2FA) does.
    sign_in(page, site)
    expect(page.get_by_text("That email and password do not match")).to_be_visible()
    sign_in(page, site, NEW_PASSWORD)
    page.get_by_label(re.compile("Code from your authenticator app")).fill(codes[1])
    page.get_by_role("button", name="Continue").click()
    expect(page).to_have_url(site["url"] + "/admin/")
    page.goto(link)
    expect(page.get_by_text("This link has been used already")).to_be_visible()
    shot(page, "used-link")
