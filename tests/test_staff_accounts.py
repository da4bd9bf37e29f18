"""Staff accounts: sessions (one row per sign-in) and the account page's
password change. Invitations and password resets by mail are in
test_staff_links.py, two-factor sign-in in test_two_factor.py.
"""

from __future__ import annotations

import pytest
from sqlalchemy import select

from extensions import db
from models import AuditEvent, Role, StaffSession
from services.staff import auth
from tests.helpers import (
    PASSWORD,
    add_user,
    audit_actions,
    csrf_token,
    page_text,
    post_staff_form,
    smtp_settings,
    staff_browser,
    staff_login,
)

NEW_PASSWORD = "a fresh and longer passphrase"
MARKETER = "marketer@example.com"


@pytest.fixture
def app_config(app_config, smtp_server):
    # Sign-in and reset limits have their own tests below.
    return {
        **app_config,
        **smtp_settings(smtp_server),
        "LOGIN_RATE_LIMIT": "1000 per minute",
        "PASSWORD_RESET_RATE_LIMIT": "1000 per minute",
    }


# --- Where people land.


def test_admins_land_on_admin_and_marketers_on_the_dashboard(app):
    add_user(app, "boss@example.com", Role.ADMIN)
    add_user(app, MARKETER, Role.MARKETER)
    assert staff_login(app.test_client(), "boss@example.com").headers["Location"] == "/admin/"
    assert staff_login(app.test_client(), MARKETER).headers["Location"] == "/marketing/"
    client = app.test_client()
    token = csrf_token(client)
    r = client.post(
        "/login?next=/marketing/leads",
        data={"email": "boss@example.com", "password": PASSWORD, "csrf_token": token},
    )
    assert r.headers["Location"] == "/marketing/leads"


# --- Sessions.


def test_each_sign_in_is_a_session_listed_on_the_account_page(app):
    add_user(app, MARKETER)
    laptop = staff_browser(app, "Firefox on the laptop", "192.0.2.10")
    phone = staff_browser(app, "Safari on the phone", "198.51.100.7")
    assert staff_login(laptop, MARKETER).status_code == 303
    assert staff_login(phone, MARKETER).status_code == 303

    page = page_text(laptop.get("/account/"))
    assert "Firefox on the laptop" in page and "192.0.2.10" in page
    assert "Safari on the phone" in page and "198.51.100.7" in page
    assert page.count("This browser") == 1
    assert 'content="noindex"' in page
    assert "API tokens" in page
    with app.app_context():
        keys = db.session.execute(select(StaffSession.key_hash)).scalars().all()
    with phone.session_transaction() as s:
        key = s["_user_id"].split(":", 1)[1]
    assert key not in keys, "the session key is stored hashed only"


def test_sign_out_the_others_keeps_this_browser(app):
    add_user(app, MARKETER)
    laptop, phone, tablet = (staff_browser(app, name) for name in ("laptop", "phone", "tablet"))
    for client in (laptop, phone, tablet):
        staff_login(client, MARKETER)

    r = post_staff_form(laptop, "/account/sessions/end-others")
    assert r.status_code == 303
    assert laptop.get("/marketing/").status_code == 200
    assert phone.get("/marketing/").status_code == 302
    assert tablet.get("/marketing/").status_code == 302
    assert "session.end_others" in audit_actions(app, MARKETER)


def test_sign_out_one_session_and_never_someone_elses(app):
    add_user(app, MARKETER)
    add_user(app, "other@example.com")
    laptop, phone, stranger = (
        staff_browser(app, "laptop"),
        staff_browser(app, "phone"),
        staff_browser(app, "x"),
    )
    staff_login(laptop, MARKETER)
    staff_login(phone, MARKETER)
    staff_login(stranger, "other@example.com")
    with app.app_context():
        rows = db.session.execute(
            select(StaffSession.id, StaffSession.user_agent).where(StaffSession.ended_at.is_(None))
        ).all()
    phone_id = next(i for i, ua in rows if ua == "phone")
    stranger_id = next(i for i, ua in rows if ua == "x")

    post_staff_form(laptop, f"/account/sessions/{stranger_id}/end")
    assert stranger.get("/marketing/").status_code == 200, "another user's session stays"
    post_staff_form(laptop, f"/account/sessions/{phone_id}/end")
    assert phone.get("/marketing/").status_code == 302
    assert laptop.get("/marketing/").status_code == 200
    assert audit_actions(app, MARKETER).count("session.end") == 1


