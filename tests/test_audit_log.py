"""The audit log as QA read it in Chromium (in-process here, on SQLite and
PostgreSQL): every kind of target named and linked through one mapping,
with one query per kind of object whatever the number of entries; details
in words, not Python reprs, escaped. Also the webhook form's refusal that
names the one kind of address, and the merge tags the subject takes."""

from __future__ import annotations

import io
import ipaddress
import re
from html import unescape

import pytest
from sqlalchemy import select

from extensions import db
from models import ApiToken, LeadImport, MailKind, OutboxMessage, User
from services import clock
from services.leads.subscriptions import lead_by_email
from services.outgoing_webhooks import endpoints, targets
from services.staff import audit
from tests.factories import make_api_token
from tests.helpers import (
    add_user,
    announcement_form,
    csrf_token,
    page_text,
    sign_in_admin,
    statements,
)


def rows_of(html: str) -> dict[str, str]:
    """The audit page's rows by action: the "To" and "Details" cells' HTML."""
    found = {}
    for row in re.findall(r"<tr><td>.*?</tr>", html, re.S):
        cells = re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)
        found.setdefault(cells[2], (cells[3], cells[4]))
    return found


def audit_page(app, client) -> tuple[str, int]:
    with statements(app) as seen:
        r = client.get("/admin/audit")
    assert r.status_code == 200
    return r.get_data(as_text=True), len(seen)


def test_every_kind_of_target_is_named_and_linked_in_one_query_per_kind(app, client):
    admin_id = sign_in_admin(app, client)
    user_id = add_user(app, "ann@example.com")
    with app.app_context():
        app.config["WEBHOOK_ALLOW_PRIVATE_TARGETS"] = True  # only to register one here
        admin = db.session.get(User, int(admin_id.partition(":")[0]))
        secret = make_api_token("crm@example.com")
        token = db.session.execute(select(ApiToken)).scalar_one()
        endpoint, _ = endpoints.create("http://127.0.0.1:9999/hook", "", ["lead.created"], admin)
        app.config["WEBHOOK_ALLOW_PRIVATE_TARGETS"] = False
        ann = db.session.get(User, int(user_id.partition(":")[0]))
        audit.record(ann, "password.change", ann.email)
        audit.record(ann, "2fa.enable", ann.email)
        audit.record(ann, "session.end", ann.email, session=7)
        audit.record(admin, "invitation.create", "new@example.com", role="marketer")
        audit.record(
            admin, "webhook.create", endpoint.url, endpoint=endpoint.public_id, events=["x"]
        )
        audit.record(admin, "webhook.delete", "https://gone.example/h", endpoint="nosuchid")
        mail = OutboxMessage(
            kind=MailKind.STAFF_NOTICE, to_email="ann@example.com", send_after=clock.now()
        )
        db.session.add(mail)
        db.session.flush()
        audit.record(admin, "outbox.retry", str(mail.id))
        mail_id = mail.id
        db.session.commit()
        token_name, token_prefix, token_id = token.name, token.prefix, token.public_id
        endpoint_id = endpoint.public_id
    # An import through its page, and a subscription through the API.
    upload = client.post(
        "/marketing/import/",
        data={
            "csrf_token": csrf_token(client, "/marketing/import/"),
            "topics": ["newsletter"],
            "source": "agile-days",
            "consent": "Visitors of our stand who asked for the newsletter",
            "file": (io.BytesIO(b"email\nbea@example.com\n"), "stand.csv"),
        },
        content_type="multipart/form-data",
    )
    assert upload.status_code in (200, 303)
    r = client.post(
        "/api/v1/subscribe",
        json={"email": "Cy@Example.com", "consent_text": "Yes", "topics": ["cspo-classes"]},
        headers={"Authorization": f"Bearer {secret}"},
    )
    assert r.status_code == 202

    audit_page(app, client)  # the nav's complaint warning is cached after the first
    html, few = audit_page(app, client)
    rows = rows_of(html)
    with app.app_context():
        job = db.session.execute(select(LeadImport)).scalar_one().public_id
        cy_lead = lead_by_email("cy@example.com").public_id
    user_link = f'<a href="/admin/users#user-{user_id.partition(":")[0]}">ann@example.com</a>'
    for action in ("password.change", "2fa.enable", "session.end"):
        assert rows[action][0].startswith(user_link), action
    assert rows["invitation.create"][0].startswith("new@example.com")
    assert "no account" in rows["invitation.create"][0]
    assert rows["leads.import_uploaded"][0].startswith(
        f'<a href="/marketing/import/{job}">stand.csv</a>'
    )
    assert rows["api_token.create"][0].startswith(f"{token_name} ({token_prefix}…)")
    assert token_id not in rows["api_token.create"][0]
    assert rows["lead.subscribe"][0].startswith(
        f'<a href="/marketing/leads/{cy_lead}">cy@example.com</a>'
    )
    assert rows["webhook.create"][0].startswith(
        f'<a href="/admin/webhooks/{endpoint_id}">http://127.0.0.1:9999/hook</a>'
    )
    assert "no longer exists" in rows["webhook.delete"][0]
    mail_link = f'<a href="/admin/outbox/{mail_id}">mail #{mail_id}</a>'
    assert rows["outbox.retry"][0].startswith(mail_link)

    # Twice the entries of every kind: the same number of statements.
    with app.app_context():
        for e in db.session.execute(select(audit.AuditEvent)).scalars().all():
            db.session.add(
                audit.AuditEvent(
                    at=e.at,
                    user_id=e.user_id,
                    actor=e.actor,
                    action=e.action,
                    target=e.target,
                    details=e.details,
                )
            )
        db.session.commit()
    html, many = audit_page(app, client)
    assert many == few
    assert html.count(user_link) == 6


