"""What a message that came back says: a bounce (RFC 3464 DSN), a complaint
(ARF, RFC 5965), an automatic reply (RFC 3834), or something we cannot read.

The report's type is read first: MTAs mark their own DSNs `Auto-Submitted:
auto-replied` too, and those are bounces, not out-of-office replies. A DSN's
per-recipient `Status` decides hard (5.x.x) or soft (4.x.x); flufl.bounce
(GNU Mailman's detectors) finds the failed addresses, and reads the bounces
of MTAs that send no DSN. Nothing here touches the database.
"""

from __future__ import annotations

import email
import logging
import re
from dataclasses import dataclass
from email.message import Message
from email.parser import HeaderParser
from email.utils import parseaddr

import flufl.bounce

from models import InboundKind

log = logging.getLogger("leads.bounces")
# flufl.bounce logs each detector it runs at INFO, and a detector tripping on
# odd input as an ERROR with its traceback: we log that once, as a warning.
logging.getLogger("flufl.bounce").setLevel(logging.CRITICAL)

MAX_DIAGNOSTIC = 1000
# An enhanced status code (RFC 3463): class, subject, detail.
_STATUS = re.compile(r"\b([245]\.\d{1,3}\.\d{1,3})\b")
_CONTROLS = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_FAILED_ACTIONS = ("failed", "error")  # opensmtpd says "error"
_RETURNED = ("message/rfc822", "text/rfc822-headers", "message/rfc822-headers")
_AUTO_SUBJECT = re.compile(
    r"^\s*(auto(matic)?[ -]?(reply|response|antwort)|out of (the )?office|autoreply|"
    r"abwesenheit|absence|away from)",
    re.IGNORECASE,
)
_DAEMONS = ("mailer-daemon", "postmaster", "mail-daemon")


@dataclass
class Report:
    kind: InboundKind
    status: str | None = None  # enhanced status code of the failure
    diagnostic: str | None = None
    recipient: str | None = None  # the address the report says failed or complained
    message_id: str | None = None  # the report's own Message-ID
    # From the copy of our mail the report returns: its Message-ID and the
    # envelope sender it went with (Return-Path, or ARF's Original-Mail-From).
    original_message_id: str | None = None
    original_sender: str | None = None


def read(raw: bytes) -> Report:
    """Never raises: whatever a stranger sends is at worst UNPARSED."""
    try:
        # compat32 Message: the type flufl.bounce's detectors read.
        msg = email.message_from_bytes(raw)
        message_id = clean(msg.get("Message-ID"), 300)
    except Exception as exc:
        log.warning("inbound message could not be parsed: %s", type(exc).__name__)
        return Report(InboundKind.UNPARSED, diagnostic=f"not a mail message ({type(exc).__name__})")
    try:
        report = _classify(msg)
    except Exception as exc:  # a MIME bomb, a detector tripping on odd input
        log.warning("inbound message %s could not be read: %r", message_id, exc)
        diagnostic = f"could not be read ({type(exc).__name__})"
        report = Report(InboundKind.UNPARSED, diagnostic=diagnostic)
    report.message_id = message_id
    return report


def _classify(msg: Message) -> Report:
    types = {part.get_content_type() for part in msg.walk()}
    report_type = (msg.get_param("report-type") or "").lower()
    if report_type == "feedback-report" or "message/feedback-report" in types:
        return _complaint(msg)
    if report_type == "delivery-status" or "message/delivery-status" in types:
        return _dsn(msg)
    if _is_auto_reply(msg):
        return Report(InboundKind.AUTO_REPLY, diagnostic=clean(msg.get("Subject")))
    return _other_bounce(msg)


# --- Delivery status notifications (RFC 3464)


def _dsn(msg: Message) -> Report:
    failures = []  # (rank, status, block): 5.x.x first, then 4.x.x
    for block in _recipient_blocks(msg):
        action = (block.get("Action") or "").strip().lower()
        diagnostic = clean(block.get("Diagnostic-Code"))
        found = _STATUS.search(block.get("Status") or "") or _STATUS.search(diagnostic or "")
        status = found[1] if found else None
        if action.startswith(_FAILED_ACTIONS):
            # A failure with a 4.x.x status (given up after retries) is soft.
            hard = status is None or status.startswith("5")
        elif action.startswith("delayed"):
            hard = False
        elif not action and status and not status.startswith("2"):
            hard = status.startswith("5")
        else:
            continue  # delivered, relayed, expanded
        failures.append((0 if hard else 1, status, block))
    returned = _returned_headers(msg)
    report = Report(
        InboundKind.UNPARSED,
        original_message_id=clean(returned.get("Message-ID"), 300) if returned else None,
        original_sender=_address(returned.get("Return-Path")) if returned else None,
    )
    temporary, permanent = _flufl_failures(msg)
    if failures:
        rank, status, block = min(failures, key=lambda f: f[0])
        report.kind = InboundKind.HARD_BOUNCE if rank == 0 else InboundKind.SOFT_BOUNCE
        report.status = status
        report.diagnostic = clean(block.get("Diagnostic-Code")) or (
            f"Action: {block.get('Action', '').strip()}"
        )
        report.recipient = _address(block.get("Original-Recipient")) or _address(
            block.get("Final-Recipient")
        )
    elif permanent or temporary:
        report.kind = InboundKind.HARD_BOUNCE if permanent else InboundKind.SOFT_BOUNCE
        report.diagnostic = "a delivery report without a Status field"
    else:
        report.diagnostic = "a delivery report that reports no failure"
    if not report.recipient:
        report.recipient = _first(permanent or temporary)
    return report


