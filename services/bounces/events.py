"""One message that came back: read it, match it to the mail it is about,
act on it, and keep it as an InboundEvent.

`process` is the entry point for whole messages (the SMTP receiver, a
mailbox), `record_event` for events an ESP's webhook reported already parsed;
both store and act through `_store`. The caller commits.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from datetime import timedelta

from flask import current_app

from extensions import db
from models import InboundEvent, InboundKind, Lead, OutboxMessage, email_hash
from services import clock, upsert
from services.bounces import parse
from services.leads import subscriptions, suppressions
from services.mail import verp
from services.mail.compose import sender_domain
from services.metrics.instruments import INBOUND_EVENTS, count_on_commit
from services.outgoing_webhooks import events as outgoing

log = logging.getLogger("leads.bounces")
# What reaches webhooks as mail.bounced (not auto-replies or junk).
BOUNCED_KINDS = (InboundKind.HARD_BOUNCE, InboundKind.SOFT_BOUNCE, InboundKind.COMPLAINT)

# Bigger is no bounce of ours (a DSN returns headers, or a mail of ~100 kB):
# refused by the receiver, recorded unread by anything else that passes one.
MAX_MESSAGE_BYTES = 1024 * 1024
# What is kept of each message for a person to read.
RAW_KEEP_BYTES = 64 * 1024
_ADDRESS = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
_OUR_MESSAGE_ID = re.compile(r"<?(\d{1,19})\.(\d{1,12})\.outbox@([^>\s]+)>?")


@dataclass
class Match:
    """The mail of ours an event is about, and the address it went to."""

    row: OutboxMessage | None = None
    lead: Lead | None = None
    address: str | None = None
    how: str = "none"  # envelope, returned Return-Path, Message-ID
    bad_signature: bool = False


def process(raw: bytes, envelope_rcpt: str | None, source: str = "smtp") -> InboundEvent:
    """Store what `raw` (a whole message as received) says and act on it:
    suppress a hard-bounced address, count a soft bounce, unsubscribe and
    suppress a complainer. The same message twice is one event: the second
    call returns the first's row and does nothing."""
    if len(raw) > MAX_MESSAGE_BYTES:
        log.warning("inbound message to %r too large: %d bytes", envelope_rcpt, len(raw))
        report = parse.Report(
            InboundKind.UNPARSED,
            diagnostic=f"too large to read: {len(raw):,} bytes (limit {MAX_MESSAGE_BYTES:,})",
        )
    else:
        report = parse.read(raw)
    key = _dedupe_key(envelope_rcpt, report.message_id, raw)
    found = _by_key(key)
    if found is not None:
        log.info("inbound event %s received again: counted once", found.id)
        return found
    match = _match(envelope_rcpt, report)
    if match.bad_signature:
        report.kind = InboundKind.BAD_SIGNATURE
    return _store(key, source, report, match, raw, envelope_rcpt)


def record_event(
    kind: InboundKind,
    recipient: str | None,
    message_id: str | None,
    status: str | None,
    diagnostic: str | None,
    source: str,
    dedupe_key: str,
    raw_json: bytes,
) -> InboundEvent:
    """Store and act on an event an ESP reported already parsed (a webhook
    whose signature was checked). `message_id` is our mail's Message-ID when
    the ESP echoes it; else the event matches by `recipient`. `dedupe_key`
    is the provider's own event id: the same event twice is one row."""
    key = hashlib.sha256(f"{source}\0{dedupe_key}".encode("utf-8", "replace")).hexdigest()
    found = _by_key(key)
    if found is not None:
        log.info("inbound event %s received again: counted once", found.id)
        return found
    report = parse.Report(
        kind,
        status=parse.clean(status, 20),
        diagnostic=parse.clean(diagnostic),
        recipient=recipient,
    )
    match = _for_row(_row_by_message_id(message_id), "Message-ID")
    if match.row is None and recipient:
        match = _for_address(recipient)
    return _store(key, source, report, match, raw_json, None)