def test_details_read_as_words_escaped_and_long_values_shortened(app, client):
    admin_id = sign_in_admin(app, client)
    long_note = "<b>" + "word " * 40 + "</b>"
    with app.app_context():
        admin = db.session.get(User, int(admin_id.partition(":")[0]))
        audit.record(
            admin,
            "leads.export",
            None,
            filters={"q": "frank", "sort": "newest"},
            mapping={"0": "email", "1": "name"},
            completed=True,
            erased=False,
            topics=["newsletter", "cspo-classes"],
            name='<script>alert("x")</script>',
            note=long_note,
        )
        db.session.commit()
    raw, _ = audit_page(app, client)
    details = rows_of(raw)["leads.export"][1]
    shown = unescape(details)
    assert "filters: q: frank, sort: newest" in shown
    assert "mapping: 0: email, 1: name" in shown
    assert "completed: yes" in shown
    assert "erased: no" in shown
    assert "topics: newsletter, cspo-classes" in shown
    assert "{'" not in shown and "True" not in shown and "[" not in shown
    # Hostile text is escaped, in the text and in the title alike.
    assert "<script>" not in raw and "&lt;script&gt;" in details
    assert "<b>" not in details
    full = re.search(r'<span class="tag" title="([^"]*)">note: ([^<]*)</span>', details)
    assert full is not None
    assert unescape(full.group(1)) == long_note.strip()
    assert full.group(2).endswith("…") and len(unescape(full.group(2))) <= audit.DETAIL_MAX


@pytest.mark.parametrize(
    ("ip", "kind"),
    [
        ("127.0.0.1", "loopback"),
        ("::1", "loopback"),
        ("10.1.2.3", "private"),
        ("192.168.0.10", "private"),
        ("169.254.169.254", "link-local"),
        ("fe80::1", "link-local"),
        ("224.0.0.1", "multicast"),
        ("0.0.0.0", "unspecified"),  # noqa: S104 (an address judged, not bound)
        ("::ffff:127.0.0.1", "loopback (as 127.0.0.1)"),
        ("100.64.0.1", "non-public (not globally routable)"),
        ("93.184.216.34", None),
    ],
)
def test_a_refused_address_is_named_by_its_one_kind(ip, kind):
    assert targets.category(ipaddress.ip_address(ip)) == kind


def test_the_webhook_form_names_the_kind_the_setting_and_every_error_at_once(app, client):
    sign_in_admin(app, client)
    token = csrf_token(client, "/admin/webhooks")
    r = client.post(
        "/admin/webhooks", data={"csrf_token": token, "url": "http://127.0.0.1:9999/hook"}
    )
    assert r.status_code == 400
    html = page_text(r)
    assert "127.0.0.1 resolves to 127.0.0.1, a loopback address: refused." in html
    assert "private, loopback, link-local" not in html
    assert "set WEBHOOK_ALLOW_PRIVATE_TARGETS=1 to allow it" in html
    assert "Choose at least one event." in html


def test_the_merge_tag_help_says_which_tags_the_subject_takes(app, client):
    sign_in_admin(app, client)
    html = page_text(client.get("/admin/announcements/new"))
    tags = dict(re.findall(r"<dt><code>\{\{ ([\w.]+) \}\}</code>(.*?)</dt>", html))
    assert set(tags) >= {"first_name", "email", "class.title", "unsubscribe_url"}
    assert {t for t, marks in tags.items() if "body only" in marks} == {"first_name", "email"}
    assert "Merge tags work here too, except first_name and email" in html
    # What the help says is what saving does.
    token = csrf_token(client, "/admin/announcements/new")
    r = client.post(
        "/admin/announcements/new",
        data=announcement_form(token, subject="Hi {{ first_name }}"),
    )
    assert "never goes into a mail header" in page_text(r)
