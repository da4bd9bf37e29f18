"""Bounces and complaints read, matched to their mail and acted on
(services.bounces.process): DSNs made as Postfix writes them, the ARF report
of RFC 5965, out-of-office replies, forged tags and malformed input. The
SMTP receiver in front of it is tested in test_bounce_receiver.py."""

from __future__ import annotations

import re
from datetime import timedelta
from email.message import Message

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
    email_hash,
)
from services import bounces
from services.leads import privacy
from services.mail.compose import compose
from tests.bounce_mail import BOUNCE_ADDRESS, arf_complaint, out_of_office, postfix_dsn
from tests.factories import due_announcement, make_lead
from tests.helpers import count, drain, mail_files, page_text, sign_in_admin, signup

EMAIL = "reader@example.com"


@pytest.fixture
def app_config(app_config):
    return {**app_config, "MAIL_BOUNCE_ADDRESS": BOUNCE_ADDRESS, "FREQUENCY_CAP_DAYS": 0}


def sent(email: str = EMAIL, kind: MailKind = MailKind.WELCOME) -> tuple[int, str, str]:
    """A mail to `email` as the worker sent it: (row id, its envelope sender,
    its Message-ID). In an app context; the lead is made when missing."""
    lead = db.session.execute(select(Lead).where(Lead.email == email)).scalar() or make_lead(
        email, ("cspo-classes", "newsletter")
    )
    row = OutboxMessage(kind=kind, lead_id=lead.id, status=OutboxStatus.SENT)
    db.session.add(row)
    db.session.commit()
    mail = compose(row, lead).mail
    return row.id, mail.sender, mail.message_id


def process(raw: bytes, rcpt: str) -> InboundEvent:
    event = bounces.process(raw, rcpt)
    db.session.commit()
    return event


def suppression(email: str = EMAIL) -> Suppression | None:
    return db.session.get(Suppression, email_hash(email))


def test_a_hard_bounce_suppresses_the_address_once_and_is_kept(app, frozen):
    with app.app_context():
        row_id, verp_address, message_id = sent()
        original = make_original(message_id, verp_address)
        raw = postfix_dsn(to=verp_address, recipient=EMAIL, original=original)
        event = process(raw, verp_address)
        assert (event.kind, event.status_code) == (InboundKind.HARD_BOUNCE, "5.1.1")
        assert (event.outbox_message_id, event.recipient) == (row_id, EMAIL)
        assert "User unknown" in event.diagnostic and event.raw == raw
        assert event.outcome == "address suppressed (hard bounce)"
        s = suppression()
        assert (s.reason, s.inbound_event_id, s.lead_id) == ("hard_bounce", event.id, event.lead_id)
        assert s.detail.startswith("5.1.1 smtp; 550 5.1.1")
        # The MTA sends it again (it never saw our 250): one event, no more.
        assert process(raw, verp_address).id == event.id
        assert count(app, InboundEvent) == 1


def make_original(message_id: str, return_path: str) -> Message:
    """The headers of our mail as a DSN returns them."""
    original = Message()
    original["Return-Path"] = f"<{return_path}>"
    original["Message-ID"] = message_id
    original["Subject"] = "Welcome! Here is what comes next"
    return original


def test_soft_bounces_suppress_after_the_limit_counting_mails_within_the_days(app, frozen):
    with app.app_context():
        # One long ago: outside BOUNCE_SOFT_DAYS (30), it no longer counts.
        _, old, _ = sent()
        process(postfix_dsn(to=old, recipient=EMAIL, status="4.2.2"), old)
        frozen.advance(days=31)
        _, first, _ = sent()
        # A delay warning and then the final failure of one mail: one soft bounce.
        delayed = postfix_dsn(to=first, recipient=EMAIL, status="4.4.1", action="delayed")
        assert process(delayed, first).outcome == "soft bounce 1 of 3 in 30 days"
        failed = postfix_dsn(to=first, recipient=EMAIL, status="4.4.1", action="failed")
        event = process(failed, first)
        assert event.kind == InboundKind.SOFT_BOUNCE  # failed, but a 4.x.x status
        assert event.outcome == "soft bounce 1 of 3 in 30 days"
        _, second, _ = sent()
        assert process(postfix_dsn(to=second, recipient=EMAIL, status="4.2.2"), second).outcome == (
            "soft bounce 2 of 3 in 30 days"
        )
        assert suppression() is None
        _, third, _ = sent()
        event = process(postfix_dsn(to=third, recipient=EMAIL, status="4.2.2"), third)
        assert event.outcome == "address suppressed: 3 soft bounces in 30 days"
        assert (suppression().reason, suppression().inbound_event_id) == (
            "soft_bounce_limit",
            event.id,
        )


