"""Outgoing webhooks end to end, on SQLite and PostgreSQL: an admin registers
an endpoint on /admin/webhooks, each event is caused through the product's
own code path (a signup through the form, the confirmation button, the
one-click unsubscribe, the erase button, a register click, a bounce through
bounces.process, an announcement sent by the worker), the worker posts it to
a real HTTP server on loopback, and the official `standardwebhooks` package
verifies every signature."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from standardwebhooks import Webhook

from extensions import db
from models import (
    DeliveryStatus,
    MailKind,
    OutboxMessage,
    WebhookDelivery,
)
from services import bounces
from services.campaigns import classes as classes_service
from services.leads import subscriptions
from services.mail.compose import compose
from services.outgoing_webhooks import events as outgoing
from tests.bounce_mail import BOUNCE_ADDRESS, postfix_dsn
from tests.factories import make_class, make_lead
from tests.helpers import (
    confirm_address,
    count,
    create_announcement,
    csrf_token,
    drain,
    page_text,
    sign_in_admin,
    signup,
)
from tests.webhook_receiver import ALL_EVENTS, deliveries, register, the_endpoint, webhook_receiver


@pytest.fixture
def app_config(app_config):
    # The receiver is on loopback: allowed here, refused by default.
    return {
        **app_config,
        "WEBHOOK_ALLOW_PRIVATE_TARGETS": True,
        "MAIL_BOUNCE_ADDRESS": BOUNCE_ADDRESS,
        "FREQUENCY_CAP_DAYS": 0,
        "WEBHOOK_TIMEOUT": 2,
    }


@pytest.fixture
def receiver():
    with webhook_receiver() as r:
        yield r


def test_every_event_from_its_real_code_path_arrives_signed(app, client, receiver):
    sign_in_admin(app, client)
    secret = register(client, receiver.url())

    # lead.created and lead.confirmed: the form and the confirmation button.
    assert signup(client, "reader@example.com").status_code == 303
    confirm_address(app, client, "reader@example.com")
    with app.app_context():
        lead = subscriptions.lead_by_email("reader@example.com")
        lead_public_id = lead.public_id
        cls = make_class()
        click = classes_service.register_token(cls, lead, "mail")
        unsubscribe = subscriptions.unsubscribe_token(lead)
        other = make_lead("bouncer@example.com")
        row = OutboxMessage(kind=MailKind.WELCOME, lead_id=other.id, status="sent")
        db.session.add(row)
        db.session.commit()
        mail = compose(row, other).mail
        class_public_id = cls.public_id
    # class.register_click: the tracked link.
    assert client.get(f"/register/{click}").status_code == 302
    # lead.unsubscribed: RFC 8058 one-click.
    r = client.post(f"/unsubscribe/{unsubscribe}", data={"List-Unsubscribe": "One-Click"})
    assert r.status_code == 200
    # mail.bounced: a DSN to the VERP address of the mail that went.
    with app.app_context():
        bounces.process(postfix_dsn(to=mail.sender, recipient=other.email), mail.sender)
        db.session.commit()
    drain(app)  # before the erasure, which empties the lead's events not yet sent
    # lead.erased: the marketing page's button.
    token = csrf_token(client, f"/marketing/leads/{lead_public_id}")
    r = client.post(
        f"/marketing/leads/{lead_public_id}/erase",
        data={"csrf_token": token, "confirm_email": "reader@example.com"},
    )
    assert r.status_code == 303 and r.headers["Location"] == "/marketing/leads"
    # announcement.sent: written, sent now, and sent by the worker.
    with app.app_context():
        make_lead("fan@example.com")
        db.session.commit()
    ann = create_announcement(client)
    token = csrf_token(client, f"/admin/announcements/{ann}")
    client.post(
        f"/admin/announcements/{ann}/schedule",
        data={"csrf_token": token, "send_now": "1", "timezone": "UTC"},
    )
    drain(app)
    drain(app)  # the announcement closes after its last mail; its event goes next

    payloads = [r.verify(secret) for r in receiver.requests]
    by_type = {p["type"]: p for p in payloads}
    assert sorted(by_type) == sorted(ALL_EVENTS)
    assert len(payloads) == len(ALL_EVENTS)
    for request in receiver.requests:
        assert request.path == "/hook"
        assert request.headers["host"] == f"127.0.0.1:{receiver.port}"
        assert request.headers["webhook-id"].startswith("msg_")
        assert request.headers["content-type"] == "application/json"
    created = by_type["lead.created"]["data"]
    assert created["lead"] == lead_public_id
    assert created["email"] == "reader@example.com"
    assert created["status"] == "pending" and created["topics"] == ["cspo-classes"]
    assert by_type["lead.confirmed"]["data"]["status"] == "confirmed"
    assert by_type["lead.unsubscribed"]["data"]["channel"] == "one-click"
    assert by_type["class.register_click"]["data"] == {
        "class": class_public_id,
        "lead": lead_public_id,
        "via": "mail",
    }
    bounced = by_type["mail.bounced"]["data"]
    assert bounced["kind"] == "hard_bounce" and bounced["email"] == "bouncer@example.com"
    assert bounced["status"] == "5.1.1"
    # An erased lead's event names nobody: its public id only.
    assert by_type["lead.erased"]["data"] == {"lead": lead_public_id}
    assert by_type["announcement.sent"]["data"]["announcement"] == ann
    assert by_type["announcement.sent"]["data"]["finished_at"].endswith("Z")
    # Public ids only: no row id of ours in any payload.
    assert all(not re.search(r'"id"\s*:', r.body.decode()) for r in receiver.requests)
    assert re.fullmatch(
        r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", created and payloads[0]["timestamp"]
    )
    assert {d.status for d in deliveries(app)} == {DeliveryStatus.DELIVERED}


def test_no_endpoint_or_a_disabled_one_queues_nothing(app, client):
    with app.app_context():
        outgoing.emit("lead.erased", {"lead": "x"})
        db.session.commit()
    assert count(app, WebhookDelivery) == 0
    sign_in_admin(app, client)
    register(client, "https://127.0.0.1:9/in", ["lead.created"])
    with app.app_context():
        outgoing.emit("lead.erased", {"lead": "x"})  # not subscribed
        outgoing.emit("lead.created", {"lead": "y"})
        db.session.commit()
    assert [d.event_type for d in deliveries(app)] == ["lead.created"]
    endpoint = the_endpoint(app)
    token = csrf_token(client, f"/admin/webhooks/{endpoint.public_id}")
    client.post(
        f"/admin/webhooks/{endpoint.public_id}/enabled", data={"csrf_token": token, "enabled": "0"}
    )
    with app.app_context():
        outgoing.emit("lead.created", {"lead": "z"})
        db.session.rollback()  # the cause rolled back: so is its event
        outgoing.emit("lead.created", {"lead": "z"})
        db.session.commit()
    assert count(app, WebhookDelivery) == 1  # disabled: nothing more


def test_retries_back_off_and_keep_the_webhook_id(app, client, receiver, frozen):
    receiver.statuses = [500, 503]
    sign_in_admin(app, client)
    secret = register(client, receiver.url(), ["lead.erased"])
    with app.app_context():
        outgoing.emit("lead.erased", {"lead": "abc"})
        db.session.commit()

    drain(app)
    (first,) = deliveries(app)
    assert first.status == DeliveryStatus.QUEUED and first.attempts == 1
    assert first.response_status == 500 and first.last_error.startswith("HTTP 500")
    assert first.send_after > frozen.now
    assert the_endpoint(app).failing_since == frozen.now
    drain(app)  # not due yet: nothing goes
    assert len(receiver.requests) == 1

    frozen.set(first.send_after + timedelta(seconds=1))
    drain(app)
    (second,) = deliveries(app)
    assert second.attempts == 2 and second.response_status == 503
    assert (second.send_after - frozen.now) >= timedelta(seconds=0.5)  # base 1 s, doubled

    frozen.set(second.send_after + timedelta(seconds=1))
    drain(app)
    (done,) = deliveries(app)
    assert done.status == DeliveryStatus.DELIVERED and done.attempts == 3
    assert done.response_status == 200 and done.last_error is None
    assert the_endpoint(app).failing_since is None

    ids = {r.headers["webhook-id"] for r in receiver.requests}
    assert ids == {done.message_id}
    stamps = [int(r.headers["webhook-timestamp"]) for r in receiver.requests]
    assert stamps == sorted(stamps) and len(set(stamps)) == 3
    bodies = {r.body for r in receiver.requests}
    assert len(bodies) == 1  # the same bytes on every retry
    hook = Webhook(secret)
    for r in receiver.requests:
        # The frozen clock is hours off real time, so sign with the header's
        # own time and compare, as verify() does after its time check.
        stamp = datetime.fromtimestamp(int(r.headers["webhook-timestamp"]), UTC)
        assert r.headers["webhook-signature"] == hook.sign(
            r.headers["webhook-id"], stamp, r.body.decode()
        )
    page = page_text(client.get(f"/admin/webhooks/{the_endpoint(app).public_id}"))
    assert "lead.erased" in page and "delivered" in page and "200" in page


def test_a_redirect_is_not_followed_and_a_slow_receiver_times_out(app, client, receiver):
    receiver.statuses = [302]
    receiver.location = receiver.url("/elsewhere")
    sign_in_admin(app, client)
    register(client, receiver.url(), ["lead.erased"])
    with app.app_context():
        outgoing.emit("lead.erased", {"lead": "abc"})
        db.session.commit()
    drain(app)
    assert [r.path for r in receiver.requests] == ["/hook"]
    (row,) = deliveries(app)
    assert row.status == DeliveryStatus.QUEUED and row.response_status == 302

    app.config["WEBHOOK_TIMEOUT"] = 0.3
    receiver.delay = 1.5
    with app.app_context():
        outgoing.emit("lead.erased", {"lead": "def"})
        db.session.commit()
    drain(app)
    slow = deliveries(app)[-1]
    assert slow.status == DeliveryStatus.QUEUED and slow.response_status is None
    assert "timed out" in slow.last_error.lower()
    assert slow.duration_ms < 1400


def test_an_erasure_empties_the_leads_earlier_events(app, client, receiver):
    sign_in_admin(app, client)
    register(client, receiver.url(), ["lead.created", "lead.confirmed", "lead.erased"])
    signup(client, "gone@example.com")
    drain(app)  # lead.created went out, with the address
    confirm_address(app, client, "gone@example.com")  # lead.confirmed: queued, not sent yet
    with app.app_context():
        public_id = subscriptions.lead_by_email("gone@example.com").public_id
    token = csrf_token(client, f"/marketing/leads/{public_id}")
    client.post(
        f"/marketing/leads/{public_id}/erase",
        data={"csrf_token": token, "confirm_email": "gone@example.com"},
    )
    drain(app)
    assert [p["type"] for p in receiver.payloads()] == ["lead.created", "lead.erased"]
    rows = {d.event_type: d for d in deliveries(app)}
    assert rows["lead.confirmed"].status == DeliveryStatus.SKIPPED
    assert rows["lead.confirmed"].last_error == "the lead was erased"
    assert rows["lead.created"].status == DeliveryStatus.DELIVERED
    assert all("gone@example.com" not in d.body for d in rows.values())
    assert rows["lead.erased"].status == DeliveryStatus.DELIVERED
