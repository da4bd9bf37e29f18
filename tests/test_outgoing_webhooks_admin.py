"""Outgoing webhooks, the admin's side, on SQLite and PostgreSQL: the
secret shown once and stored encrypted, the form's refusals, disable,
enable, rotate, test and delete (each audited), the paginated delivery log
and its pruning after WEBHOOK_LOG_DAYS, and an endpoint that keeps failing:
disabled, audited, its admin told by mail through the outbox (a real SMTP
server on loopback)."""

from __future__ import annotations

import base64
import re

import pytest
from sqlalchemy import select, update
from standardwebhooks import WebhookVerificationError

from extensions import db
from models import (
    AuditEvent,
    DeliveryStatus,
    MailKind,
    OutboxMessage,
    WebhookDelivery,
    WebhookEndpoint,
)
from services.outgoing_webhooks import delivery as webhook_delivery
from services.outgoing_webhooks import events as outgoing
from tests.helpers import (
    ADMIN_EMAIL,
    audit_actions,
    count,
    csrf_token,
    drain,
    page_text,
    received,
    sign_in_admin,
    smtp_settings,
)
from tests.webhook_receiver import (
    SECRET_FIELD,
    deliveries,
    register,
    the_endpoint,
    webhook_receiver,
)


@pytest.fixture
def app_config(app_config):
    return {**app_config, "WEBHOOK_ALLOW_PRIVATE_TARGETS": True, "WEBHOOK_TIMEOUT": 2}


@pytest.fixture
def receiver():
    with webhook_receiver() as r:
        yield r


def test_the_secret_is_shown_once_and_stored_encrypted(app, client):
    sign_in_admin(app, client)
    secret = register(client, "https://127.0.0.1:9/in", ["lead.created", "lead.erased"])
    assert secret.startswith("whsec_")
    assert 24 <= len(base64.b64decode(secret.removeprefix("whsec_"))) <= 64  # the spec asks
    endpoint = the_endpoint(app)
    assert secret not in endpoint.secret_encrypted
    assert secret.removeprefix("whsec_") not in endpoint.secret_encrypted
    page = client.get(f"/admin/webhooks/{endpoint.public_id}").get_data(as_text=True)
    assert "whsec_" not in page
    assert "lead.created" in page and "lead.erased" in page
    assert "whsec_" not in client.get("/admin/webhooks").get_data(as_text=True)
    assert audit_actions(app) == ["webhook.create"]


def test_a_form_without_events_or_with_a_bad_url_is_refused(app, client):
    sign_in_admin(app, client)
    token = csrf_token(client, "/admin/webhooks")
    for url, events, message in [
        ("https://127.0.0.1:9/in", [], "Choose at least one event."),
        ("ftp://hooks.example.com/in", ["lead.created"], "must start with https://"),
        ("https://user:pw@hooks.example.com/", ["lead.created"], "user name or password"),
    ]:
        r = client.post("/admin/webhooks", data={"csrf_token": token, "url": url, "events": events})
        assert r.status_code == 400
        assert message in page_text(r)
    assert count(app, WebhookEndpoint) == 0


def test_admin_actions_are_audited_and_take_effect(app, client, receiver):
    sign_in_admin(app, client)
    old = register(client, receiver.url(), ["lead.created"])
    endpoint = the_endpoint(app)
    base = f"/admin/webhooks/{endpoint.public_id}"
    token = csrf_token(client, base)

    page = client.get(base).get_data(as_text=True)
    rotate = {"csrf_token": token, "secret_version": SECRET_VERSION.search(page).group(1)}
    r = client.post(f"{base}/rotate", data=rotate)
    new = SECRET_FIELD.search(r.get_data(as_text=True)).group(1)
    assert new != old
    # The same form again (a reload of the page showing the secret) rotates nothing.
    again = client.post(f"{base}/rotate", data=rotate)
    assert again.status_code == 303 and again.headers["Location"].endswith(base)
    assert "had been rotated already" in page_text(client.get(base))
    r = client.post(f"{base}/test", data={"csrf_token": token})
    assert r.status_code == 303
    drain(app)
    (test_event,) = receiver.requests
    assert test_event.verify(new)["type"] == "webhook.test"
    with pytest.raises(WebhookVerificationError):
        test_event.verify(old)

    client.post(f"{base}/enabled", data={"csrf_token": token, "enabled": "0"})
    assert not the_endpoint(app).enabled
    client.post(f"{base}/enabled", data={"csrf_token": token, "enabled": "1"})
    assert the_endpoint(app).enabled
    assert client.post(f"{base}/rotate", data=rotate | {"csrf_token": ""}).status_code == 400
    r = client.post(f"{base}/delete", data={"csrf_token": token})
    assert r.status_code == 303
    assert count(app, WebhookEndpoint) == 0 and count(app, WebhookDelivery) == 0
    assert client.get(base).status_code == 404
    assert audit_actions(app) == [
        "webhook.create",
        "webhook.rotate",
        "webhook.test",
        "webhook.disable",
        "webhook.enable",
        "webhook.delete",
    ]


