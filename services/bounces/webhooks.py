"""ESP webhooks (POST /webhooks/<provider>): who sent the event, and what it
says, mapped onto events.record_event.

Mailgun signs each event with HMAC-SHA256 over timestamp + token
(MAILGUN_WEBHOOK_SIGNING_KEY); a stale timestamp or a token seen before is
refused, since the signature does not cover the body. Postmark sends HTTP
basic auth (POSTMARK_WEBHOOK_USER/_PASSWORD). Amazon SES posts through SNS,
whose message signature sns.py checks (SES_SNS_TOPIC_ARNS names our topics).
A provider without settings refuses everything. Nothing is stored before the sender is verified.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from flask import current_app
from werkzeug.datastructures import Authorization

from extensions import db
from models import InboundEvent, InboundKind, WebhookNonce
from services import clock, upsert
from services.bounces import events, sns

# A bounce or complaint event is a few kB; Mailgun's with headers perhaps 20.
MAX_BODY_BYTES = 64 * 1024
# Mailgun's advice: refuse a timestamp further than this from now.
MAX_SKEW = timedelta(minutes=5)
_ENHANCED = re.compile(r"[245]\.\d{1,3}\.\d{1,3}")


class Refused(Exception):
    """The request is answered `status` and nothing is stored."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


@dataclass
class Parsed:
    """One event as the provider describes it; kind None is one we ignore."""

    kind: InboundKind | None
    event_id: str
    recipient: str | None = None
    message_id: str | None = None
    status: str | None = None
    diagnostic: str | None = None


def receive(provider: str, body: bytes, auth: Authorization | None) -> list[InboundEvent]:
    """Verify and store one webhook post; the stored events, none for an
    event kind we do not act on (delivered, opened...). Raises Refused. The
    caller commits."""
    handler = PROVIDERS.get(provider)
    if handler is None:
        raise Refused(404, "no such provider")
    if len(body) > MAX_BODY_BYTES:
        raise Refused(413, "too large")
    return [
        events.record_event(
            parsed.kind,
            parsed.recipient,
            parsed.message_id,
            parsed.status,
            parsed.diagnostic,
            f"webhook:{provider}",
            parsed.event_id,
            body,
        )
        for parsed in handler(body, auth)
        if parsed.kind is not None
    ]


def _json_object(body: bytes) -> dict:
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        raise Refused(400, "not JSON") from None
    if not isinstance(data, dict):
        raise Refused(400, "not a JSON object")
    return data


def _text(value, limit: int = 1000) -> str | None:
    """A JSON value that should be a string (or a number): else None."""
    if isinstance(value, bool) or not isinstance(value, str | int):
        return None
    return str(value)[:limit]


# --- Mailgun


def mailgun(body: bytes, auth: Authorization | None) -> list[Parsed]:
    key = current_app.config["MAILGUN_WEBHOOK_SIGNING_KEY"]
    if not key:
        raise Refused(403, "Mailgun webhooks are not configured")
    data = _json_object(body)
    sig = data.get("signature")
    sig = sig if isinstance(sig, dict) else {}
    timestamp, token, signature = (
        _text(sig.get(k), 200) for k in ("timestamp", "token", "signature")
    )
    if not (timestamp and token and signature):
        raise Refused(401, "signature missing")
    expected = hmac.new(key.encode(), (timestamp + token).encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected.encode(), signature.encode("utf-8", "replace")):
        raise Refused(401, "bad signature")
    if not timestamp.isdigit() or abs(clock.now().timestamp() - int(timestamp)) > (
        MAX_SKEW.total_seconds()
    ):
        raise Refused(401, "stale timestamp")
    _use_token("mailgun", token)
    event = data.get("event-data")
    if not isinstance(event, dict):
        raise Refused(400, "no event-data")
    event_id = _text(event.get("id"), 200)
    if not event_id:
        raise Refused(400, "no event id")
    name, severity = _text(event.get("event"), 40), _text(event.get("severity"), 40)
    if name == "failed":
        kind = InboundKind.HARD_BOUNCE if severity == "permanent" else InboundKind.SOFT_BOUNCE
    elif name == "complained":
        kind = InboundKind.COMPLAINT
    else:
        return []
    message = event.get("message")
    headers = message.get("headers") if isinstance(message, dict) else None
    status = event.get("delivery-status")
    status = status if isinstance(status, dict) else {}
    enhanced = _text(status.get("enhanced-code"), 20)
    if not (enhanced and _ENHANCED.fullmatch(enhanced)):
        enhanced = _text(status.get("code"), 20)
    parsed = Parsed(
        kind,
        event_id,
        recipient=_text(event.get("recipient"), 320),
        message_id=_text(headers.get("message-id"), 300) if isinstance(headers, dict) else None,
        status=enhanced
        if enhanced and _ENHANCED.fullmatch(enhanced)
        else _text(status.get("code"), 20),
        diagnostic=_text(status.get("message")) or _text(status.get("description")),
    )
    return [parsed]


def _use_token(provider: str, token: str) -> None:
    """Refuse a token seen before; forget tokens too old to pass the
    timestamp check anyway."""
    now = clock.now()
    db.session.execute(db.delete(WebhookNonce).where(WebhookNonce.seen_at < now - 2 * MAX_SKEW))
    fresh = upsert.insert_ignore(
        WebhookNonce,
        {
            "provider": provider,
            "token_hash": hashlib.sha256(token.encode("utf-8", "replace")).hexdigest(),
            "seen_at": now,
        },
        conflict=("provider", "token_hash"),
    )
    if not fresh:
        raise Refused(401, "signature token used before")


