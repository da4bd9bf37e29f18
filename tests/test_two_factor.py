"""Two-factor sign-in: setup from the account page, the code step at
sign-in, codes that work once, recovery codes, STAFF_REQUIRE_2FA.

The codes are computed here with pyotp from the secret the setup page
shows, at the frozen clock's time."""

from __future__ import annotations

import re
from datetime import timedelta

import pyotp
import pytest
from sqlalchemy import select

from extensions import db
from models import RecoveryCode, Role, User
from services.staff import auth
from tests.helpers import PASSWORD, add_user, audit_actions, csrf_token, page_text

MARKETER = "marketer@example.com"
SECRET = re.compile(r'<code id="totp-secret" class="key-groups" data-secret="([A-Z2-7]+)">')
CODES = re.compile(r"<li><code>([a-z2-7]{5}-[a-z2-7]{5})</code></li>")


@pytest.fixture
def app_config(app_config):
    return {**app_config, "LOGIN_RATE_LIMIT": "1000 per minute"}


def login(client, email: str = MARKETER, password: str = PASSWORD):
    token = csrf_token(client)
    return client.post("/login", data={"email": email, "password": password, "csrf_token": token})


def post(client, path: str, data: dict, page: str = "/account/"):
    return client.post(path, data={"csrf_token": csrf_token(client, page), **data})


def enter_code(client, code: str):
    return post(client, "/login/code", {"code": code}, page="/login/code")


def set_up(client, frozen) -> tuple[pyotp.TOTP, list[str]]:
    """Turn 2FA on from the account page as a person does; (totp, codes)."""
    page = page_text(client.get("/account/2fa/setup"))
    totp = pyotp.TOTP(SECRET.search(page).group(1))
    r = post(client, "/account/2fa/setup", {"code": totp.at(frozen.now)}, "/account/2fa/setup")
    assert r.status_code == 200
    codes = CODES.findall(r.get_data(as_text=True))
    assert len(codes) == 10
    return totp, codes


@pytest.fixture
def with_2fa(app, frozen):
    """A marketer with 2FA on: (totp, recovery codes). The clock is then
    moved past the step of the setup code."""
    add_user(app, MARKETER)
    client = app.test_client()
    assert login(client).status_code == 303
    totp, codes = set_up(client, frozen)
    frozen.advance(seconds=30)
    return totp, codes


def test_setup_shows_a_qr_code_the_key_and_the_uri_and_needs_a_valid_code(app, client, frozen):
    add_user(app, MARKETER)
    login(client)
    r = client.get("/account/2fa/setup")
    page = page_text(r)
    assert r.status_code == 200
    assert "<svg" in page and "<title>QR code for your authenticator app</title>" in page
    secret = SECRET.search(page).group(1)
    assert f"otpauth://totp/Scrum%20Academy:marketer%40example.com?secret={secret}" in page
    assert "<script" not in page.split("<main")[1], "no inline script under the CSP"
    # The same secret until it is confirmed (a reload does not change it).
    assert SECRET.search(page_text(client.get("/account/2fa/setup"))).group(1) == secret

    wrong = pyotp.TOTP(secret).at(frozen.now - timedelta(minutes=5))
    r = post(client, "/account/2fa/setup", {"code": wrong}, "/account/2fa/setup")
    assert r.status_code == 400
    assert "That code is not right" in page_text(r)
    with app.app_context():
        assert not auth.user_by_email(MARKETER).two_factor_enabled

    totp = pyotp.TOTP(secret)
    r = post(client, "/account/2fa/setup", {"code": totp.at(frozen.now)}, "/account/2fa/setup")
    codes = CODES.findall(r.get_data(as_text=True))
    assert len(set(codes)) == 10
    with app.app_context():
        user = auth.user_by_email(MARKETER)
        assert user.two_factor_enabled
        assert secret not in user.totp_secret, "stored encrypted"
        hashes = db.session.execute(select(RecoveryCode.code_hash)).scalars().all()
        assert len(hashes) == 10 and not set(codes) & set(hashes)
    assert "2fa.enable" in audit_actions(app, MARKETER)