def test_sign_out_ends_the_session_and_a_copied_cookie_with_it(app):
    add_user(app, MARKETER)
    client = staff_browser(app, "laptop")
    staff_login(client, MARKETER)
    thief = app.test_client()
    thief.set_cookie("session", client.get_cookie("session").value)
    assert thief.get("/marketing/").status_code == 200

    post_staff_form(client, "/logout", page="/marketing/")
    assert thief.get("/marketing/").status_code == 302
    with app.app_context():
        assert db.session.execute(
            select(StaffSession.ended_at).where(StaffSession.user_agent == "laptop")
        ).scalar_one()


def test_last_seen_moves_at_most_every_five_minutes(app, frozen):
    add_user(app, MARKETER)
    client = staff_browser(app, "laptop")
    staff_login(client, MARKETER)

    def last_seen():
        with app.app_context():
            return db.session.execute(
                select(StaffSession.last_seen_at).where(StaffSession.user_agent == "laptop")
            ).scalar_one()

    signed_in = last_seen()
    frozen.advance(minutes=4)
    client.get("/marketing/")
    assert last_seen() == signed_in, "a page view within five minutes writes nothing"
    frozen.advance(minutes=2)
    client.get("/marketing/")
    assert last_seen() == frozen.now


def test_a_role_change_ends_every_session(app):
    add_user(app, MARKETER)
    client = staff_browser(app, "laptop")
    staff_login(client, MARKETER)
    with app.app_context():
        auth.set_role(auth.user_by_email(MARKETER), Role.ADMIN)
        db.session.commit()
    assert client.get("/marketing/").status_code == 302


# --- Changing one's password.


def test_changing_the_password_needs_the_current_one(app):
    add_user(app, MARKETER)
    client, phone = staff_browser(app, "laptop"), staff_browser(app, "phone")
    staff_login(client, MARKETER)
    staff_login(phone, MARKETER)

    r = post_staff_form(
        client,
        "/account/password",
        {"current": "not my password", "new": NEW_PASSWORD, "repeat": NEW_PASSWORD},
    )
    assert r.status_code == 400
    assert "That is not your current password." in page_text(r)
    r = post_staff_form(
        client, "/account/password", {"current": PASSWORD, "new": "short", "repeat": "short"}
    )
    assert r.status_code == 400
    assert "Use at least 12 characters." in page_text(r)
    assert phone.get("/marketing/").status_code == 200, "nothing changed yet"

    r = post_staff_form(
        client,
        "/account/password",
        {"current": PASSWORD, "new": NEW_PASSWORD, "repeat": NEW_PASSWORD},
    )
    assert r.status_code == 303
    assert client.get("/marketing/").status_code == 200, "this browser stays signed in"
    assert phone.get("/marketing/").status_code == 302, "every other session ended"
    assert staff_login(app.test_client(), MARKETER).status_code == 401
    assert staff_login(app.test_client(), MARKETER, NEW_PASSWORD).status_code == 303
    assert "password.change" in audit_actions(app, MARKETER)


def test_every_account_action_is_audited(app):
    # The actions this module's flows leave behind, all in one trail.
    add_user(app, MARKETER)
    client = staff_browser(app, "laptop")
    staff_login(client, MARKETER)
    post_staff_form(
        client,
        "/account/password",
        {"current": PASSWORD, "new": NEW_PASSWORD, "repeat": NEW_PASSWORD},
    )
    with app.app_context():
        event_row = db.session.execute(
            select(AuditEvent).where(AuditEvent.action == "password.change")
        ).scalar_one()
        assert event_row.actor == MARKETER