def _store(
    key: str,
    source: str,
    report: parse.Report,
    match: Match,
    raw: bytes,
    envelope_rcpt: str | None,
) -> InboundEvent:
    """The one place an event is stored and acted on, for every way in."""
    kind = report.kind
    inserted = upsert.insert_ignore(
        InboundEvent,
        {
            "received_at": clock.now(),
            "source": source[:40],
            "kind": kind,
            "status_code": report.status,
            "diagnostic": report.diagnostic[: parse.MAX_DIAGNOSTIC] if report.diagnostic else None,
            # Lower case, as leads are stored: an erasure finds it.
            "recipient": parse.clean((match.address or report.recipient or "").lower(), 320),
            "email_hash": email_hash(match.address) if match.address else None,
            "envelope_to": parse.clean(envelope_rcpt, 320),
            "outbox_message_id": match.row.id if match.row else None,
            "lead_id": match.lead.id if match.lead else None,
            "dedupe_key": key,
            "raw": raw[:RAW_KEEP_BYTES],
            "raw_size": len(raw),
        },
        conflict=("dedupe_key",),
    )
    event = _by_key(key)
    if not inserted:  # another receiver stored the same message a moment ago
        return event
    event.outcome = _act(event, report, match)[:300]
    if kind in BOUNCED_KINDS and match.address is not None:
        outgoing.emit(
            "mail.bounced",
            {
                "kind": kind.value,
                "lead": match.lead.public_id if match.lead else None,
                "email": match.address,
                "status": report.status,
            },
        )
    count_on_commit(INBOUND_EVENTS.labels(kind.value))
    doubtful = kind in (InboundKind.UNPARSED, InboundKind.BAD_SIGNATURE)
    log.log(
        logging.WARNING if doubtful else logging.INFO,
        "inbound event %s: %s %s for outbox row %s (matched by %s): %s",
        event.id,
        kind.value,
        report.status or "",
        event.outbox_message_id,
        match.how,
        event.outcome,
    )
    return event


def _dedupe_key(envelope_rcpt: str | None, message_id: str | None, raw: bytes) -> str:
    # The report's Message-ID survives a resend; without one, its bytes.
    what = message_id.encode("utf-8", "replace") if message_id else hashlib.sha256(raw).digest()
    rcpt = (envelope_rcpt or "").strip().lower().encode("utf-8", "replace")
    return hashlib.sha256(rcpt + b"\0" + what).hexdigest()


def _by_key(key: str) -> InboundEvent | None:
    return db.session.execute(
        db.select(InboundEvent).where(InboundEvent.dedupe_key == key)
    ).scalar_one_or_none()


def _match(envelope_rcpt: str | None, report: parse.Report) -> Match:
    """The VERP tag of the address the report came to, else of the returned
    mail's envelope sender, else the returned Message-ID. A tag whose
    signature does not verify matches nothing: someone made it up."""
    tagged = (("envelope", envelope_rcpt), ("returned Return-Path", report.original_sender))
    for how, address in tagged:
        tag = verp.read(address)
        if tag is None or not tag.tagged:
            continue
        if not tag.valid:
            return Match(how=how, bad_signature=True)
        return _for_row(db.session.get(OutboxMessage, tag.outbox_id), how)
    return _for_row(_row_by_message_id(report.original_message_id), "Message-ID")


def _row_by_message_id(message_id: str | None) -> OutboxMessage | None:
    found = _OUR_MESSAGE_ID.fullmatch((message_id or "").strip())
    if not found or found[3].lower() != sender_domain().lower():
        return None
    row = db.session.get(OutboxMessage, int(found[1]))
    # The time stamp in it must be this row's: ids alone are easy to guess.
    if row is None or int(row.created_at.timestamp()) != int(found[2]):
        return None
    return row


def _for_row(row: OutboxMessage | None, how: str) -> Match:
    if row is None:
        return Match()
    lead = row.lead
    return Match(row=row, lead=lead, address=lead.email if lead else row.to_email, how=how)


