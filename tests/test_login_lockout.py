"""Nobody can lock a staff member out by failing to sign in as them.

Device cookies (OWASP, "Slow Down Online Guessing Attacks with Device
Cookies"): a browser that signed in to an account before carries a signed
cookie naming that account, and its sign-ins to it are limited on their own.
Failures from anywhere else spend the allowance of browsers the account has
never signed in from, and of their addresses, never that browser's.

Both sides are tested: guessing stays slowed (from one address and from
many, with or without a cookie), and the owner gets in from a browser they
signed in from before, whatever is thrown at the account meanwhile. Across
gunicorn workers sharing Redis: test_login_limits_redis.
"""

from __future__ import annotations

import logging

import pytest

from app import create_app
from extensions import db
from models import Role
from tests.helpers import ARTICLE_PATH, PASSWORD, add_user, base_config, csrf_token

LIMIT = 3
OWNER = "owner@example.com"
OTHER = "other@example.com"
WRONG = "not the password at all"
# The device cookie, as README describes it.
DEVICE_COOKIE = "login_device"
DEVICE_MAX_AGE = 180 * 24 * 3600


@pytest.fixture
def app_config(app_config):
    return {**app_config, "LOGIN_RATE_LIMIT": f"{LIMIT} per minute"}


@pytest.fixture
def owner(app) -> str:
    add_user(app, OWNER, Role.ADMIN)
    add_user(app, OTHER, Role.MARKETER)
    return OWNER


def attempt(browser, email: str, password: str, ip: str) -> int:
    """A sign-in from `browser` (a test client: its own cookies) at `ip`."""
    data = {"email": email, "password": password, "csrf_token": csrf_token(browser)}
    r = browser.post("/login", data=data, environ_base={"REMOTE_ADDR": ip})
    return r.status_code


def trusted_browser(app, email: str = OWNER, ip: str = "192.0.2.10"):
    """A browser that signed in once, then was closed (its session cookie,
    which lives until then, is gone; the device cookie stays)."""
    browser = app.test_client()
    assert attempt(browser, email, PASSWORD, ip) == 303
    browser.delete_cookie(app.config["SESSION_COOKIE_NAME"])
    assert browser.get_cookie(DEVICE_COOKIE, path="/login") is not None
    return browser


def guesses_from_many(app, email: str, count: int, net: str = "203.0.113") -> list[int]:
    """`count` wrong passwords, each from a new browser at a new address."""
    return [attempt(app.test_client(), email, WRONG, f"{net}.{i + 1}") for i in range(count)]


def test_failures_from_elsewhere_do_not_lock_out_a_browser_that_signed_in_before(app, owner):
    browser = trusted_browser(app)
    # The finding: six wrong passwords from one address...
    attacker = app.test_client()
    codes = [attempt(attacker, OWNER, WRONG, "198.51.100.66") for _ in range(6)]
    # (The owner's first sign-in, from a browser new then, spent one attempt.)
    assert codes == [401] * (LIMIT - 1) + [429] * (7 - LIMIT)
    # ...and more from many addresses, as a botnet would.
    assert 429 in guesses_from_many(app, OWNER, 2 * LIMIT)
    # The owner, from their browser, at an address never seen before.
    assert attempt(browser, OWNER, PASSWORD, "192.0.2.99") == 303


def test_guessing_is_still_slowed_from_one_address(app, owner):
    attacker = app.test_client()
    # Rotating accounts does not help: the address has its own allowance.
    codes = [attempt(attacker, email, WRONG, "198.51.100.7") for email in [OWNER, OTHER] * 3]
    assert codes == [401] * LIMIT + [429] * (6 - LIMIT)


def test_guessing_is_still_slowed_from_many_addresses(app, owner, caplog):
    with caplog.at_level(logging.WARNING, logger="leads.auth"):
        codes = guesses_from_many(app, OWNER, 4 * LIMIT)
    # Every browser without the account's device cookie shares one allowance.
    assert codes == [401] * LIMIT + [429] * (3 * LIMIT)
    # The trade-off: the owner too, from a browser they never signed in from.
    assert attempt(app.test_client(), OWNER, PASSWORD, "192.0.2.20") == 429
    # Admins learn of it from the log, naming the account.
    held = [r for r in caplog.records if OWNER in r.getMessage()]
    assert held and all(r.levelno == logging.WARNING for r in held)
    # Other accounts are not affected.
    assert attempt(app.test_client(), OTHER, PASSWORD, "192.0.2.21") == 303


def test_a_device_cookie_buys_no_more_guesses(app, owner):
    browser = trusted_browser(app)
    codes = [attempt(browser, OWNER, WRONG, f"198.51.100.{i}") for i in range(1, 6)]
    assert codes == [401] * LIMIT + [429] * (5 - LIMIT)
    assert attempt(browser, OWNER, PASSWORD, "198.51.100.9") == 429
    # Its failures are its own: other browsers still get in.
    assert attempt(app.test_client(), OWNER, PASSWORD, "192.0.2.30") == 303