def test_a_dsn_marked_auto_submitted_is_a_bounce_an_out_of_office_reply_is_ignored(app, frozen):
    with app.app_context():
        _, verp_address, _ = sent()
        reply = process(out_of_office(to=verp_address), verp_address)
        assert reply.kind == InboundKind.AUTO_REPLY
        assert reply.outcome == "ignored: an automatic reply"
        assert suppression() is None
        dsn = postfix_dsn(to=verp_address, recipient=EMAIL)
        assert b"Auto-Submitted: auto-replied" in dsn
        assert process(dsn, verp_address).kind == InboundKind.HARD_BOUNCE
        assert suppression() is not None


def test_an_arf_complaint_unsubscribes_and_suppresses_and_no_mail_follows(app, frozen):
    with app.app_context():
        row_id, verp_address, message_id = sent()
        # Feedback loops report to a fixed address: the tag comes from the
        # report's Original-Mail-From.
        raw = arf_complaint(mail_from=verp_address, rcpt_to=EMAIL, message_id=message_id)
        event = process(raw, BOUNCE_ADDRESS)
        assert (event.kind, event.outbox_message_id) == (InboundKind.COMPLAINT, row_id)
        assert event.outcome == "unsubscribed and suppressed (complaint)"
        the_lead = db.session.execute(select(Lead).where(Lead.email == EMAIL)).scalar_one()
        assert the_lead.status == LeadStatus.UNSUBSCRIBED
        withdrawn = db.session.execute(
            select(ConsentEvent.channel).where(ConsentEvent.lead_id == the_lead.id)
        ).scalars()
        assert list(withdrawn) == ["complaint"]
        assert suppression().reason == "complaint"
        due_announcement(topic="newsletter")
    drain(app)
    assert mail_files(app) == []


def test_the_rfc_5965_example_report_is_a_complaint_about_no_mail_of_ours(app):
    with app.app_context():
        event = process(arf_complaint(), BOUNCE_ADDRESS)
        assert event.kind == InboundKind.COMPLAINT
        assert event.recipient == "user@example.com"
        assert event.outcome == "no mail of ours matches it: nothing done"
        assert count(app, Suppression) == 0


def test_without_a_tag_the_returned_message_id_finds_the_mail(app, frozen):
    with app.app_context():
        row_id, verp_address, message_id = sent()
        # Headers returned without the Return-Path; sent to the bare address.
        original = make_original(message_id, verp_address)
        del original["Return-Path"]
        raw = postfix_dsn(to=BOUNCE_ADDRESS, recipient=EMAIL, original=original)
        event = process(raw, BOUNCE_ADDRESS)
        assert event.outbox_message_id == row_id
        assert event.outcome == "address suppressed (hard bounce)"
        # A Message-ID that looks like ours but whose time stamp is wrong: no.
        other = "victim@example.com"
        _, _, other_message_id = sent(other)
        guessed = re.sub(r"\.(\d+)\.outbox", lambda m: f".{int(m[1]) + 1}.outbox", other_message_id)
        forged = make_original(guessed, BOUNCE_ADDRESS)
        del forged["Return-Path"]
        raw = postfix_dsn(to=BOUNCE_ADDRESS, recipient=other, original=forged)
        event = process(raw, BOUNCE_ADDRESS)
        assert event.outbox_message_id is None and suppression(other) is None


def test_a_bad_signature_is_ignored_and_counted(app, runner, frozen):
    with app.app_context():
        _, verp_address, _ = sent()
        forged = re.sub(r"-[a-z2-7]{10}@", "-aaaaaaaaaa@", verp_address)
        event = process(postfix_dsn(to=forged, recipient=EMAIL), forged)
        assert (event.kind, event.outbox_message_id) == (InboundKind.BAD_SIGNATURE, None)
        assert event.outcome == "ignored: the VERP tag's signature does not verify"
        assert suppression() is None
    out = runner.invoke(args=["outbox", "status"]).output
    assert "bad_signature=1" in out and "hard_bounce=0" in out


