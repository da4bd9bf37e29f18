"""The events webhooks carry, and `emit`: one INSERT ... SELECT that queues
a delivery per enabled endpoint subscribed to the event, in the caller's
transaction (the event exists exactly when its cause was committed)."""

from __future__ import annotations

import json
import secrets
from datetime import UTC, datetime

from sqlalchemy import Boolean, Connection, bindparam, text, update

from extensions import db
from models import DeliveryStatus, UTCDateTime, WebhookDelivery, WebhookEndpoint
from services import clock

EVENT_TYPES = {
    "lead.created": "A new lead signed up (pending until confirmed)",
    "lead.confirmed": "A lead confirmed its address",
    "lead.unsubscribed": "A lead unsubscribed (link, one-click or complaint)",
    "lead.erased": "A lead was erased (no address in the event)",
    "class.register_click": "Someone clicked a class's register link",
    "mail.bounced": "A bounce or complaint came back for our mail",
    "announcement.sent": "Every mail of an announcement has been sent",
}
TEST_EVENT = "webhook.test"
ERASED_BODY = '{"erased":true}'


def new_message_id() -> str:
    return "msg_" + secrets.token_urlsafe(18)


def iso(at: datetime) -> str:
    """A moment as payloads give it: UTC, milliseconds, Z."""
    return at.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def body(event_type: str, data: dict, at: datetime) -> str:
    """The Standard Webhooks payload, as the exact text that is signed."""
    return json.dumps(
        {"type": event_type, "timestamp": iso(at), "data": data},
        separators=(",", ":"),
        ensure_ascii=False,
    )


# One statement, written once: built with Core per call, its statement and
# cache key cost ten times the query itself on a busy signup path.
_EMIT = text(
    "INSERT INTO webhook_delivery (endpoint_id, event_type, message_id, body, lead_public_id,"
    " status, send_after, created_at, attempts)"
    " SELECT e.id, s.event_type, :message_id, :body, :lead, :queued, :now, :now, 0"
    " FROM webhook_endpoint e JOIN webhook_subscription s ON s.endpoint_id = e.id"
    " WHERE s.event_type = :event_type AND e.enabled = :enabled"
).bindparams(bindparam("now", type_=UTCDateTime()), bindparam("enabled", type_=Boolean()))


def emit(event_type: str, data: dict, conn: Connection | None = None) -> None:
    """Queue the event for every enabled endpoint that wants it, in the
    caller's transaction (on `conn` when given, as services.upsert). One
    INSERT ... SELECT: when no endpoint wants it, it inserts nothing and
    costs one indexed lookup. Data carries public ids only, never row ids."""
    if event_type not in EVENT_TYPES:
        raise ValueError(f"unknown webhook event {event_type!r}")
    now = clock.now()
    (conn or db.session).execute(
        _EMIT,
        {
            "event_type": event_type,
            "message_id": new_message_id(),
            "body": body(event_type, data, now),
            "lead": data.get("lead"),
            "queued": DeliveryStatus.QUEUED.value,
            "now": now,
            "enabled": True,
        },
    )


def forget_lead(public_id: str) -> None:
    """An erased lead: its earlier events (which carry its address) are
    emptied, and those not sent yet are not sent. In the erasure's
    transaction; lead.erased itself is emitted after this."""
    about_it = WebhookDelivery.lead_public_id == public_id
    db.session.execute(
        update(WebhookDelivery)
        .where(about_it, WebhookDelivery.status == DeliveryStatus.QUEUED)
        .values(status=DeliveryStatus.SKIPPED, last_error="the lead was erased")
        .execution_options(synchronize_session=False)
    )
    db.session.execute(
        update(WebhookDelivery)
        .where(about_it)
        .values(body=ERASED_BODY, lead_public_id=None)
        .execution_options(synchronize_session=False)
    )


def queue_test(endpoint: WebhookEndpoint) -> None:
    """A test event for one endpoint, whatever it subscribes to."""
    now = clock.now()
    data = {"endpoint": endpoint.public_id, "message": "This is a test event."}
    db.session.add(
        WebhookDelivery(
            endpoint_id=endpoint.id,
            event_type=TEST_EVENT,
            message_id=new_message_id(),
            body=body(TEST_EVENT, data, now),
            status=DeliveryStatus.QUEUED,
            send_after=now,
            created_at=now,
        )
    )


# The data of each event: public ids, and the address only while the lead
# exists (an erased lead's event names nobody).


def announcement_data(public_id: str, subject: str, finished_at: datetime) -> dict:
    return {"announcement": public_id, "subject": subject, "finished_at": iso(finished_at)}


def lead_data(public_id: str, email: str, status: str, topics=(), source: str | None = None):
    return {
        "lead": public_id,
        "email": email,
        "status": str(status),
        "topics": sorted(topics),
        "source": source,
    }