def _flufl_failures(msg: Message) -> tuple[frozenset, frozenset]:
    """(temporary, permanent) addresses; none when a detector trips on the
    message (they read headers a DSN need not have): the Status fields decide."""
    try:
        return flufl.bounce.all_failures(msg)
    except Exception as exc:
        log.warning("flufl.bounce could not read a delivery report: %r", exc)
        return frozenset(), frozenset()


def _recipient_blocks(msg: Message) -> list[Message]:
    """The per-recipient field blocks of the first message/delivery-status
    part (the first block is about the message, not a recipient)."""
    for part in msg.walk():
        if part.get_content_type() != "message/delivery-status":
            continue
        if part.is_multipart():
            blocks = [b for b in part.get_payload() if isinstance(b, Message)]
        else:  # a part the parser left as text: read its blocks ourselves
            text = _text(part)
            blocks = [HeaderParser().parsestr(b) for b in re.split(r"\r?\n\s*\r?\n", text)]
        return [b for b in blocks if b.get("Final-Recipient") or b.get("Action")]
    return []


# --- Complaints (ARF, RFC 5965)


def _complaint(msg: Message) -> Report:
    fields = Message()
    for part in msg.walk():
        if part.get_content_type() == "message/feedback-report":
            payload = part.get_payload()
            if isinstance(payload, list) and payload:
                fields = payload[0]
            elif isinstance(payload, str):
                fields = HeaderParser().parsestr(_text(part))
            break
    returned = _returned_headers(msg)
    feedback_type = (fields.get("Feedback-Type") or "abuse").strip().lower()
    report = Report(
        InboundKind.COMPLAINT,
        diagnostic=clean(f"feedback type {feedback_type}, from {fields.get('User-Agent')}"),
        recipient=_address(fields.get("Original-Rcpt-To"))
        or (_address(returned.get("To")) if returned else None),
        original_message_id=clean(returned.get("Message-ID"), 300) if returned else None,
        original_sender=_address(fields.get("Original-Mail-From"))
        or (_address(returned.get("Return-Path")) if returned else None),
    )
    if feedback_type == "not-spam":  # RFC 6650: the opposite of a complaint
        report.kind = InboundKind.UNPARSED
        report.diagnostic = "a feedback report saying not spam: nothing to do"
    return report


# --- Everything else


def _is_auto_reply(msg: Message) -> bool:
    """RFC 3834 and what vacation programs say in practice. A mail from a
    mailer daemon, or naming failed recipients, is a bounce even when it says
    Auto-Submitted (Exim's plain-text bounces do)."""
    sender = (msg.get("From") or "").lower()
    if msg.get("X-Failed-Recipients") or any(d in sender for d in _DAEMONS):
        return False
    auto = (msg.get("Auto-Submitted") or "").strip().lower()
    if auto and not auto.startswith("no"):
        return True
    if msg.get("X-Autoreply") or msg.get("X-Autorespond"):
        return True
    if (msg.get("Precedence") or "").strip().lower() == "auto_reply":
        return True
    return bool(_AUTO_SUBJECT.match(msg.get("Subject") or ""))


def _other_bounce(msg: Message) -> Report:
    """A bounce in no standard format (qmail, old Exim...): flufl.bounce's
    heuristics. It cannot tell hard from soft reliably; what it calls
    permanent is taken as hard."""
    temporary, permanent = flufl.bounce.all_failures(msg)  # its errors: UNPARSED
    returned = _returned_headers(msg)
    original = {
        "original_message_id": clean(returned.get("Message-ID"), 300) if returned else None,
        "original_sender": _address(returned.get("Return-Path")) if returned else None,
    }
    if permanent or temporary:
        text = clean(" ".join(_text(p) for p in msg.walk() if not p.is_multipart())[:4000])
        found = _STATUS.search(text or "")
        return Report(
            InboundKind.HARD_BOUNCE if permanent else InboundKind.SOFT_BOUNCE,
            status=found[1] if found else None,
            diagnostic=clean(msg.get("Subject")),
            recipient=_first(permanent or temporary),
            **original,
        )
    return Report(
        InboundKind.UNPARSED, diagnostic=clean(msg.get("Subject")) or "(no subject)", **original
    )


# --- Small readers


def _returned_headers(msg: Message) -> Message | None:
    """The headers of our mail as the report returns them, if it does."""
    for part in msg.walk():
        ctype = part.get_content_type()
        if ctype not in _RETURNED:
            continue
        payload = part.get_payload()
        if isinstance(payload, list) and payload and isinstance(payload[0], Message):
            return payload[0]
        return HeaderParser().parsestr(_text(part))
    return None


def _text(part: Message) -> str:
    payload = part.get_payload(decode=True)
    if isinstance(payload, bytes):
        return payload.decode("utf-8", "replace")
    raw = part.get_payload()
    return raw if isinstance(raw, str) else ""


def clean(value, limit: int = MAX_DIAGNOSTIC) -> str | None:
    """Text fit to store: one line, no control characters (PostgreSQL text
    takes no NUL), at most `limit` characters; None when nothing is left."""
    if value is None:
        return None
    text = " ".join(_CONTROLS.sub(" ", str(value)).split())
    return text[:limit] or None


def _address(value) -> str | None:
    """The address in a field such as `rfc822; a@b.example` or `A <a@b.example>`."""
    if not value:
        return None
    text = str(value)
    kind, semicolon, rest = text.partition(";")
    if semicolon and "@" not in kind:  # an address type (RFC 3464 2.3.2)
        text = rest
    address = parseaddr(" ".join(_CONTROLS.sub(" ", text).split()))[1]
    return address[:320] if "@" in address else None


def _first(addresses) -> str | None:
    for addr in sorted(addresses):
        return addr.decode("ascii", "replace")[:320] if isinstance(addr, bytes) else addr[:320]
    return None