def test_a_device_cookie_counts_for_its_own_account_only(app, owner):
    browser = trusted_browser(app, OWNER)
    assert 429 in guesses_from_many(app, OTHER, 2 * LIMIT)
    assert attempt(browser, OTHER, PASSWORD, "192.0.2.40") == 429
    # Spelled otherwise, it is the same account.
    assert 429 in guesses_from_many(app, OWNER, 2 * LIMIT, net="198.51.100")
    assert attempt(browser, "  Owner@Example.COM ", PASSWORD, "192.0.2.41") == 303


def test_a_forged_or_expired_device_cookie_is_no_cookie(app, owner, frozen):
    browser = trusted_browser(app)
    cookie = browser.get_cookie(DEVICE_COOKIE, path="/login").value
    assert 429 in guesses_from_many(app, OWNER, 2 * LIMIT)
    forged = app.test_client()
    for value in (cookie[:-2] + ("A" if cookie[-2] != "A" else "B") + cookie[-1], "x" * 600, ""):
        forged.set_cookie(DEVICE_COOKIE, value, path="/login")
        assert attempt(forged, OWNER, PASSWORD, "192.0.2.50") == 429
    frozen.advance(DEVICE_MAX_AGE + 60)
    assert attempt(browser, OWNER, PASSWORD, "192.0.2.51") == 429


def test_the_device_cookie_is_set_at_sign_in_only_with_safe_flags(app, owner):
    browser = app.test_client()
    token = csrf_token(browser)
    wrong = browser.post("/login", data={"email": OWNER, "password": WRONG, "csrf_token": token})
    assert wrong.status_code == 401
    assert not any(c.startswith(DEVICE_COOKIE) for c in wrong.headers.getlist("Set-Cookie"))

    right = browser.post("/login", data={"email": OWNER, "password": PASSWORD, "csrf_token": token})
    assert right.status_code == 303
    (header,) = [
        c for c in right.headers.getlist("Set-Cookie") if c.startswith(DEVICE_COOKIE + "=")
    ]
    attrs = {a.strip().split("=")[0].lower(): a.strip() for a in header.split(";")[1:]}
    assert "httponly" in attrs
    assert attrs["samesite"] == "SameSite=Lax"
    assert attrs["path"] == "Path=/login"  # never sent with any other page
    assert attrs["max-age"] == f"Max-Age={DEVICE_MAX_AGE}"
    assert "secure" not in attrs  # http SITE_URL: it must work locally
    assert OWNER not in header  # the cookie names the account by a digest


def test_the_device_cookie_is_secure_on_an_https_site(tmp_path):
    app = create_app(
        {
            **base_config(tmp_path),
            "SITE_URL": "https://localhost",
            "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'https.sqlite3'}",
        }
    )
    with app.app_context():
        db.create_all()
    add_user(app, OWNER, Role.ADMIN)
    browser = app.test_client()
    browser.environ_base["wsgi.url_scheme"] = "https"
    data = {"email": OWNER, "password": PASSWORD, "csrf_token": csrf_token(browser)}
    r = browser.post("/login", data=data, headers={"Referer": "https://localhost/login"})
    assert r.status_code == 303
    (header,) = [c for c in r.headers.getlist("Set-Cookie") if c.startswith(DEVICE_COOKIE)]
    assert "Secure" in [a.strip() for a in header.split(";")]
    with app.app_context():
        db.session.remove()
        db.engine.dispose()


def test_public_pages_stay_shared_for_a_browser_with_a_device_cookie(app, owner, frozen):
    anonymous = app.test_client()
    first = anonymous.get(ARTICLE_PATH)
    browser = trusted_browser(app)
    # The browser does not send it to a public page (its Path is /login)...
    r = browser.get(ARTICLE_PATH)
    assert r.request.headers.get("Cookie") is None
    # ...and a request that carries it anyway gets the shared page.
    cookie = browser.get_cookie(DEVICE_COOKIE, path="/login")
    r = anonymous.get(ARTICLE_PATH, headers={"Cookie": f"{cookie.key}={cookie.value}"})
    assert r.status_code == 200
    assert "Set-Cookie" not in r.headers
    assert r.headers["Cache-Control"] == first.headers["Cache-Control"]
    assert r.headers["Cache-Control"].startswith("public")
    assert r.headers["ETag"] == first.headers["ETag"]
    assert r.data == first.data


def test_an_address_no_account_can_have_is_never_looked_up(app, owner):
    # PostgreSQL text refuses NUL: the device check, which runs before the
    # form is validated, must not send such an address to the database.
    from services.staff import devices

    browser = trusted_browser(app)
    cookie = browser.get_cookie(DEVICE_COOKIE, path="/login").value
    with app.app_context():
        assert devices.trusted_device(cookie, OWNER) is not None
        for email in ("owner\x00@example.com", "owner@example.com\n", "o" * 400):
            assert devices.trusted_device(cookie, email) is None