# --- Postmark

_POSTMARK_KINDS = {
    "HardBounce": InboundKind.HARD_BOUNCE,
    "BadEmailAddress": InboundKind.HARD_BOUNCE,
    "ManuallyDeactivated": InboundKind.HARD_BOUNCE,
    "SoftBounce": InboundKind.SOFT_BOUNCE,
    "Transient": InboundKind.SOFT_BOUNCE,
    "DnsError": InboundKind.SOFT_BOUNCE,
    "SpamComplaint": InboundKind.COMPLAINT,
    "SpamNotification": InboundKind.COMPLAINT,
}


def postmark(body: bytes, auth: Authorization | None) -> list[Parsed]:
    cfg = current_app.config
    user, password = cfg["POSTMARK_WEBHOOK_USER"], cfg["POSTMARK_WEBHOOK_PASSWORD"]
    if not (user and password):
        raise Refused(403, "Postmark webhooks are not configured")
    if auth is None or auth.type != "basic":
        raise Refused(401, "credentials missing")
    # Both compared, always: the time taken tells nothing about either.
    user_ok = hmac.compare_digest((auth.username or "").encode("utf-8", "replace"), user.encode())
    password_ok = hmac.compare_digest(
        (auth.password or "").encode("utf-8", "replace"), password.encode()
    )
    if not (user_ok and password_ok):
        raise Refused(401, "bad credentials")
    data = _json_object(body)
    event_id = _text(data.get("ID"), 200)
    if not event_id:
        raise Refused(400, "no event ID")
    record_type = data.get("RecordType")
    kind = None
    if record_type == "SpamComplaint":
        kind = InboundKind.COMPLAINT
    elif record_type == "Bounce":
        kind = _POSTMARK_KINDS.get(_text(data.get("Type"), 40) or "")
    if kind is None:
        return []
    parsed = Parsed(
        kind,
        f"{record_type}:{event_id}",
        recipient=_text(data.get("Email"), 320),
        # Postmark gives its own type names, no SMTP status code.
        diagnostic=" ".join(
            filter(None, (_text(data.get("Type"), 40), _text(data.get("Details"))))
        ),
    )
    return [parsed]


# --- Amazon SES through SNS


def ses(body: bytes, auth: Authorization | None) -> list[Parsed]:
    topics = current_app.config["SES_SNS_TOPIC_ARNS"]
    if not topics:
        raise Refused(403, "SES webhooks are not configured")
    message = _json_object(body)
    # Before the signature: a stranger's topic costs no certificate fetch.
    if message.get("TopicArn") not in topics:
        raise Refused(403, "not a topic of ours")
    try:
        sns.verify(message)
    except sns.SnsError as exc:
        raise Refused(401, str(exc)) from None
    if message["Type"] == "SubscriptionConfirmation":
        try:
            sns.confirm_subscription(message)
        except sns.SnsError as exc:
            raise Refused(400, str(exc)) from None
        return []
    if message["Type"] != "Notification":
        return []
    try:
        note = json.loads(message["Message"])
    except (ValueError, RecursionError):
        raise Refused(400, "the SNS Message is not JSON") from None
    return _ses_events(note, message["MessageId"]) if isinstance(note, dict) else []


def _ses_events(note: dict, sns_id: str) -> list[Parsed]:
    """SES notifications (notificationType) and event publishing
    (eventType) alike: one Parsed per recipient."""
    what = _text(note.get("notificationType") or note.get("eventType"), 40)
    mail = note.get("mail") if isinstance(note.get("mail"), dict) else {}
    common = mail.get("commonHeaders") if isinstance(mail.get("commonHeaders"), dict) else {}
    message_id = _text(common.get("messageId"), 300)
    if what == "Bounce":
        detail = note.get("bounce") if isinstance(note.get("bounce"), dict) else {}
        permanent = detail.get("bounceType") == "Permanent"
        kind = InboundKind.HARD_BOUNCE if permanent else InboundKind.SOFT_BOUNCE
        listed = detail.get("bouncedRecipients")
    elif what == "Complaint":
        detail = note.get("complaint") if isinstance(note.get("complaint"), dict) else {}
        kind, listed = InboundKind.COMPLAINT, detail.get("complainedRecipients")
    else:
        return []
    event_id = _text(detail.get("feedbackId"), 200) or sns_id
    out = []
    for rcpt in listed[:50] if isinstance(listed, list) else []:
        if not isinstance(rcpt, dict) or not _text(rcpt.get("emailAddress"), 320):
            continue
        address = _text(rcpt.get("emailAddress"), 320)
        status = _text(rcpt.get("status"), 20)
        out.append(
            Parsed(
                kind,
                f"{event_id}:{address.lower()}",
                recipient=address,
                message_id=message_id,
                status=status if status and _ENHANCED.fullmatch(status) else None,
                diagnostic=_text(rcpt.get("diagnosticCode")),
            )
        )
    return out


PROVIDERS: dict[str, Callable[[bytes, Authorization | None], list[Parsed]]] = {
    "mailgun": mailgun,
    "postmark": postmark,
    "ses": ses,
}
