"""The visitor journey through the test client, mail through a real SMTP server."""

from __future__ import annotations

import re

import pytest

from models import ConsentEvent, Lead, LeadStatus, OutboxMessage
from services.mail.mailer import SmtpTransport
from tests.helpers import confirm, drain, signup, smtp_settings


@pytest.fixture
def app_config(app_config, smtp_server):
    return {
        **app_config,
        **smtp_settings(smtp_server),
    }


def link_in(msg, path: str) -> str:
    text = msg.get_body(("plain",)).get_content()
    return re.search(rf"http://localhost(/{path}/[^\s]+)", text).group(1)


def test_signup_confirm_welcome_unsubscribe(app, client, smtp_server):
    r = signup(client, "  Ann@Example.COM ", name="Ann", topics=["cspo-classes", "newsletter"])
    assert r.status_code == 303
    assert drain(app)["sent"] == 1
    _, rcpts, confirmation = smtp_server.messages[0]
    assert rcpts == ["ann@example.com"]
    assert confirmation["Message-ID"]
    assert "List-Unsubscribe" not in confirmation
    assert confirmation.get_body(("html",)) is not None

    # Opening the link shows a button and sends nothing; the button confirms.
    link = link_in(confirmation, "confirm")
    assert client.get(link).status_code == 200
    assert drain(app)["sent"] == 0
    r = confirm(client, link)
    assert r.status_code == 200
    assert "You're in" in r.get_data(as_text=True)
    assert drain(app)["sent"] == 1
    _, _, welcome = smtp_server.messages[1]
    assert welcome["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert welcome["List-Id"]
    unsub = re.search(r"<http://localhost(/unsubscribe/[^>]+)>", welcome["List-Unsubscribe"])[1]
    assert client.get(unsub).status_code == 200
    # RFC 8058 one-click: no cookie, no CSRF token, no redirect.
    fresh = app.test_client(use_cookies=False)
    r = fresh.post(unsub, data={"List-Unsubscribe": "One-Click"})
    assert r.status_code == 200
    with app.app_context():
        lead = app.extensions["sqlalchemy"].session.query(Lead).one()
        assert lead.status == LeadStatus.UNSUBSCRIBED
        kinds = [
            e.kind.value
            for e in app.extensions["sqlalchemy"]
            .session.query(ConsentEvent)
            .order_by(ConsentEvent.id)
        ]
        assert kinds == ["given", "confirmed", "withdrawn"]
        by_kind = {
            m.kind.value: m.status.value
            for m in app.extensions["sqlalchemy"].session.query(OutboxMessage)
        }
        # The reminder is cancelled by the confirmation, the classes
        # follow-up by the unsubscribe: neither waits only to be skipped.
        assert by_kind == {
            "confirmation": "sent",
            "welcome": "sent",
            "confirm_reminder": "cancelled",
            "classes_followup": "cancelled",
        }


def test_smtp_transport_reuses_connection(smtp_server):
    from services.mail.mailer import OutgoingMail

    t = SmtpTransport(smtp_server.host, smtp_server.port, timeout=5)
    for i in range(3):
        data = f"From: a@example.com\r\nTo: b@example.com\r\nSubject: n{i}\r\n\r\nx\r\n"
        t.send(OutgoingMail("a@example.com", "b@example.com", data.encode(), f"<{i}@example.com>"))
    t.close()
    assert len(smtp_server.messages) == 3
    assert [m["Subject"] for _, _, m in smtp_server.messages] == ["n0", "n1", "n2"]
