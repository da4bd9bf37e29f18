"""VERP: each mail's envelope sender is the bounce address with a signed tag
naming its outbox row; without a bounce address it is the From address."""

from __future__ import annotations

import io
import re

import pytest

from extensions import db
from models import MailKind, OutboxMessage
from services.mail import verp
from services.mail.compose import compose
from services.mail.mailer import ConsoleTransport, FileTransport
from tests.bounce_mail import BOUNCE_ADDRESS
from tests.factories import make_lead
from tests.helpers import mail_files

VERP = re.compile(r"bounces\+(\d+)-[a-z2-7]{10}@bounce\.example\.com")


@pytest.fixture
def app_config(app_config):
    return {**app_config, "MAIL_BOUNCE_ADDRESS": BOUNCE_ADDRESS}


def _queued_mail():
    lead = make_lead("reader@example.com", ("newsletter",))
    row = OutboxMessage(kind=MailKind.WELCOME, lead_id=lead.id)
    db.session.add(row)
    db.session.commit()
    return row, lead


def test_the_envelope_sender_names_the_row_signed_in_lower_case(app, frozen):
    with app.app_context():
        row, lead = _queued_mail()
        sender = compose(row, lead).mail.sender
        match = VERP.fullmatch(sender)
        assert match and int(match[1]) == row.id
        # Within RFC 5321's 64-character local part for any row id there can be.
        longest = verp.envelope_sender(2**63 - 1)
        assert len(longest.partition("@")[0]) <= 64
        # Some MTAs change the case of a local part: it still verifies.
        for seen in (sender, sender.upper(), f"<{sender}>"):
            assert verp.read(seen) == verp.Tag(row.id, tagged=True, valid=True)


def test_a_made_up_or_changed_tag_does_not_verify(app):
    with app.app_context():
        good = verp.envelope_sender(41)
        local, _, domain = good.partition("@")
        signature = local.rpartition("-")[2]
        flipped = signature[:-1] + ("a" if signature[-1] != "a" else "b")
        assert not verp.read(f"bounces+41-{flipped}@{domain}").valid
        # The signature of row 41 says nothing about row 42.
        assert verp.read(f"bounces+42-{signature}@{domain}") == verp.Tag(42, True, False)
        assert verp.read(f"bounces+junk@{domain}") == verp.Tag(None, True, False)
        assert verp.read(BOUNCE_ADDRESS) == verp.Tag(None, tagged=False, valid=False)
        # Not the bounce mailbox at all.
        for other in ("other@bounce.example.com", f"bounces+41-{signature}@example.com", ""):
            assert verp.read(other) is None


def test_rotated_keys_still_verify_the_mails_they_signed(app):
    with app.app_context():
        sent_before = verp.envelope_sender(7)
        app.config["SECRET_KEY_FALLBACKS"] = [app.config["SECRET_KEY"]]
        app.config["SECRET_KEY"] = "a-new-key"
        assert verp.read(sent_before).valid
        assert verp.envelope_sender(7) != sent_before
        app.config["SECRET_KEY_FALLBACKS"] = []
        assert not verp.read(sent_before).valid


def test_without_a_bounce_address_the_from_address_is_the_envelope_sender(app, frozen):
    with app.app_context():
        row, lead = _queued_mail()
        with_verp = compose(row, lead).mail
        assert verp.read(with_verp.sender).valid
        app.config["MAIL_BOUNCE_ADDRESS"] = None
        without = compose(row, lead).mail
        assert without.sender == "hello@scrum-academy.example"

        # The message itself is the same (but for its random MIME boundary):
        # the receiving MTA adds the Return-Path from the envelope, not us.
        def same(data: bytes) -> bytes:
            return re.sub(rb"=_[0-9a-f]{32}", b"BOUNDARY", data)

        assert same(with_verp.data) == same(without.data)
        assert b"Return-Path" not in with_verp.data


def test_file_and_console_backends_keep_the_message_and_show_the_envelope(app, frozen, caplog):
    with app.app_context():
        row, lead = _queued_mail()
        mail = compose(row, lead).mail
        out = io.StringIO()
        ConsoleTransport(out).send(mail)
        assert out.getvalue().startswith(f"MAIL FROM:<{mail.sender}> RCPT TO:<reader@example.com>")
        caplog.set_level("DEBUG", logger="leads.mail")
        FileTransport(app.config["MAIL_FILE_DIR"]).send(mail)
        (written,) = mail_files(app)
        assert written.read_bytes() == mail.data
        assert f"MAIL FROM:<{mail.sender}>" in caplog.text
