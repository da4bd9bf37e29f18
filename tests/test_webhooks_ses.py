"""POST /webhooks/ses: Amazon SES events through SNS. The test makes its own
RSA key and self-signed certificate, signs SNS messages with it (signature
versions 1 and 2), and seeds the app's SNS certificate cache under a URL on
the real SNS host; no request leaves the machine (the fetcher's opener is
replaced by one that records what it was asked for)."""

from __future__ import annotations

import base64
import json
import secrets
from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID
from sqlalchemy import select

from extensions import db
from models import (
    InboundEvent,
    InboundKind,
    Lead,
    LeadStatus,
    MailKind,
    OutboxMessage,
    OutboxStatus,
    Suppression,
    email_hash,
)
from services.bounces import sns
from services.mail.compose import compose
from tests.factories import make_lead
from tests.helpers import count

EMAIL = "reader@example.com"
TOPIC = "arn:aws:sns:eu-west-1:123456789012:ses-events"
CERT_URL = "https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-test.pem"
SUBSCRIBE_URL = "https://sns.eu-west-1.amazonaws.com/?Action=ConfirmSubscription&TopicArn=" + TOPIC
HASHES = {"1": hashes.SHA1, "2": hashes.SHA256}
# What SNS signs, in this order (AWS: "Verifying the signatures of Amazon SNS
# messages"); written out here, not taken from the code under test.
SIGNED_KEYS = {
    "Notification": ["Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"],
    "SubscriptionConfirmation": [
        *("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type")
    ],
}


@pytest.fixture(scope="module")
def signer() -> tuple[rsa.RSAPrivateKey, x509.Certificate]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sns.amazonaws.com")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    return key, cert


@pytest.fixture
def app_config(app_config):
    return {**app_config, "SES_SNS_TOPIC_ARNS": [TOPIC]}


@pytest.fixture
def fetched(app, signer) -> list[str]:
    """The URLs the app fetched; the test certificate is in its cache."""
    urls: list[str] = []
    fetcher = app.extensions["sns"]
    fetcher.opener = lambda url: urls.append(url) or b"<ConfirmSubscriptionResponse/>"
    fetcher.certificates[CERT_URL] = signer[1]
    return urls


def signed(message: dict, signer, version: str = "1", cert_url: str = CERT_URL) -> dict:
    key, _ = signer
    message = {
        "MessageId": message.get("MessageId", secrets.token_hex(16)),
        "TopicArn": TOPIC,
        "Timestamp": "2026-11-29T12:00:00.000Z",
        "SignatureVersion": version,
        "SigningCertURL": cert_url,
        **message,
    }
    keys = SIGNED_KEYS[message["Type"]]
    text = "".join(f"{k}\n{message[k]}\n" for k in keys if k in message)
    signature = key.sign(text.encode(), padding.PKCS1v15(), HASHES[version]())
    return {**message, "Signature": base64.b64encode(signature).decode()}


def ses_bounce(bounce_type: str = "Permanent", message_id: str | None = None) -> str:
    note = {
        "notificationType": "Bounce",
        "bounce": {
            "bounceType": bounce_type,
            "feedbackId": secrets.token_hex(12),
            "bouncedRecipients": [
                {"emailAddress": EMAIL, "status": "5.1.1", "diagnosticCode": "smtp; 550 5.1.1"}
            ],
        },
        "mail": {"commonHeaders": {"messageId": message_id}} if message_id else {},
    }
    return json.dumps(note)


def ses_complaint() -> str:
    return json.dumps(
        {
            "notificationType": "Complaint",
            "complaint": {"feedbackId": "c-1", "complainedRecipients": [{"emailAddress": EMAIL}]},
        }
    )


def notification(message: str) -> dict:
    return {"Type": "Notification", "Message": message, "Subject": "Amazon SES Notification"}


def post(client, body):
    data = body if isinstance(body, bytes) else json.dumps(body)
    return client.post("/webhooks/ses", data=data, content_type="text/plain; charset=UTF-8")


def sent() -> tuple[int, str]:
    lead = make_lead(EMAIL, ("cspo-classes", "newsletter"))
    row = OutboxMessage(kind=MailKind.WELCOME, lead_id=lead.id, status=OutboxStatus.SENT)
    db.session.add(row)
    db.session.commit()
    return row.id, compose(row, lead).mail.message_id


@pytest.mark.parametrize("version", ["1", "2"])
def test_a_signed_ses_permanent_bounce_suppresses_the_mail_it_names(
    app, client, signer, fetched, version
):
    with app.app_context():
        row_id, message_id = sent()
    body = signed(notification(ses_bounce(message_id=message_id)), signer, version)
    r = post(client, body)
    assert r.status_code == 200, r.get_data(as_text=True)
    assert fetched == []  # the certificate came from the cache
    with app.app_context():
        event = db.session.execute(select(InboundEvent)).scalar_one()
        assert (event.kind, event.source) == (InboundKind.HARD_BOUNCE, "webhook:ses")
        assert (event.outbox_message_id, event.status_code) == (row_id, "5.1.1")
        assert db.session.get(Suppression, email_hash(EMAIL)).reason == "hard_bounce"
    # SNS delivers at least once: the same notification again counts once.
    assert post(client, body).status_code == 200
    assert count(app, InboundEvent) == 1


