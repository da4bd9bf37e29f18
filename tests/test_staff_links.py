"""Invitations and password resets: links sent by mail through the outbox,
the worker and the real SMTP server fixture; each test opens the mail and
follows its link (sessions and the account page: test_staff_accounts.py).
"""

from __future__ import annotations

import pytest
from sqlalchemy import event, select

from extensions import db
from models import OutboxMessage, OutboxStatus, Role, StaffToken, User
from services.staff import auth, links
from tests.helpers import (
    PASSWORD,
    add_user,
    audit_actions,
    count,
    csrf_token,
    drain,
    mail_link,
    page_text,
    post_staff_form,
    received,
    sign_in_admin,
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


def user_row(app, email: str) -> User:
    with app.app_context():
        user = auth.user_by_email(email)
        db.session.expunge(user)
        return user


# --- Invitations.


def invite(client, email: str, role: str = "marketer"):
    return post_staff_form(
        client, "/admin/users/invitations", {"email": email, "role": role}, page="/admin/users"
    )


def pending_invitations(client) -> str:
    page = page_text(client.get("/admin/users"))
    return page.split("<h2>Pending invitations</h2>")[1].split("<h2>")[0]


def test_an_invitation_by_mail_works_once(app, client, smtp_server):
    sign_in_admin(app, client)
    r = invite(client, "New.Person@Example.com", "admin")
    assert r.status_code == 303
    pending = pending_invitations(client)
    assert "new.person@example.com" in pending and "Revoke" in pending

    assert drain(app)["sent"] == 1
    (mail,) = received(smtp_server)["new.person@example.com"]
    assert mail["X-Mail-Kind"] == "staff_invitation"
    assert "List-Unsubscribe" not in mail
    assert mail.get_body(("html",)) is not None
    link = mail_link(mail, "invitation")
    with app.app_context():
        stored = db.session.execute(select(StaffToken)).scalar_one()
        assert link.rsplit("/", 1)[1] not in (stored.token_hash, stored.nonce)

    visitor = app.test_client()
    r = visitor.get(link)
    assert r.status_code == 200
    assert "At least 12 characters" in page_text(r)
    token = csrf_token(visitor, link)
    r = visitor.post(link, data={"csrf_token": token, "password": "short", "repeat": "short"})
    assert r.status_code == 400
    r = visitor.post(
        link, data={"csrf_token": token, "password": NEW_PASSWORD, "repeat": NEW_PASSWORD}
    )
    assert r.status_code == 303
    assert user_row(app, "new.person@example.com").role == Role.ADMIN
    assert staff_login(app.test_client(), "new.person@example.com", NEW_PASSWORD).status_code == 303

    r = visitor.get(link)
    assert r.status_code == 400
    assert "used already" in page_text(r)
    assert (
        "new.person@example.com"
        not in page_text(client.get("/admin/users"))
        .split("Pending invitations")[1]
        .split("New user")[0]
    )
    actions = audit_actions(app, "new.person@example.com")
    assert actions[:1] == ["invitation.create"] and "invitation.accept" in actions


def test_an_invitation_expires_and_its_late_mail_is_not_sent(app, client, frozen, smtp_server):
    sign_in_admin(app, client)
    invite(client, "late@example.com")
    frozen.advance(hours=73)
    assert drain(app) == {"sent": 0, "skipped": 1, "failed": 0}
    with app.app_context():
        row = db.session.execute(select(OutboxMessage)).scalar_one()
        assert (row.status, row.last_error) == (OutboxStatus.SKIPPED, "link expired")
        link = "/invitation/" + links.token_for(db.session.execute(select(StaffToken)).scalar_one())
    r = app.test_client().get(link)
    assert r.status_code == 400
    assert "expired" in page_text(r)
    assert "late@example.com" not in pending_invitations(client)


def test_a_revoked_invitation_no_longer_works(app, client, smtp_server):
    sign_in_admin(app, client)
    invite(client, "maybe@example.com")
    drain(app)
    link = mail_link(received(smtp_server)["maybe@example.com"][0], "invitation")
    with app.app_context():
        inv_id = db.session.execute(select(StaffToken.id)).scalar_one()
    r = post_staff_form(client, f"/admin/users/invitations/{inv_id}/revoke", page="/admin/users")
    assert r.status_code == 303
    assert app.test_client().get(link).status_code == 400
    assert "invitation.revoke" in audit_actions(app, "maybe@example.com")


def test_nobody_is_invited_twice_nor_an_existing_user(app, client):
    sign_in_admin(app, client)
    r = invite(client, "admin@example.com")
    assert r.status_code == 400
    assert "has an account already" in page_text(r)


# --- Password reset.


def forgot(client, email: str, ip: str = "192.0.2.1"):
    token = csrf_token(client, "/password/forgot")
    return client.post(
        "/password/forgot",
        data={"email": email, "csrf_token": token},
        environ_base={"REMOTE_ADDR": ip},
    )


def test_the_login_page_links_to_the_reset(client):
    assert 'href="/password/forgot"' in client.get("/login").get_data(as_text=True)


def test_a_reset_by_mail_sets_the_password_and_ends_every_session(app, smtp_server):
    add_user(app, MARKETER)
    signed_in = staff_browser(app, "the laptop left at work")
    staff_login(signed_in, MARKETER)
    visitor = app.test_client()
    r = forgot(visitor, MARKETER)
    assert r.status_code == 200
    assert drain(app)["sent"] == 1
    (mail,) = received(smtp_server)[MARKETER]
    assert mail["X-Mail-Kind"] == "password_reset"
    link = mail_link(mail, "password/reset")

    assert visitor.get(link).status_code == 200
    token = csrf_token(visitor, link)
    r = visitor.post(
        link, data={"csrf_token": token, "password": NEW_PASSWORD, "repeat": NEW_PASSWORD}
    )
    assert r.status_code == 303
    assert signed_in.get("/marketing/").status_code == 302, "every session ended"
    assert staff_login(app.test_client(), MARKETER, NEW_PASSWORD).status_code == 303
    r = visitor.post(link, data={"csrf_token": token, "password": PASSWORD, "repeat": PASSWORD})
    assert r.status_code == 400, "a reset link works once"
    assert staff_login(app.test_client(), MARKETER, NEW_PASSWORD).status_code == 303
    actions = audit_actions(app, MARKETER)
    assert "password.reset_request" in actions and "password.reset" in actions


def test_a_reset_link_expires_after_an_hour(app, frozen, smtp_server):
    add_user(app, MARKETER)
    forgot(app.test_client(), MARKETER)
    drain(app)
    link = mail_link(received(smtp_server)[MARKETER][0], "password/reset")
    frozen.advance(minutes=61)
    r = app.test_client().get(link)
    assert r.status_code == 400
    assert "expired" in page_text(r)


def test_a_new_reset_voids_the_one_before(app, smtp_server):
    add_user(app, MARKETER)
    forgot(app.test_client(), MARKETER)
    forgot(app.test_client(), MARKETER)
    assert drain(app) == {"sent": 1, "skipped": 1, "failed": 0}
    (mail,) = received(smtp_server)[MARKETER]
    assert app.test_client().get(mail_link(mail, "password/reset")).status_code == 200


def _statements(app, email: str) -> tuple[int, str, list[str]]:
    """Status, page (address and CSRF token blanked) and the SQL run."""
    client = app.test_client()
    token = csrf_token(client, "/password/forgot")
    seen: list[str] = []

    def record(conn, cursor, statement, *args):
        seen.append(statement)

    with app.app_context():
        event.listen(db.engine, "before_cursor_execute", record)
        try:
            r = client.post("/password/forgot", data={"email": email, "csrf_token": token})
        finally:
            event.remove(db.engine, "before_cursor_execute", record)
    page = page_text(r).replace(email, "ADDRESS").replace(token, "TOKEN")
    return r.status_code, page, seen


def test_an_unknown_address_gets_the_same_answer_and_the_same_work(app, smtp_server):
    add_user(app, "known@example.com")
    known = _statements(app, "known@example.com")
    unknown = _statements(app, "nobody@example.com")
    assert known[0] == unknown[0] == 200
    assert known[1] == unknown[1]
    # The same statements, in the same order: no timing difference comes
    # from the database (argon2 is not on this path at all).
    assert known[2] == unknown[2]
    assert drain(app) == {"sent": 1, "skipped": 1, "failed": 0}
    assert list(received(smtp_server)) == ["known@example.com"]
    with app.app_context():
        skipped = db.session.execute(
            select(OutboxMessage.last_error).where(OutboxMessage.status == OutboxStatus.SKIPPED)
        ).scalar_one()
    assert skipped == "no staff account has this address"


def test_a_disabled_account_gets_no_reset_mail(app, smtp_server):
    add_user(app, MARKETER)
    with app.app_context():
        auth.set_active(auth.user_by_email(MARKETER), False)
        db.session.commit()
    assert forgot(app.test_client(), MARKETER).status_code == 200
    assert drain(app) == {"sent": 0, "skipped": 1, "failed": 0}


@pytest.mark.parametrize("limit_by", ["address", "ip"])
def test_reset_requests_are_rate_limited_per_address_and_per_ip(app, limit_by):
    app.config["PASSWORD_RESET_RATE_LIMIT"] = "3 per hour"
    answers = []
    for i in range(4):
        email = MARKETER if limit_by == "address" else f"someone{i}@example.com"
        ip = f"192.0.2.{i + 1}" if limit_by == "address" else "192.0.2.1"
        answers.append(forgot(app.test_client(), email, ip).status_code)
    assert answers == [200, 200, 200, 429]
    assert count(app, StaffToken) == 3