def _nested(depth: int) -> bytes:
    head = b"".join(
        b'Content-Type: multipart/mixed; boundary="b%d"\r\n\r\n--b%d\r\n' % (i, i)
        for i in range(depth)
    )
    return b"From: x@y\r\nMIME-Version: 1.0\r\n" + head + b"text\r\n"


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"\x00" * 200,
        b"\xff\xfe garbage \x00\r\n\r\n\x80\x81",
        b"Subject: no body and no From\r\n",
        b"Subject: \x00NUL\x07 in a header\r\nMessage-ID: <a\x00b@x>\r\n\r\nbody",
        _nested(3000),
        b"Content-Type: multipart/report; report-type=delivery-status; boundary=x\r\n\r\n"
        b"--x\r\nContent-Type: message/delivery-status\r\n\r\nAction: failed\r\nStatus: 9.9\r\n",
        b"Content-Type: multipart/report; report-type=feedback-report\r\n\r\nno parts",
    ],
    ids=["empty", "nul", "binary", "headers-only", "controls", "nested", "bad-dsn", "bad-arf"],
)
def test_malformed_messages_are_kept_and_never_crash(app, raw):
    with app.app_context():
        event = process(raw, BOUNCE_ADDRESS)
        assert event.raw == raw[: bounces.events.RAW_KEEP_BYTES] and event.raw_size == len(raw)
        assert count(app, Suppression) == 0


def test_a_huge_message_is_kept_unread_and_capped(app):
    huge = b"Subject: big\r\n\r\n" + b"x" * (bounces.events.MAX_MESSAGE_BYTES + 10)
    with app.app_context():
        event = process(huge, BOUNCE_ADDRESS)
        assert event.kind == InboundKind.UNPARSED and event.diagnostic.startswith("too large")
        assert len(event.raw) == bounces.events.RAW_KEEP_BYTES and event.raw_size == len(huge)


@pytest.mark.parametrize("status", ["5.1.1", "4.2.2"])
def test_a_bounced_address_gets_no_mail_of_any_kind_even_after_a_new_signup(
    app, client, frozen, status
):
    app.config["BOUNCE_SOFT_LIMIT"] = 1
    with app.app_context():
        _, verp_address, _ = sent()
        process(postfix_dsn(to=verp_address, recipient=EMAIL, status=status), verp_address)
        reason = suppression().reason
    # Signing up again is answered as usual...
    frozen.advance(hours=2)
    r = signup(client, EMAIL)
    assert r.status_code in (200, 303)
    drain(app)
    with app.app_context():
        # ...and the mail it queued is not sent; the delivery log says why.
        rows = db.session.execute(
            select(OutboxMessage.kind, OutboxMessage.status, OutboxMessage.last_error).where(
                OutboxMessage.status != OutboxStatus.SENT
            )
        ).all()
        assert rows and all(r.status == OutboxStatus.SKIPPED for r in rows), rows
        assert {r.last_error for r in rows} == {f"address suppressed ({reason})"}
        assert {r.kind for r in rows} == {MailKind.ALREADY_SUBSCRIBED}


def test_the_pages_show_what_came_back_and_erasure_keeps_only_the_hash(app, client, frozen):
    with app.app_context():
        row_id, verp_address, _ = sent()
        event = process(postfix_dsn(to=verp_address, recipient=EMAIL), verp_address)
        event_id, lead_id = event.id, event.lead_id
        public_id = db.session.get(Lead, lead_id).public_id
    sign_in_admin(app, client)
    listing = page_text(client.get("/admin/suppressions"))
    assert EMAIL in listing and "hard_bounce" in listing and "hard bounce" in listing
    assert "What came back" in page_text(client.get(f"/admin/outbox/{row_id}"))
    timeline = page_text(client.get(f"/marketing/leads/{public_id}"))
    assert "Came back: hard bounce" in timeline and "address suppressed" in timeline
    detail = client.get(f"/admin/inbound/{event_id}").get_data(as_text=True)
    assert "Undelivered Mail Returned to Sender" in detail
    assert "&lt;reader@example.com&gt;" in detail  # the raw message, escaped
    assert client.get("/admin/inbound/999999").status_code == 404

    with app.app_context():
        privacy.erase(db.session.get(Lead, lead_id))
        db.session.commit()
        kept = db.session.get(InboundEvent, event_id)
        assert (kept.lead_id, kept.recipient, kept.diagnostic, kept.raw) == (None, None, None, None)
        assert kept.kind == InboundKind.HARD_BOUNCE and kept.email_hash == email_hash(EMAIL)
    listing = page_text(client.get("/admin/suppressions"))
    assert EMAIL not in listing and email_hash(EMAIL)[:16] in listing
    assert EMAIL not in client.get(f"/admin/inbound/{event_id}").get_data(as_text=True)


def test_a_lead_data_export_lists_what_came_back(app, frozen):
    with app.app_context():
        _, verp_address, _ = sent()
        event = process(postfix_dsn(to=verp_address, recipient=EMAIL), verp_address)
        data = privacy.lead_data(db.session.get(Lead, event.lead_id))
        assert [(e["kind"], e["status"]) for e in data["bounces_and_complaints"]] == [
            ("hard_bounce", "5.1.1")
        ]
        assert frozen.now - timedelta(seconds=1) <= event.received_at <= frozen.now