def test_sign_in_takes_the_password_then_a_code(app, with_2fa, frozen):
    totp, _ = with_2fa
    client = app.test_client()
    r = login(client)
    assert r.headers["Location"] == "/login/code"
    assert client.get("/marketing/").status_code == 302, "not signed in after the password"
    assert enter_code(client, "000000").status_code == 401
    r = enter_code(client, totp.at(frozen.now))
    assert r.status_code == 303 and r.headers["Location"] == "/marketing/"
    assert client.get("/marketing/").status_code == 200


def test_a_code_cannot_be_used_twice(app, with_2fa, frozen):
    totp, _ = with_2fa
    code = totp.at(frozen.now)
    first = app.test_client()
    login(first)
    assert enter_code(first, code).status_code == 303
    second = app.test_client()
    login(second)
    r = enter_code(second, code)
    assert r.status_code == 401, "a replayed code is refused"
    assert "used already" in page_text(r)
    # An earlier step's code (still inside the window) is refused too.
    assert enter_code(second, totp.at(frozen.now - timedelta(seconds=30))).status_code == 401
    frozen.advance(seconds=30)
    assert enter_code(second, totp.at(frozen.now)).status_code == 303


@pytest.mark.usefixtures("with_2fa")
def test_the_code_step_waits_five_minutes_at_most(app, frozen):
    client = app.test_client()
    login(client)
    frozen.advance(minutes=6)
    r = client.get("/login/code")
    assert r.status_code == 303 and r.headers["Location"] == "/login"


def test_a_recovery_code_works_once(app, with_2fa):
    _, codes = with_2fa
    client = app.test_client()
    login(client)
    r = enter_code(client, codes[0].upper())
    assert r.status_code == 303
    assert "9 left" in page_text(client.get("/marketing/"))
    other = app.test_client()
    login(other)
    assert enter_code(other, codes[0]).status_code == 401
    assert "2fa.recovery_code_used" in audit_actions(app, MARKETER)


def test_new_recovery_codes_void_the_old_and_need_the_password(app, with_2fa, frozen):
    totp, codes = with_2fa
    client = app.test_client()
    login(client)
    enter_code(client, totp.at(frozen.now))
    r = post(client, "/account/2fa/recovery-codes", {"proof": "wrong"})
    assert r.status_code == 400
    r = post(client, "/account/2fa/recovery-codes", {"proof": PASSWORD})
    fresh = CODES.findall(r.get_data(as_text=True))
    assert len(fresh) == 10 and not set(fresh) & set(codes)
    other = app.test_client()
    login(other)
    assert enter_code(other, codes[1]).status_code == 401
    assert enter_code(other, fresh[0]).status_code == 303
    assert "2fa.recovery_codes_regenerated" in audit_actions(app, MARKETER)


def test_turning_2fa_off_needs_a_code_or_the_password(app, with_2fa, frozen):
    totp, _ = with_2fa
    client = app.test_client()
    login(client)
    enter_code(client, totp.at(frozen.now))
    assert post(client, "/account/2fa/disable", {"proof": "123456"}).status_code == 400
    frozen.advance(seconds=30)
    assert post(client, "/account/2fa/disable", {"proof": totp.at(frozen.now)}).status_code == 303
    with app.app_context():
        user = auth.user_by_email(MARKETER)
        assert not user.two_factor_enabled and user.totp_secret is None
    assert login(app.test_client()).headers["Location"] == "/marketing/"
    assert "2fa.disable" in audit_actions(app, MARKETER)


def test_the_code_step_is_rate_limited(app, with_2fa):
    app.config["LOGIN_RATE_LIMIT"] = "3 per minute"
    client = app.test_client()
    login(client)
    answers = [enter_code(client, f"{i:06d}").status_code for i in range(4)]
    assert answers == [401, 401, 401, 429]


@pytest.fixture
def admin_2fa_required(app):
    app.config["STAFF_REQUIRE_2FA"] = "admin"


