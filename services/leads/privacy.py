"""Personal data requests for one lead: a copy of everything, or erasure."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import or_, update

from extensions import db
from models import InboundEvent, Lead, OutboxMessage, email_hash
from services.bounces import events
from services.leads import suppressions
from services.outgoing_webhooks import events as outgoing


def _iso(value):
    return value.isoformat() if value else None


def mails_to(lead: Lead) -> list[OutboxMessage]:
    """Every mail queued for the lead, oldest first."""
    return list(
        db.session.execute(
            db.select(OutboxMessage)
            .where(OutboxMessage.lead_id == lead.id)
            .order_by(OutboxMessage.id)
        ).scalars()
    )


def timeline(lead: Lead, mails: list[OutboxMessage]) -> list[tuple[str, datetime, object]]:
    """Consent acts, mails and what came back (bounces, complaints) in one
    list, in time order: they interleave (given, confirmation mail,
    confirmed, welcome, a bounce...). The sort is stable, so a mail queued in
    the same instant as its consent act comes after it."""
    return sorted(
        [("consent", e.at, e) for e in lead.consent_events]
        + [("mail", m.created_at, m) for m in mails]
        + [("inbound", e.received_at, e) for e in events.for_lead(lead.id)],
        key=lambda item: item[1],
    )


def lead_data(lead: Lead) -> dict:
    """Everything held about a lead, as plain JSON-able data."""
    outbox = mails_to(lead)
    return {
        "id": lead.public_id,
        "email": lead.email,
        "name": lead.name,
        "status": lead.status.value,
        "topics": sorted(lead.topic_slugs),
        "source": {
            "article": lead.source_slug,
            "placement": lead.source_placement,
            "referrer": lead.referrer,
            "utm_source": lead.utm_source,
            "utm_medium": lead.utm_medium,
            "utm_campaign": lead.utm_campaign,
            "utm_term": lead.utm_term,
            "utm_content": lead.utm_content,
        },
        "signed_up_at": _iso(lead.created_at),
        "confirmed_at": _iso(lead.confirmed_at),
        "unsubscribed_at": _iso(lead.unsubscribed_at),
        "consent_events": [
            {
                "kind": e.kind.value,
                "at": _iso(e.at),
                "channel": e.channel,
                "ip": e.ip,
                "user_agent": e.user_agent,
                "topics": e.topics.split(",") if e.topics else [],
                "article": e.source_slug,
                "placement": e.placement,
                "consent_text": e.consent_text.text if e.consent_text else None,
                "imported_from": e.lead_import.filename if e.lead_import else None,
            }
            for e in lead.consent_events
        ],
        "emails": [
            {
                "kind": m.kind.value,
                "status": m.status.value,
                "queued_at": _iso(m.created_at),
                "sent_at": _iso(m.sent_at),
                "subject": m.subject,
            }
            for m in outbox
        ],
        "bounces_and_complaints": [
            {
                "kind": e.kind.value,
                "received_at": _iso(e.received_at),
                "status": e.status_code,
                "diagnostic": e.diagnostic,
                "outcome": e.outcome,
            }
            for e in events.for_lead(lead.id)
        ],
    }


def erase(lead: Lead) -> str:
    """Delete the lead and all that hangs off it; keep only a hash of the
    address on the suppression list, so it is never mailed again unless the
    person subscribes anew. Returns the lead's public id for the audit log."""
    suppressions.suppress(lead.email, "erased")
    suppressions.forget_address(lead.email)
    # Bounces and complaints stay counted, without the address: it is in the
    # recipient, the diagnostic and the raw message.
    db.session.execute(
        update(InboundEvent)
        .where(
            or_(
                InboundEvent.lead_id == lead.id,
                InboundEvent.email_hash == email_hash(lead.email),
                InboundEvent.recipient == lead.email,
            )
        )
        .values(lead_id=None, recipient=None, diagnostic=None, raw=None)
        .execution_options(synchronize_session=False)
    )
    public_id = lead.public_id
    db.session.execute(db.delete(OutboxMessage).where(OutboxMessage.lead_id == lead.id))
    db.session.delete(lead)
    outgoing.forget_lead(public_id)
    outgoing.emit("lead.erased", {"lead": public_id})
    return public_id