def _for_address(recipient: str) -> Match:
    """An ESP's authenticated event names the address our mail went to: the
    lead with it, or the bare address (it is suppressed all the same)."""
    address = parse.clean(recipient.strip().lower(), 320)
    if not address or not _ADDRESS.fullmatch(address):
        return Match()
    lead = subscriptions.lead_by_email(address)
    return Match(lead=lead, address=lead.email if lead else address, how="recipient")


def _act(event: InboundEvent, report: parse.Report, match: Match) -> str:
    kind = event.kind
    if kind == InboundKind.BAD_SIGNATURE:
        return "ignored: the VERP tag's signature does not verify"
    if kind == InboundKind.AUTO_REPLY:
        return "ignored: an automatic reply"
    if kind == InboundKind.UNPARSED:
        return "kept for a person to read"
    if match.address is None:
        return "no mail of ours matches it: nothing done"
    address = match.address
    detail = " ".join(filter(None, (report.status, report.diagnostic))) or None
    if kind == InboundKind.HARD_BOUNCE:
        if suppressions.suppress(address, "hard_bounce", detail, event_id=event.id):
            return "address suppressed (hard bounce)"
        return "address was suppressed already"
    if kind == InboundKind.SOFT_BOUNCE:
        return _soft_bounce(event, address)
    # A complaint: no more marketing, and no mail of any kind.
    unsubscribed = match.lead is not None and subscriptions.unsubscribe(
        match.lead, "complaint", subscriptions.Evidence()
    )
    suppressed = suppressions.suppress(address, "complaint", detail, event_id=event.id)
    done = [w for w, did in (("unsubscribed", unsubscribed), ("suppressed", suppressed)) if did]
    return f"{' and '.join(done)} (complaint)" if done else "unsubscribed and suppressed already"


def _soft_bounce(event: InboundEvent, address: str) -> str:
    """Suppress after BOUNCE_SOFT_LIMIT soft bounces in BOUNCE_SOFT_DAYS,
    counting mails, not reports: a delay warning and the final failure of
    one mail are one soft bounce."""
    cfg = current_app.config
    limit, days = cfg["BOUNCE_SOFT_LIMIT"], cfg["BOUNCE_SOFT_DAYS"]
    db.session.flush()
    mails = db.session.execute(
        db.select(
            db.func.count(
                db.func.distinct(db.func.coalesce(InboundEvent.outbox_message_id, -InboundEvent.id))
            )
        ).where(
            InboundEvent.email_hash == event.email_hash,
            InboundEvent.kind == InboundKind.SOFT_BOUNCE,
            InboundEvent.received_at >= clock.now() - timedelta(days=days),
        )
    ).scalar_one()
    if mails < limit:
        return f"soft bounce {mails} of {limit} in {days} days"
    reason = f"{mails} soft bounces in {days} days"
    if suppressions.suppress(address, "soft_bounce_limit", reason, event_id=event.id):
        return f"address suppressed: {reason}"
    return f"{reason}; the address was suppressed already"


# --- What the pages show


def _events(*where) -> list[InboundEvent]:
    return list(
        db.session.execute(
            db.select(InboundEvent)
            .where(*where)
            .order_by(InboundEvent.received_at, InboundEvent.id)
        ).scalars()
    )


def for_lead(lead_id: int) -> list[InboundEvent]:
    return _events(InboundEvent.lead_id == lead_id)


def for_mail(outbox_id: int) -> list[InboundEvent]:
    return _events(InboundEvent.outbox_message_id == outbox_id)


def by_id(event_id: int) -> InboundEvent | None:
    return db.session.get(InboundEvent, event_id)


def counts(days: int | None = None) -> dict[str, int]:
    """Events by kind, in the last `days` or ever."""
    out = dict.fromkeys((k.value for k in InboundKind), 0)
    stmt = db.select(InboundEvent.kind, db.func.count()).group_by(InboundEvent.kind)
    if days is not None:
        stmt = stmt.where(InboundEvent.received_at >= clock.now() - timedelta(days=days))
    for kind, n in db.session.execute(stmt):
        out[InboundKind(kind).value] = n
    return out