def test_a_ses_complaint_unsubscribes_and_suppresses(app, client, signer, fetched):
    with app.app_context():
        sent()
    assert post(client, signed(notification(ses_complaint()), signer, "2")).status_code == 200
    with app.app_context():
        lead = db.session.execute(select(Lead).where(Lead.email == EMAIL)).scalar_one()
        assert lead.status == LeadStatus.UNSUBSCRIBED
        assert db.session.get(Suppression, email_hash(EMAIL)).reason == "complaint"


def test_a_transient_ses_bounce_is_soft(app, client, signer, fetched):
    with app.app_context():
        sent()
    assert post(client, signed(notification(ses_bounce("Transient")), signer)).status_code == 200
    with app.app_context():
        assert db.session.execute(select(InboundEvent.kind)).scalar_one() == InboundKind.SOFT_BOUNCE
        assert count(app, Suppression) == 0


def test_a_subscription_confirmation_is_answered_on_the_sns_host(app, client, signer, fetched):
    body = {"Type": "SubscriptionConfirmation", "Message": "confirm", "Token": "t" * 64}
    r = post(client, signed({**body, "SubscribeURL": SUBSCRIBE_URL}, signer))
    assert r.status_code == 200
    assert fetched == [SUBSCRIBE_URL]
    # A SubscribeURL elsewhere is never fetched, even when signed.
    for url in ("https://evil.example/?x", "http://sns.eu-west-1.amazonaws.com/?x"):
        r = post(client, signed({**body, "SubscribeURL": url}, signer))
        assert r.status_code == 400
    assert fetched == [SUBSCRIBE_URL]
    assert count(app, InboundEvent) == 0


def _tampered(body: dict) -> dict:
    return {**body, "Message": body["Message"].replace(EMAIL, "other@example.com")}


@pytest.mark.parametrize(
    "change",
    [
        _tampered,
        lambda b: {**b, "Signature": base64.b64encode(b"x" * 256).decode()},
        lambda b: {**b, "Signature": "not base64!"},
        lambda b: {k: v for k, v in b.items() if k != "Signature"},
        lambda b: {**b, "SignatureVersion": "3"},
        lambda b: {**b, "Type": "SubscriptionConfirmation"},
        lambda b: {**b, "Subject": "changed"},
    ],
)
def test_a_bad_sns_signature_is_401_and_nothing_stored(app, client, signer, fetched, change):
    with app.app_context():
        sent()
    r = post(client, change(signed(notification(ses_bounce()), signer)))
    assert r.status_code == 401
    assert count(app, InboundEvent) == 0
    assert count(app, Suppression) == 0


@pytest.mark.parametrize(
    "cert_url",
    [
        "http://sns.eu-west-1.amazonaws.com/SimpleNotificationService-test.pem",
        "https://sns.eu-west-1.amazonaws.com.evil.example/SimpleNotificationService-test.pem",
        "https://evil.example/sns.eu-west-1.amazonaws.com/x.pem",
        "https://x@sns.eu-west-1.amazonaws.com/SimpleNotificationService-test.pem",
        "https://sns.eu-west-1.amazonaws.com:8443/SimpleNotificationService-test.pem",
        "https://sqs.eu-west-1.amazonaws.com/SimpleNotificationService-test.pem",
    ],
)
def test_a_certificate_off_the_sns_host_is_never_fetched(app, client, signer, fetched, cert_url):
    # Seeded too: the host check comes first, whatever the cache holds.
    app.extensions["sns"].certificates[cert_url] = signer[1]
    r = post(client, signed(notification(ses_bounce()), signer, cert_url=cert_url))
    assert r.status_code == 401
    assert fetched == []
    assert count(app, InboundEvent) == 0


def test_another_topic_is_refused_though_sns_signed_it(app, client, signer, fetched):
    body = signed({**notification(ses_bounce()), "TopicArn": TOPIC + "-theirs"}, signer)
    assert post(client, body).status_code == 403
    assert count(app, InboundEvent) == 0


def test_without_topics_every_ses_event_is_refused(app_config, signer):
    from app import create_app

    bare = create_app({**app_config, "SES_SNS_TOPIC_ARNS": []})
    bare.extensions["sns"].certificates[CERT_URL] = signer[1]
    with bare.app_context():
        if app_config["SQLALCHEMY_DATABASE_URI"].startswith("sqlite"):
            db.create_all()
    r = post(bare.test_client(), signed(notification(ses_bounce()), signer))
    assert r.status_code == 403
    assert count(bare, InboundEvent) == 0


@pytest.mark.parametrize("message", ["not json", "[]", '{"notificationType": ["Bounce"]}'])
def test_a_signed_notification_with_junk_inside_is_never_a_500(
    app, client, signer, fetched, message
):
    r = post(client, signed(notification(message), signer))
    assert r.status_code in (200, 400)
    assert count(app, InboundEvent) == 0


def test_the_real_fetcher_refuses_other_hosts():
    fetcher = sns.SnsFetcher(opener=lambda url: pytest.fail(f"fetched {url}"))
    for url in ("https://evil.example/x.pem", "file:///etc/passwd", None, 5):
        with pytest.raises(sns.SnsError):
            fetcher.get(url)
