"""`flask bounces serve`, the real aiosmtpd receiver, as a process: it takes
the bounce address only, refuses big messages, stores a flood in bounded
memory, and (end to end) a DSN and an ARF complaint for mails the worker sent
through an SMTP server suppress their addresses so no further mail goes."""

from __future__ import annotations

import smtplib
import socket
import threading
import time
from email.message import Message

import pytest
from sqlalchemy import select

from app import create_app
from extensions import db
from models import (
    InboundEvent,
    InboundKind,
    Lead,
    LeadStatus,
    MailKind,
    OutboxMessage,
    Suppression,
    email_hash,
)
from services.bounces.receiver import BounceController
from services.campaigns import sequences
from services.mail import verp
from tests import procs
from tests.bounce_mail import (
    BOUNCE_ADDRESS,
    arf_complaint,
    bounce_receiver,
    deliver,
    envelope_sender_of,
    postfix_dsn,
)
from tests.factories import due_announcement, make_lead
from tests.helpers import app_beside, base_config, count, received, smtp_settings

GONE, COMPLAINER, READER = "gone@example.com", "angry@example.com", "reader@example.com"


def _env(tmp_path, url, **settings) -> dict[str, str]:
    env = procs.app_env(
        tmp_path, url, MAIL_BOUNCE_ADDRESS=BOUNCE_ADDRESS, FREQUENCY_CAP_DAYS="0", **settings
    )
    procs.flask_db_upgrade(env)
    return env


def _returned(msg) -> Message:
    """The headers of a mail the SMTP server received, as a DSN returns them."""
    headers = Message()
    for name in ("From", "To", "Subject", "Date", "Message-ID"):
        headers[name] = str(msg[name])
    return headers


@pytest.mark.slow
def test_a_dsn_and_a_complaint_suppress_end_to_end_and_no_mail_follows(
    tmp_path, empty_db_url, smtp_server
):
    env = _env(tmp_path, empty_db_url, **smtp_settings(smtp_server))
    app = app_beside(env, tmp_path, MAIL_BOUNCE_ADDRESS=BOUNCE_ADDRESS)
    with app.app_context():
        for email in (GONE, COMPLAINER, READER):
            sequences.lead_confirmed(make_lead(email, ("newsletter",)).id)  # a welcome each
        db.session.commit()
    assert procs.worker_once(env)["sent"] == 3

    gone_from = envelope_sender_of(smtp_server, GONE)
    complainer_from = envelope_sender_of(smtp_server, COMPLAINER)
    assert gone_from != complainer_from  # one VERP address per mail
    with app.app_context():
        assert verp.read(gone_from).valid and verp.read(complainer_from).valid
    bounced = received(smtp_server)[GONE][0]
    dsn = postfix_dsn(to=gone_from, recipient=GONE, original=_returned(bounced))
    complained = received(smtp_server)[COMPLAINER][0]
    arf = arf_complaint(
        mail_from=complainer_from, rcpt_to=COMPLAINER, message_id=str(complained["Message-ID"])
    )
    with bounce_receiver(env, tmp_path / "bounces.log") as receiver:
        # The DSN comes back to the mail's own envelope sender; the feedback
        # loop's report to the bare bounce address.
        assert deliver(receiver.port, gone_from, dsn)[0] == 250
        assert deliver(receiver.port, BOUNCE_ADDRESS, arf)[0] == 250

    with app.app_context():
        reasons = dict(db.session.execute(select(Suppression.email_hash, Suppression.reason)).all())
        assert reasons == {email_hash(GONE): "hard_bounce", email_hash(COMPLAINER): "complaint"}
        status = db.session.execute(select(Lead.status).where(Lead.email == COMPLAINER)).scalar()
        assert status == LeadStatus.UNSUBSCRIBED
        due_announcement(topic="newsletter")
    procs.worker_once(env)
    got = {rcpt: len(msgs) for rcpt, msgs in received(smtp_server).items()}
    assert got == {GONE: 1, COMPLAINER: 1, READER: 2}
    with app.app_context():
        skipped = db.session.execute(
            select(OutboxMessage.last_error)
            .join(Lead, Lead.id == OutboxMessage.lead_id)
            .where(Lead.email == GONE, OutboxMessage.status == "skipped")
        ).scalars()
        assert list(skipped) == ["address suppressed (hard_bounce)"]
        db.engine.dispose()


@pytest.mark.slow
def test_the_receiver_takes_the_bounce_address_only_and_no_big_message(tmp_path):
    env = _env(tmp_path, f"sqlite:///{tmp_path / 'db.sqlite3'}")
    dsn = postfix_dsn(to=BOUNCE_ADDRESS, recipient="someone@example.net")
    with bounce_receiver(env, tmp_path / "bounces.log") as receiver:
        port = receiver.port
        # Never a relay: any other recipient is refused before DATA.
        others = ("someone@example.net", "postmaster@bounce.example.com", "bounces@example.com")
        for other in others:
            code, _ = deliver(port, other, dsn, mail_from="spammer@example.net")
            assert code == 550, other
        assert deliver(port, "BOUNCES@Bounce.Example.COM", dsn)[0] == 250
        forged = "bounces+1-aaaaaaaaaa@bounce.example.com"
        forged_dsn = postfix_dsn(to=forged, recipient="victim@example.net")
        assert deliver(port, forged, forged_dsn)[0] == 250
        big = b"Subject: big\r\n\r\n" + (b"x" * 998 + b"\r\n") * 1100
        assert deliver(port, BOUNCE_ADDRESS, big)[0] == 552
        assert receiver.alive()
    status = procs.flask(env, "outbox", "status").stdout
    assert "bad_signature=1" in status and "hard_bounce=1" in status


