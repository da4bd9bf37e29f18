"""The admin pages without surprises (issue 16, part 2), in-process on
SQLite and PostgreSQL, mail through a real SMTP server on loopback: the
frequency cap forecast and the skips by reason, bare URL merge tags as
links, outbox rows cancelled when they could only be skipped, the outbox's
announcement column, the audit log's links, subjects rendered for a sample
lead, and the progress section without JavaScript. The browser side is in
tests/e2e/test_admin_ui.py."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from sqlalchemy import select

from extensions import db
from models import LeadStatus, MailKind, OutboxMessage, OutboxStatus
from services import clock
from services.delivery.worker import plan_due_work
from services.leads import subscriptions
from tests.factories import make_class, make_lead
from tests.helpers import (
    audit_actions,
    create_announcement,
    csrf_token,
    drain,
    page_text,
    received,
    sign_in_admin,
    smtp_settings,
    statements,
)

CAP_REASON = "frequency cap: marketing mail sent in the last 2 days"


@pytest.fixture
def app_config(app_config, smtp_server):
    return {**app_config, **smtp_settings(smtp_server), "FREQUENCY_CAP_DAYS": 2}


def sent_before(app, email: str, kind: MailKind, days: float) -> None:
    """A mail of `kind` sent to the lead `days` ago."""
    with app.app_context():
        lead = subscriptions.lead_by_email(email)
        at = clock.now() - timedelta(days=days)
        db.session.add(
            OutboxMessage(
                kind=kind,
                lead_id=lead.id,
                status=OutboxStatus.SENT,
                send_after=at,
                created_at=at,
                sent_at=at,
            )
        )
        db.session.commit()


def send_now(client, public_id: str):
    token = csrf_token(client, f"/admin/announcements/{public_id}")
    return client.post(
        f"/admin/announcements/{public_id}/schedule",
        data={"csrf_token": token, "timezone": "UTC", "send_now": "1"},
        follow_redirects=True,
    )


@pytest.fixture
def audience(app):
    """Four confirmed leads of the topic: one mailed a day ago (held back by
    the cap), one three days ago and one sent only a welcome (not capped)."""
    with app.app_context():
        for email in ("a@example.com", "b@example.com", "c@example.com", "d@example.com"):
            make_lead(email)
        make_lead("news@example.com", topics=("newsletter",))
        db.session.commit()
    sent_before(app, "a@example.com", MailKind.CLASSES_FOLLOWUP, 1)
    sent_before(app, "b@example.com", MailKind.ANNOUNCEMENT, 3)
    sent_before(app, "c@example.com", MailKind.WELCOME, 0.5)


def test_the_count_says_whom_the_frequency_cap_holds_back_in_one_statement(
    app, client, smtp_server, frozen, audience
):
    sign_in_admin(app, client)
    with statements(app) as seen:
        r = client.get("/admin/audience-count.json", query_string={"topic": "cspo-classes"})
    assert r.get_json() == {"count": 4, "held_by_cap": 1, "cap_days": 2}
    # The session's own reads (the user) aside, the count is one statement.
    assert len([s for s in seen if "outbox_message" in s]) == 1

    public_id = create_announcement(client)
    detail = page_text(client.get(f"/admin/announcements/{public_id}"))
    assert "<strong>4</strong> now" in detail
    held = "holds back <strong>1</strong> of them who got marketing mail in the last 2 days"
    assert held in detail

    # What the page forecast is what the worker does, and the skips show
    # grouped by reason where the admin looks.
    send_now(client, public_id)
    assert drain(app) == {"sent": 3, "skipped": 1, "failed": 0}
    assert set(received(smtp_server)) == {"b@example.com", "c@example.com", "d@example.com"}
    progress = client.get(f"/admin/announcements/{public_id}/progress.json").get_json()
    assert (progress["status"], progress["sent"], progress["skipped"]) == ("sent", 3, 1)
    assert progress["skips"] == [[CAP_REASON, 1]]
    detail = page_text(client.get(f"/admin/announcements/{public_id}"))
    assert "Skipped, by reason" in detail
    assert re.search(rf"<td>{re.escape(CAP_REASON)}</td><td class=\"num\">1</td>", detail)


def test_skips_are_counted_by_reason_in_one_grouped_query(app, client, frozen, audience):
    sign_in_admin(app, client)
    public_id = create_announcement(client)
    send_now(client, public_id)
    with app.app_context():
        plan_due_work()
        db.session.commit()
    with app.app_context():
        lead = subscriptions.lead_by_email("d@example.com")
        # Straight in the table, as a stale row would be: left to the worker.
        db.session.execute(
            OutboxMessage.__table__.update()
            .where(OutboxMessage.lead_id == lead.id)
            .values(status=OutboxStatus.SKIPPED.value, last_error="lead is unsubscribed")
        )
        db.session.commit()
    drain(app)
    with statements(app) as seen:
        body = client.get(f"/admin/announcements/{public_id}/progress.json").get_json()
    assert body["skips"] == [[CAP_REASON, 1], ["lead is unsubscribed", 1]]
    assert len([s for s in seen if "GROUP BY outbox_message.last_error" in s]) == 1


def test_a_bare_register_url_tag_is_a_link_in_html_and_plain_in_text(
    app, client, smtp_server, frozen
):
    sign_in_admin(app, client)
    with app.app_context():
        make_lead("ann@example.com", name="Ann")
        cls = make_class(title="CSPO online", registration_url="https://tickets.example.org/x")
        db.session.commit()
        class_id = cls.public_id
    public_id = create_announcement(
        client,
        training_class=class_id,
        body="Hello {{ first_name }},\n\nRegister: {{ class.register_url }}\n\n"
        "[Or here]({{ class.register_url }}) and `{{ class.register_url }}`",
    )
    send_now(client, public_id)
    assert drain(app)["sent"] == 1
    (msg,) = received(smtp_server)["ann@example.com"]
    html = msg.get_body(("html",)).get_content()
    text = msg.get_body(("plain",)).get_content()
    (url,) = set(re.findall(r"Register: (http://localhost/register/[\w.-]+)", text))
    assert f'Register: <a href="{url}">{url}</a>' in html
    assert f'<a href="{url}">Or here</a>' in html  # a Markdown link stays as written
    assert f"<code>{url}</code>" in html  # code stays code
    assert "<a" not in text and f"[Or here]({url})" in text


def test_a_lead_name_that_looks_like_a_url_is_never_linked(app, client, smtp_server, frozen):
    sign_in_admin(app, client)
    with app.app_context():
        make_lead("eve@example.com", name="https://evil.example")
        db.session.commit()
    public_id = create_announcement(client, body="Hi {{ first_name }}, {{ unsubscribe_url }}")
    send_now(client, public_id)
    assert drain(app)["sent"] == 1
    html = received(smtp_server)["eve@example.com"][0].get_body(("html",)).get_content()
    assert "Hi https://evil.example, <a href=" in html
    assert 'href="https://evil' not in html


def test_rows_that_could_only_be_skipped_are_cancelled_with_their_reason(app, client, frozen):
    with app.app_context():
        pending = make_lead("pending@example.com", status=LeadStatus.PENDING)
        confirmed = make_lead("confirmed@example.com")
        # A reminder waiting for the pending lead; marketing mail and a held
        # announcement row waiting for the confirmed one.
        for kind, lead, status in (
            (MailKind.CONFIRM_REMINDER, pending, OutboxStatus.QUEUED),
            (MailKind.CLASSES_FOLLOWUP, confirmed, OutboxStatus.QUEUED),
            (MailKind.ANNOUNCEMENT, confirmed, OutboxStatus.HELD),
            (MailKind.WELCOME, confirmed, OutboxStatus.SENDING),  # a worker holds it
        ):
            db.session.add(OutboxMessage(kind=kind, lead_id=lead.id, status=status))
        db.session.commit()
        pending_token = subscriptions.confirm_token(pending)
        unsubscribe_token = subscriptions.unsubscribe_token(confirmed)

    assert client.post(f"/confirm/{pending_token}").status_code == 200
    assert client.post(f"/unsubscribe/{unsubscribe_token}").status_code == 200
    with app.app_context():
        # The rows made before (the confirmation queues a welcome and more).
        rows = {
            r.kind: (r.status, r.last_error)
            for r in db.session.execute(
                select(OutboxMessage).order_by(OutboxMessage.id).limit(4)
            ).scalars()
        }
    assert rows[MailKind.CONFIRM_REMINDER] == (
        OutboxStatus.CANCELLED,
        "lead is confirmed, not pending",
    )
    assert rows[MailKind.CLASSES_FOLLOWUP][0] == OutboxStatus.CANCELLED
    assert rows[MailKind.ANNOUNCEMENT] == (OutboxStatus.CANCELLED, "lead is unsubscribed")
    assert rows[MailKind.WELCOME] == (OutboxStatus.SENDING, None)  # left to the send-time check


def test_the_outbox_names_each_rows_announcement_and_marks_test_sends(app, client, frozen):
    sign_in_admin(app, client)

    def announce(subject: str, *emails: str) -> str:
        with app.app_context():
            for email in emails:
                make_lead(email)
            db.session.commit()
        public_id = create_announcement(client, subject=subject)
        send_now(client, public_id)
        with app.app_context():
            plan_due_work()
            db.session.commit()
        return public_id

    def listing():
        with statements(app) as seen:
            html = page_text(client.get("/admin/outbox?kind=announcement"))
        return html, len(seen)

    first = announce("Autumn dates", "ann@example.com", "bob@example.com")
    token = csrf_token(client, f"/admin/announcements/{first}")
    client.post(f"/admin/announcements/{first}/test", data={"csrf_token": token})
    html, three_rows = listing()
    assert html.count(f'<a href="/admin/announcements/{first}">Autumn dates</a>') == 3
    assert html.count('<span class="tag test-send">test</span>') == 1

    second = announce("Winter dates", *(f"l{i}@example.com" for i in range(6)))
    html, eleven_rows = listing()
    assert html.count(f'<a href="/admin/announcements/{second}">Winter dates</a>') == 8
    # Leads and announcements loaded once for the page, not once per row.
    assert eleven_rows == three_rows
    detail = page_text(client.get(re.findall(r'href="(/admin/outbox/\d+)"', html)[0]))
    assert f'<a href="/admin/announcements/{second}">Winter dates</a>' in detail


def test_audit_entries_link_to_their_objects_without_a_query_per_row(app, client, frozen):
    sign_in_admin(app, client)
    with app.app_context():
        cls = make_class(title="CSPO Berlin")
        db.session.commit()
        class_id = cls.public_id

    def audit_page():
        with statements(app) as seen:
            html = page_text(client.get("/admin/audit"))
        return html, len(seen)

    create_announcement(client, subject="First")
    token = csrf_token(client, f"/admin/classes/{class_id}")
    client.post(f"/admin/classes/{class_id}/cancel", data={"csrf_token": token})
    _, few = audit_page()
    ids = [create_announcement(client, subject=f"Dates {i}") for i in range(8)]
    html, many = audit_page()
    assert many == few  # one query per kind of object, however many entries
    for i, public_id in enumerate(ids):
        assert f'<a href="/admin/announcements/{public_id}">Dates {i}</a>' in html
    assert f'<a href="/admin/classes/{class_id}">CSPO Berlin</a>' in html
    assert audit_actions(app).count("announcement.create") == 9


def test_subjects_show_rendered_for_a_sample_lead_beside_the_template(app, client, frozen):
    sign_in_admin(app, client)
    with app.app_context():
        cls = make_class(title="CSPO live online")
        db.session.commit()
        class_id = cls.public_id
    public_id = create_announcement(
        client, subject="{{ class.title }}: seats open", training_class=class_id
    )
    detail = page_text(client.get(f"/admin/announcements/{public_id}"))
    assert "<h1>CSPO live online: seats open</h1>" in detail
    assert "<code>{{ class.title }}: seats open</code>" in detail
    listing = page_text(client.get("/admin/announcements"))
    assert f'<a href="/admin/announcements/{public_id}">CSPO live online: seats open</a>' in listing
    assert "{{ class.title }}: seats open</code>" in listing


def test_progress_shows_from_send_now_with_a_refresh_link_for_pages_without_js(
    app, client, frozen, audience
):
    sign_in_admin(app, client)
    public_id = create_announcement(client)
    page = page_text(send_now(client, public_id))
    assert "Sending now" in page
    assert 'data-live="1"' in page
    assert "Waiting for the worker to start sending" in page
    stamp = int(frozen.now.timestamp())
    refresh = f'<a href="/admin/announcements/{public_id}?at={stamp}#progress">Refresh</a>'
    assert refresh in page
    drain(app)
    page = page_text(client.get(f"/admin/announcements/{public_id}?at={stamp}"))
    assert '<span data-k="done">4</span> of <span data-k="total">4</span> done' in page
    assert 'data-live="0"' in page and ">Refresh</a>" not in page


def test_cancelling_a_class_cancels_its_queued_reminders(app, client, frozen):
    sign_in_admin(app, client)
    with app.app_context():
        lead = make_lead("ann@example.com")
        cls = make_class(title="CSPO Berlin")
        other = make_class(title="CSPO Munich")
        for training_class in (cls, other):
            db.session.add(
                OutboxMessage(
                    kind=MailKind.CLASS_REMINDER,
                    lead_id=lead.id,
                    training_class_id=training_class.id,
                    send_after=clock.now() + timedelta(days=3),
                )
            )
        db.session.commit()
        class_id, cancelled_id, kept_id = cls.public_id, cls.id, other.id
    token = csrf_token(client, f"/admin/classes/{class_id}")
    client.post(f"/admin/classes/{class_id}/cancel", data={"csrf_token": token})
    with app.app_context():
        rows = {
            class_pk: status
            for class_pk, status in db.session.execute(
                select(OutboxMessage.training_class_id, OutboxMessage.status)
            )
        }
    assert rows == {cancelled_id: OutboxStatus.CANCELLED, kept_id: OutboxStatus.QUEUED}