SECRET_VERSION = re.compile(r'name="secret_version" value="([0-9a-f]+)"')


def test_the_delivery_log_is_paginated(app, client):
    sign_in_admin(app, client)
    register(client, "https://127.0.0.1:9/in", ["lead.erased"])
    with app.app_context():
        for i in range(55):
            outgoing.emit("lead.erased", {"lead": f"lead-{i}"})
        db.session.commit()
    base = f"/admin/webhooks/{the_endpoint(app).public_id}"
    first = client.get(base).get_data(as_text=True)
    assert first.count("<td>lead.erased</td>") == 50
    older = re.search(r'<a href="([^"]+)" rel="next">Older deliveries</a>', first).group(1)
    second = client.get(older.replace("&amp;", "&")).get_data(as_text=True)
    assert second.count("<td>lead.erased</td>") == 5
    assert 'rel="next"' not in second
    assert client.get(f"{base}?before=x").status_code == 400


def test_an_endpoint_failing_for_days_is_disabled_and_its_admin_told(
    app, client, receiver, frozen, smtp_server
):
    app.config.update(smtp_settings(smtp_server))
    receiver.statuses = [500] * 100
    sign_in_admin(app, client)
    register(client, receiver.url(), ["lead.erased"])
    with app.app_context():
        outgoing.emit("lead.erased", {"lead": "abc"})
        db.session.commit()
    drain(app)
    assert the_endpoint(app).failing_since == frozen.now
    frozen.advance(days=4, hours=23)
    drain(app)
    assert the_endpoint(app).enabled  # not yet five days

    frozen.advance(hours=2)
    drain(app)
    endpoint = the_endpoint(app)
    assert not endpoint.enabled
    assert "failing for 5 days" in endpoint.disabled_reason
    with app.app_context():
        audit = db.session.execute(
            select(AuditEvent).where(AuditEvent.action == "webhook.disabled")
        ).scalar_one()
        assert audit.actor == "system" and audit.details["endpoint"] == endpoint.public_id
    drain(app)  # the notice, through the outbox
    (notice,) = received(smtp_server)[ADMIN_EMAIL]
    assert notice["Subject"].startswith("Webhook disabled: ")
    assert receiver.url() in notice.get_body(("plain",)).get_content()
    assert notice["List-Unsubscribe"] is None  # transactional: a staff notice
    assert notice["Auto-Submitted"] == "auto-generated"
    with app.app_context():
        row = db.session.execute(
            select(OutboxMessage).where(OutboxMessage.kind == MailKind.STAFF_NOTICE)
        ).scalar_one()
        assert row.status.value == "sent" and row.lead_id is None

    before = len(receiver.requests)
    with app.app_context():
        outgoing.emit("lead.erased", {"lead": "def"})
        db.session.commit()
    frozen.advance(days=1)
    drain(app)
    assert len(receiver.requests) == before  # disabled: nothing more goes
    assert {d.status for d in deliveries(app)} == {DeliveryStatus.SKIPPED}


def test_finished_deliveries_leave_the_log_after_webhook_log_days(
    app, client, receiver, frozen, monkeypatch
):
    sign_in_admin(app, client)
    register(client, receiver.url(), ["lead.erased"])
    with app.app_context():
        for i in range(4):
            outgoing.emit("lead.erased", {"lead": f"old-{i}"})
        db.session.commit()
        rows = [d.id for d in deliveries(app)]
        for row_id, status in zip(rows, FINISHED_AND_NOT, strict=True):
            db.session.execute(
                update(WebhookDelivery).where(WebhookDelivery.id == row_id).values(status=status)
            )
        db.session.commit()
    frozen.advance(days=app.config["WEBHOOK_LOG_DAYS"] - 1)
    with app.app_context():
        outgoing.emit("lead.erased", {"lead": "recent"})
        db.session.commit()
        assert webhook_delivery.prune_log() == 0  # none old enough yet

    frozen.advance(days=2)
    monkeypatch.setattr(webhook_delivery, "PRUNE_ROWS", 2)
    with app.app_context():
        assert webhook_delivery.prune_log() == 2  # a bounded number per pass
        db.session.commit()
    drain(app)  # the worker's planning pass removes the rest, and sends "recent"
    left = {d.status for d in deliveries(app)}
    assert left == {DeliveryStatus.SENDING, DeliveryStatus.DELIVERED}
    assert len(deliveries(app)) == 2


# Four rows the worker has finished with, or has not: only the first three go.
FINISHED_AND_NOT = [
    DeliveryStatus.DELIVERED,
    DeliveryStatus.FAILED,
    DeliveryStatus.SKIPPED,
    DeliveryStatus.SENDING,
]