def test_serving_without_a_bounce_address_says_what_to_set(tmp_path):
    env = procs.app_env(tmp_path, f"sqlite:///{tmp_path / 'db.sqlite3'}")
    done = procs.flask(env, "bounces", "serve", "--port", str(procs.free_port()), check=False)
    assert done.returncode == 1
    assert "MAIL_BOUNCE_ADDRESS (or BOUNCE_LOCAL and BOUNCE_DOMAIN) is not set" in done.stderr


def _rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))


@pytest.mark.slow
def test_a_flood_of_1000_bounces_is_stored_in_bounded_memory(tmp_path):
    env = _env(tmp_path, f"sqlite:///{tmp_path / 'db.sqlite3'}")
    app = app_beside(env, tmp_path, MAIL_BOUNCE_ADDRESS=BOUNCE_ADDRESS)
    with app.app_context():
        rows = []
        for i in range(10):
            lead = make_lead(f"flood{i}@example.com", ("newsletter",))
            rows.append(OutboxMessage(kind=MailKind.WELCOME, lead_id=lead.id, status="sent"))
        db.session.add_all(rows)
        db.session.commit()
        targets = [(verp.envelope_sender(r.id), r.lead.email) for r in rows]

    def send(port: int, numbers: range) -> None:
        with smtplib.SMTP("127.0.0.1", port, timeout=60) as client:
            for n in numbers:
                to, recipient = targets[n % len(targets)]
                status = "5.1.1" if n % 2 else "4.2.2"
                raw = postfix_dsn(to=to, recipient=recipient, status=status)
                client.sendmail("", [to], raw)

    with bounce_receiver(env, tmp_path / "bounces.log") as receiver:
        send(receiver.port, range(100))  # warm up: imports, caches, the pool
        before = _rss_kb(receiver.pid)
        threads = [
            threading.Thread(target=send, args=(receiver.port, range(100 + k, 1000, 4)))
            for k in range(4)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        after = _rss_kb(receiver.pid)
    assert count(app, InboundEvent) == 1000
    # Odd targets hard-bounce; even ones soft-bounce, always for the same
    # mail, which counts as one soft bounce however often it is reported.
    assert count(app, Suppression) == 5
    assert after - before < 16 * 1024, f"RSS grew {before} -> {after} kB over 900 messages"


def _wait_idle(controller) -> None:
    deadline = time.monotonic() + 5
    while controller.gate.open and time.monotonic() < deadline:
        time.sleep(0.01)


def test_connections_beyond_the_cap_are_told_to_come_back_later(tmp_path):
    app = create_app(
        {
            **base_config(tmp_path),
            "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'unused.sqlite3'}",
            "MAIL_BOUNCE_ADDRESS": BOUNCE_ADDRESS,
        }
    )
    controller = BounceController(app, "127.0.0.1", procs.free_port(), max_connections=2)
    controller.start()
    try:
        _wait_idle(controller)  # start() opens and closes one connection itself
        first = smtplib.SMTP("127.0.0.1", controller.port, timeout=10)
        second = smtplib.SMTP("127.0.0.1", controller.port, timeout=10)
        with socket.create_connection(("127.0.0.1", controller.port), timeout=10) as third:
            assert third.recv(100).startswith(b"421 4.3.2")
        first.quit()
        second.quit()
        _wait_idle(controller)
        with smtplib.SMTP("127.0.0.1", controller.port, timeout=10) as again:
            assert again.noop()[0] == 250
    finally:
        controller.stop()


def test_a_database_error_answers_451_so_the_mta_tries_again(tmp_path):
    url = f"sqlite:///{tmp_path / 'later.sqlite3'}"
    settings = {"SQLALCHEMY_DATABASE_URI": url, "MAIL_BOUNCE_ADDRESS": BOUNCE_ADDRESS}
    app = create_app({**base_config(tmp_path), **settings})
    controller = BounceController(app, "127.0.0.1", procs.free_port())
    controller.start()
    try:
        dsn = postfix_dsn(to=BOUNCE_ADDRESS, recipient="someone@example.net")
        assert deliver(controller.port, BOUNCE_ADDRESS, dsn)[0] == 451  # no tables yet
        with app.app_context():
            db.create_all()
        assert deliver(controller.port, BOUNCE_ADDRESS, dsn)[0] == 250
        with app.app_context():
            kinds = db.session.execute(select(InboundEvent.kind)).scalars().all()
            assert kinds == [InboundKind.HARD_BOUNCE]
    finally:
        controller.stop()
        with app.app_context():
            db.engine.dispose()
