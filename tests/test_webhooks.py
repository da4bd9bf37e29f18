"""POST /webhooks/<provider>: bounce and complaint events from Mailgun
(HMAC-SHA256 signed) and Postmark (basic auth). Each test signs its own
fixtures with a key made in the test; nothing is stored for a post whose
sender is not verified."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets

import pytest
from sqlalchemy import select

from extensions import db
from models import (
    ConsentEvent,
    InboundEvent,
    InboundKind,
    Lead,
    LeadStatus,
    MailKind,
    OutboxMessage,
    OutboxStatus,
    Suppression,
    WebhookNonce,
    email_hash,
)
from services.mail.compose import compose
from tests.factories import make_lead
from tests.helpers import count, page_text, sign_in_admin

EMAIL = "reader@example.com"
MAILGUN_KEY = secrets.token_hex(24)
PM_USER, PM_PASSWORD = "postmark-hook", secrets.token_urlsafe(24)


@pytest.fixture
def app_config(app_config):
    return {
        **app_config,
        "MAILGUN_WEBHOOK_SIGNING_KEY": MAILGUN_KEY,
        "POSTMARK_WEBHOOK_USER": PM_USER,
        "POSTMARK_WEBHOOK_PASSWORD": PM_PASSWORD,
        "FREQUENCY_CAP_DAYS": 0,
    }


def sent(email: str = EMAIL) -> tuple[int, str]:
    """A welcome mail to a new lead as the worker sent it: (row id, Message-ID)."""
    lead = make_lead(email, ("cspo-classes", "newsletter"))
    row = OutboxMessage(kind=MailKind.WELCOME, lead_id=lead.id, status=OutboxStatus.SENT)
    db.session.add(row)
    db.session.commit()
    return row.id, compose(row, lead).mail.message_id


def mailgun_body(
    event: dict, now, key: str = MAILGUN_KEY, token: str | None = None, skew: int = 0
) -> dict:
    timestamp = str(int(now.timestamp()) + skew)
    token = token or secrets.token_hex(25)
    signature = hmac.new(key.encode(), (timestamp + token).encode(), hashlib.sha256).hexdigest()
    return {
        "signature": {"timestamp": timestamp, "token": token, "signature": signature},
        "event-data": event,
    }


def mailgun_event(kind: str = "failed", severity: str = "permanent", **extra) -> dict:
    event = {
        "id": extra.pop("id", secrets.token_hex(8)),
        "event": kind,
        "severity": severity,
        "recipient": EMAIL,
        "delivery-status": {"code": 550, "message": "5.1.1 The email account does not exist"},
    }
    return {**event, **extra}


def post(client, provider: str, body, auth: tuple[str, str] | None = None, **kw):
    headers = {}
    if auth is not None:
        headers["Authorization"] = "Basic " + base64.b64encode(":".join(auth).encode()).decode()
    data = body if isinstance(body, bytes | str) else json.dumps(body)
    return client.post(
        f"/webhooks/{provider}",
        data=data,
        headers=headers,
        content_type=kw.pop("content_type", "application/json"),
    )


def suppression(email: str = EMAIL) -> Suppression | None:
    return db.session.get(Suppression, email_hash(email))


# --- Mailgun


def test_a_mailgun_permanent_failure_suppresses_the_mail_it_names(app, client, frozen):
    with app.app_context():
        row_id, message_id = sent()
    event = mailgun_event(message={"headers": {"message-id": message_id.strip("<>")}})
    r = post(client, "mailgun", mailgun_body(event, frozen.now))
    assert r.status_code == 200, r.get_data(as_text=True)
    with app.app_context():
        stored = db.session.execute(select(InboundEvent)).scalar_one()
        assert (stored.kind, stored.source) == (InboundKind.HARD_BOUNCE, "webhook:mailgun")
        assert stored.outbox_message_id == row_id  # matched by our Message-ID
        assert stored.status_code == "550"
        assert suppression().reason == "hard_bounce"


def test_a_mailgun_complaint_unsubscribes_and_suppresses(app, client, frozen):
    with app.app_context():
        sent()
    body = mailgun_body(mailgun_event("complained", severity=None), frozen.now)
    assert post(client, "mailgun", body).status_code == 200
    with app.app_context():
        lead = db.session.execute(select(Lead).where(Lead.email == EMAIL)).scalar_one()
        assert lead.status == LeadStatus.UNSUBSCRIBED
        channels = db.session.execute(
            select(ConsentEvent.channel).where(ConsentEvent.lead_id == lead.id)
        ).scalars()
        assert list(channels) == ["complaint"]
        assert suppression().reason == "complaint"
        event = db.session.execute(select(InboundEvent)).scalar_one()
        assert event.lead_id == lead.id  # matched by the address: no Message-ID echoed


def test_mailgun_temporary_failures_count_as_soft_bounces(app, client, frozen):
    with app.app_context():
        sent()
    for _ in range(2):
        body = mailgun_body(mailgun_event(severity="temporary"), frozen.now)
        assert post(client, "mailgun", body).status_code == 200
    with app.app_context():
        kinds = db.session.execute(select(InboundEvent.kind)).scalars().all()
        assert kinds == [InboundKind.SOFT_BOUNCE] * 2
        assert suppression() is None  # BOUNCE_SOFT_LIMIT is 3


def test_mailgun_events_we_do_not_act_on_are_acknowledged_and_not_stored(app, client, frozen):
    body = mailgun_body(mailgun_event("delivered"), frozen.now)
    r = post(client, "mailgun", body)
    assert r.status_code == 200
    assert "ignored" in r.get_json()["message"]
    assert count(app, InboundEvent) == 0


@pytest.mark.parametrize(
    "signature",
    [
        None,  # no signature block
        {},
        {"timestamp": "1", "token": "t"},
        {"timestamp": "1", "token": "t", "signature": "0" * 64},
        {"timestamp": 1, "token": ["t"], "signature": {"x": 1}},
    ],
)
def test_mailgun_without_a_valid_signature_is_401_and_nothing_stored(
    app, client, frozen, signature
):
    with app.app_context():
        sent()
    body = {"event-data": mailgun_event()}
    if signature is not None:
        body["signature"] = signature
    r = post(client, "mailgun", body)
    assert r.status_code == 401
    assert count(app, InboundEvent) == 0
    assert count(app, Suppression) == 0
    assert count(app, WebhookNonce) == 0


def test_mailgun_signed_with_another_key_or_altered_is_401(app, client, frozen):
    with app.app_context():
        sent()
    forged = mailgun_body(mailgun_event(), frozen.now, key=secrets.token_hex(24))
    assert post(client, "mailgun", forged).status_code == 401
    good = mailgun_body(mailgun_event(), frozen.now)
    good["signature"]["timestamp"] = str(int(good["signature"]["timestamp"]) + 1)
    assert post(client, "mailgun", good).status_code == 401
    assert count(app, InboundEvent) == 0
    assert count(app, Suppression) == 0


@pytest.mark.parametrize("skew", [-301, 301])
def test_a_stale_mailgun_timestamp_is_refused(app, client, frozen, skew):
    body = mailgun_body(mailgun_event(), frozen.now, skew=skew)
    r = post(client, "mailgun", body)
    assert r.status_code == 401
    assert "stale" in r.get_json()["message"]
    assert count(app, InboundEvent) == 0


def test_a_replayed_mailgun_token_is_refused_even_with_another_body(app, client, frozen):
    with app.app_context():
        sent()
        sent("other@example.com")
    token = secrets.token_hex(25)
    first = mailgun_body(mailgun_event("delivered"), frozen.now, token=token)
    assert post(client, "mailgun", first).status_code == 200
    # The signature covers timestamp and token only: a captured one, posted
    # again with a body of the attacker's choosing, must not suppress anybody.
    replay = {**first, "event-data": mailgun_event(recipient="other@example.com")}
    r = post(client, "mailgun", replay)
    assert r.status_code == 401
    assert "used before" in r.get_json()["message"]
    assert count(app, InboundEvent) == 0
    assert count(app, Suppression) == 0
    # Tokens older than the timestamp window are forgotten.
    frozen.advance(minutes=11)
    post(client, "mailgun", mailgun_body(mailgun_event("delivered"), frozen.now))
    assert count(app, WebhookNonce) == 1


def test_the_same_mailgun_event_twice_counts_once(app, client, frozen):
    with app.app_context():
        sent()
    event = mailgun_event(severity="temporary")
    for _ in range(2):  # a retry: the same event id, freshly signed
        assert post(client, "mailgun", mailgun_body(event, frozen.now)).status_code == 200
    with app.app_context():
        assert count(app, InboundEvent) == 1


# --- Postmark


def postmark_bounce(type_: str = "HardBounce", **extra) -> dict:
    return {
        "RecordType": "Bounce",
        "ID": extra.pop("ID", secrets.randbelow(10**9)),
        "Type": type_,
        "TypeCode": 1,
        "MessageID": "883953f4-6105-42a2-a16a-77a8eac79483",
        "Email": EMAIL,
        "Details": "smtp;550 5.1.1 The email account that you tried to reach does not exist",
        **extra,
    }


def test_a_postmark_hard_bounce_suppresses_the_address(app, client):
    with app.app_context():
        sent()
    r = post(client, "postmark", postmark_bounce(), auth=(PM_USER, PM_PASSWORD))
    assert r.status_code == 200, r.get_data(as_text=True)
    with app.app_context():
        event = db.session.execute(select(InboundEvent)).scalar_one()
        assert (event.kind, event.source) == (InboundKind.HARD_BOUNCE, "webhook:postmark")
        assert event.diagnostic.startswith("HardBounce smtp;550 5.1.1")
        assert suppression().reason == "hard_bounce"


def test_a_webhook_event_shows_to_staff_like_any_other(app, client):
    with app.app_context():
        sent()
    r = post(client, "postmark", postmark_bounce(), auth=(PM_USER, PM_PASSWORD))
    assert r.status_code == 200
    with app.app_context():
        event_id = db.session.execute(select(InboundEvent.id)).scalar_one()
    sign_in_admin(app, client)
    page = page_text(client.get(f"/admin/inbound/{event_id}"))
    assert "by webhook:postmark" in page
    assert "address suppressed (hard bounce)" in page
    assert '"RecordType": "Bounce"' in page  # the provider's JSON as received


def test_a_postmark_spam_complaint_unsubscribes_and_suppresses(app, client):
    with app.app_context():
        sent()
    body = {"RecordType": "SpamComplaint", "ID": 42, "Type": "SpamComplaint", "Email": EMAIL}
    assert post(client, "postmark", body, auth=(PM_USER, PM_PASSWORD)).status_code == 200
    assert post(client, "postmark", body, auth=(PM_USER, PM_PASSWORD)).status_code == 200
    with app.app_context():
        lead = db.session.execute(select(Lead).where(Lead.email == EMAIL)).scalar_one()
        assert lead.status == LeadStatus.UNSUBSCRIBED
        assert suppression().reason == "complaint"
        assert count(app, InboundEvent) == 1  # the same event twice counts once


def test_a_postmark_bounce_for_an_address_we_do_not_know_suppresses_it_all_the_same(app, client):
    body = postmark_bounce(Email="Gone@Example.com")
    assert post(client, "postmark", body, auth=(PM_USER, PM_PASSWORD)).status_code == 200
    with app.app_context():
        assert suppression("gone@example.com").reason == "hard_bounce"


@pytest.mark.parametrize(
    "auth",
    [None, (PM_USER, "wrong-password-xxxxxxxx"), ("someone", PM_PASSWORD), ("", "")],
)
def test_postmark_without_the_right_credentials_is_401_and_nothing_stored(app, client, auth):
    with app.app_context():
        sent()
    r = post(client, "postmark", postmark_bounce(), auth=auth)
    assert r.status_code == 401
    assert r.headers["WWW-Authenticate"].startswith("Basic")
    assert count(app, InboundEvent) == 0
    assert count(app, Suppression) == 0


# --- Unconfigured, unknown and junk


@pytest.mark.parametrize(
    ("provider", "body", "auth"),
    [
        ("mailgun", None, None),
        ("postmark", postmark_bounce(), ("", "")),
    ],
)
def test_a_provider_without_settings_refuses_every_event(app_config, provider, body, auth, frozen):
    from app import create_app

    config = {
        **app_config,
        "MAILGUN_WEBHOOK_SIGNING_KEY": None,
        "POSTMARK_WEBHOOK_USER": None,
        "POSTMARK_WEBHOOK_PASSWORD": None,
    }
    bare = create_app(config)
    with bare.app_context():
        if config["SQLALCHEMY_DATABASE_URI"].startswith("sqlite"):
            db.create_all()
    if body is None:  # signed with the key a configured app would take
        body = mailgun_body(mailgun_event(), frozen.now)
    r = post(bare.test_client(), provider, body, auth=auth)
    assert r.status_code == 403
    assert count(bare, InboundEvent) == 0


def test_an_unknown_provider_is_404(client):
    assert post(client, "sendmail", {}).status_code == 404


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"not json",
        b"[1, 2]",
        b'"text"',
        b"{" * 5000,
        b'{"RecordType": "Bounce"}',
        b'{"RecordType": "Bounce", "ID": {"x": 1}, "Type": "HardBounce"}',
        b'{"RecordType": "Bounce", "ID": 1, "Type": ["HardBounce"], "Email": 5}',
        b'{"RecordType": "Bounce", "ID": 2, "Type": "HardBounce", "Email": "\\u0000@x"}',
        b"\xff\xfe\x00",
    ],
)
def test_json_junk_is_a_4xx_never_a_500(app, client, frozen, body):
    r = post(client, "postmark", body, auth=(PM_USER, PM_PASSWORD))
    assert r.status_code in (200, 400), r.status_code
    assert count(app, Suppression) == 0
    # Mailgun reads its signature from the body: junk there is a 400 too.
    r = post(client, "mailgun", body)
    assert r.status_code in (400, 401), r.status_code


def test_a_signed_mailgun_event_with_junk_fields_is_no_500(app, client, frozen):
    for event in (None, [], {"event": "failed"}, {"id": 1, "event": "failed", "message": []}):
        body = mailgun_body(event, frozen.now)
        r = post(client, "mailgun", body)
        assert r.status_code in (200, 400), (event, r.status_code)


def test_webhooks_take_json_only_and_a_capped_body(app, client):
    form = "application/x-www-form-urlencoded"
    r = post(client, "postmark", "ID=1", auth=(PM_USER, PM_PASSWORD), content_type=form)
    assert r.status_code == 415
    big = json.dumps({**postmark_bounce(), "Details": "x" * 70_000})
    r = post(client, "postmark", big, auth=(PM_USER, PM_PASSWORD))
    assert r.status_code == 413
    assert count(app, InboundEvent) == 0


def test_a_webhook_needs_no_cookie_and_sets_none(app, frozen):
    bare = app.test_client(use_cookies=False)
    r = post(bare, "mailgun", mailgun_body(mailgun_event("delivered"), frozen.now))
    assert r.status_code == 200
    assert "Set-Cookie" not in r.headers


def test_webhooks_are_rate_limited(app_config, frozen):
    from app import create_app

    limited = create_app({**app_config, "WEBHOOK_RATE_LIMIT": "3 per minute"})
    client = limited.test_client()
    answers = [post(client, "postmark", b"junk").status_code for _ in range(5)]
    assert answers == [401, 401, 401, 429, 429]