def test_required_2fa_sends_an_admin_to_setup_and_nowhere_else(app, admin_2fa_required, frozen):
    add_user(app, "boss@example.com", Role.ADMIN)
    add_user(app, MARKETER)
    client = app.test_client()
    login(client, "boss@example.com")
    for path in ("/admin/", "/marketing/", "/account/"):
        r = client.get(path)
        assert r.status_code == 302 and r.headers["Location"] == "/account/2fa/setup", path
    page = page_text(client.get("/account/2fa/setup"))
    assert "must use two-factor sign-in" in page
    totp = pyotp.TOTP(SECRET.search(page).group(1))
    post(client, "/account/2fa/setup", {"code": totp.at(frozen.now)}, "/account/2fa/setup")
    assert client.get("/admin/").status_code == 200
    r = post(client, "/account/2fa/disable", {"proof": PASSWORD})
    assert r.status_code == 303
    with app.app_context():
        assert db.session.execute(
            select(User.totp_enabled_at).where(User.email == "boss@example.com")
        ).scalar_one(), "required 2FA cannot be turned off"

    marketer = app.test_client()
    login(marketer)
    assert marketer.get("/marketing/").status_code == 200, "marketers are free under 'admin'"


def test_an_admin_turns_off_a_locked_out_users_2fa_and_ends_their_sessions(app, frozen, with_2fa):
    # The marketer lost the phone and the recovery codes: an admin steps in.
    totp, _codes = with_2fa
    marketer = app.test_client()  # signed in with password and code before the loss
    assert login(marketer).headers["Location"].endswith("/login/code")
    assert enter_code(marketer, totp.at(frozen.now)).status_code == 303
    assert marketer.get("/account/").status_code == 200
    admin = app.test_client()
    add_user(app, "admin@example.com", Role.ADMIN)
    assert login(admin, "admin@example.com").status_code == 303
    with app.app_context():
        user_id = auth.user_by_email(MARKETER).id
    page = page_text(admin.get("/admin/users"))
    assert f"/admin/users/{user_id}/2fa/reset" in page
    r = post(admin, f"/admin/users/{user_id}/2fa/reset", {}, page="/admin/users")
    assert r.status_code == 303
    assert "Two-factor sign-in is off for marketer@example.com" in page_text(
        admin.get("/admin/users")
    )
    with app.app_context():
        user = auth.user_by_email(MARKETER)
        assert not user.two_factor_enabled and user.totp_secret is None
        assert (
            db.session.scalars(select(RecoveryCode).where(RecoveryCode.user_id == user.id)).all()
            == []
        )
    assert "2fa.reset" in audit_actions(app, MARKETER)
    # Their session is over; the password alone signs in again.
    assert marketer.get("/account/").status_code == 302
    fresh = app.test_client()
    assert login(fresh).headers["Location"].endswith("/marketing/")


def test_an_admin_cannot_reset_their_own_2fa_from_the_users_page(app, frozen):
    add_user(app, "admin@example.com", Role.ADMIN)
    admin = app.test_client()
    login(admin, "admin@example.com")
    set_up(admin, frozen)
    with app.app_context():
        user_id = auth.user_by_email("admin@example.com").id
    assert f"/admin/users/{user_id}/2fa/reset" not in page_text(admin.get("/admin/users"))
    post(admin, f"/admin/users/{user_id}/2fa/reset", {}, page="/admin/users")
    assert "Use your account page" in page_text(admin.get("/admin/users"))
    with app.app_context():
        assert auth.user_by_email("admin@example.com").two_factor_enabled


def test_the_cli_turns_off_2fa_for_an_admin_locked_out_of_every_account(app, with_2fa):
    runner = app.test_cli_runner()
    result = runner.invoke(args=["users", "reset-2fa", "Marketer@Example.com"])
    assert result.exit_code == 0, result.output
    assert "Two-factor sign-in is off for marketer@example.com" in result.output
    with app.app_context():
        assert not auth.user_by_email(MARKETER).two_factor_enabled
    assert "2fa.reset" in audit_actions(app, MARKETER)
    again = runner.invoke(args=["users", "reset-2fa", MARKETER])
    assert again.exit_code == 1 and "has no two-factor sign-in" in again.output
    assert (
        "No user nobody@example.com"
        in runner.invoke(args=["users", "reset-2fa", "nobody@example.com"]).output
    )
