"""A real MTA in the loop: Debian's Postfix, as a private instance on
loopback (tests/mta.py), is the relay the worker sends through.

- A confirmation to an address at Postfix's domain that has no mailbox:
  Postfix accepts it, its virtual(8) agent finds no such user, and Postfix
  itself writes the DSN to the mail's VERP envelope sender. Its transport
  table hands mail for the bounce domain to `flask bounces serve`, and the
  lead is suppressed within 30 s.
- An announcement (8bit UTF-8 body, List-Unsubscribe) to the mailbox that
  exists is read from its Maildir, and its DKIM signature still verifies
  (dkimpy, against the TXT record `flask dkim keygen` printed) after Postfix
  added its own headers.

Postfix runs as root only; without it (or root) the test is skipped, and
under CI=true it fails (require_service).
"""

from __future__ import annotations

import re
import time

import dkim
import pytest
from sqlalchemy import select

from extensions import db
from models import InboundEvent, InboundKind, MailKind, OutboxMessage, Suppression, email_hash
from tests import mta, procs
from tests.bounce_mail import BOUNCE_ADDRESS, bounce_receiver
from tests.factories import due_announcement, make_lead, subscribed_lead
from tests.helpers import app_beside, require_service

pytestmark = pytest.mark.slow

GONE = f"gone@{mta.DOMAIN}"  # no mailbox: Postfix bounces it
BOX = f"box@{mta.DOMAIN}"  # the mailbox that exists
SELECTOR, DKIM_DOMAIN = "s2026", "scrum-academy.example"  # the From address's domain
RECORD_NAME = f"{SELECTOR}._domainkey.{DKIM_DOMAIN}."
ANNOUNCEMENT = (
    "Hallo {{ first_name }}, Grüße aus München — bis bald. [Abmelden]({{ unsubscribe_url }})"
)


@pytest.fixture
def postfix_available() -> None:
    reason = mta.missing_reason()
    if reason:
        require_service("postfix", reason)


def _keygen(tmp_path) -> tuple[str, bytes]:
    """A key of the test's own from `flask dkim keygen`, and the TXT record's
    value it printed (the one-line `value:` form of the zone-file record)."""
    env = procs.app_env(tmp_path, f"sqlite:///{tmp_path / 'unused.sqlite3'}")
    key_file = tmp_path / "keys" / f"{SELECTOR}.pem"
    out = procs.flask(
        env, "dkim", "keygen", "--selector", SELECTOR, "--domain", DKIM_DOMAIN,
        "--output", str(key_file),
    ).stdout  # fmt: skip
    return str(key_file), re.search(r"^ *value: (.+)$", out, re.MULTILINE).group(1).encode()


def _wait_for(check, timeout: float, what: str, *logs) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(
                f"{what} not within {timeout:.0f} s\n" + "\n".join(logs_() for logs_ in logs)
            )
        time.sleep(0.2)


def test_postfix_bounces_an_unknown_user_to_bounces_serve_and_keeps_dkim_intact(
    postfix_available, tmp_path
):
    key_file, record = _keygen(tmp_path)
    settings = {
        "MAIL_BOUNCE_ADDRESS": BOUNCE_ADDRESS,
        "DKIM_DOMAIN": DKIM_DOMAIN,
        "DKIM_SELECTOR": SELECTOR,
        "DKIM_PRIVATE_KEY_FILE": key_file,
    }
    env = procs.app_env(tmp_path, f"sqlite:///{tmp_path / 'db.sqlite3'}", **settings)
    procs.flask_db_upgrade(env)
    app = app_beside(env, tmp_path, **settings)
    with app.app_context():
        subscribed_lead(GONE)  # its confirmation is queued
        make_lead(BOX, ("cspo-classes",), name="Zoë")
        # Marketing mail (List-Unsubscribe signed too) with an 8bit body.
        due_announcement().body = ANNOUNCEMENT
        db.session.commit()

    bounce_domain = BOUNCE_ADDRESS.rpartition("@")[2]
    with (
        bounce_receiver(env, tmp_path / "bounces.log") as receiver,
        mta.postfix(mailboxes=["box"], relay_domains={bounce_domain: receiver.port}) as postfix,
    ):
        worker_env = {**env, "MAIL_BACKEND": "smtp", "MAIL_SERVER": "127.0.0.1"}
        worker_env["MAIL_PORT"] = str(postfix.port)
        assert procs.worker_once(worker_env)["sent"] == 2  # Postfix said 250 to both

        def suppressed() -> bool:
            with app.app_context():
                found = db.session.get(Suppression, email_hash(GONE))
                db.session.remove()
                return found is not None

        _wait_for(suppressed, 30, f"suppression of {GONE}", postfix.maillog, receiver.log)
        _wait_for(lambda: postfix.mailbox("box"), 30, "delivery to box", postfix.maillog)
        delivered = postfix.mailbox("box")

    with app.app_context():
        reason = db.session.get(Suppression, email_hash(GONE)).reason
        event = db.session.execute(select(InboundEvent)).scalar_one()
        bounced = db.session.get(OutboxMessage, event.outbox_message_id)
        assert (reason, event.kind, event.status_code) == (
            "hard_bounce",
            InboundKind.HARD_BOUNCE,
            "5.1.1",
        )
        assert (bounced.kind, bounced.lead.email) == (MailKind.CONFIRMATION, GONE)
        # It came back to that mail's own VERP address.
        assert event.envelope_to.startswith("bounces+") and event.envelope_to != BOUNCE_ADDRESS
        # Written by this Postfix, not by a fixture.
        assert f"Reporting-MTA: dns; mx.{mta.DOMAIN}".encode() in event.raw
        assert b"X-Postfix-Queue-ID: " in event.raw
        assert db.session.get(Suppression, email_hash(BOX)) is None
        db.engine.dispose()

    assert len(delivered) == 1
    # A Maildir keeps the host's line ends; the signature is over the mail
    # as it travelled, with SMTP's CRLF.
    raw = delivered[0].replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    head = raw.partition(b"\r\n\r\n")[0]
    assert f"Delivered-To: {BOX}".encode() in head
    assert f"by mx.{mta.DOMAIN} (Postfix)".encode() in head
    assert b"X-Mail-Kind: announcement" in head and b"List-Unsubscribe: " in head
    assert "Grüße aus München".encode() in raw  # 8bit, as sent: Postfix did not convert it
    assert dkim.verify(
        raw, dnsfunc=lambda name, timeout=5: record if name == RECORD_NAME.encode() else None
    )
