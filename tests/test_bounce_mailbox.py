"""`flask bounces fetch` against a real IMAP server: Debian's Dovecot as a
private instance on loopback with TLS (tests/imap_server.py).

A Postfix-style DSN and an ARF complaint in the mailbox suppress their
addresses and are deleted (or flagged); a second run finds nothing new; a
message over the cap is flagged and left unread; an untrusted certificate
and a wrong password each stop the command with one line and touch nothing.
Without Dovecot (or root) the tests are skipped, under CI=true they fail.
"""

from __future__ import annotations

import time

import pytest
from sqlalchemy import select

from config import Config, ConfigError
from extensions import db
from models import InboundEvent, Lead, LeadStatus, OutboxMessage, Suppression, email_hash
from services.bounces.mailbox import envelope_recipient
from services.campaigns import sequences
from services.mail import verp
from tests import imap_server, procs
from tests.bounce_mail import BOUNCE_ADDRESS, arf_complaint, postfix_dsn
from tests.factories import make_lead
from tests.helpers import app_beside, require_service

GONE, COMPLAINER = "gone@example.com", "angry@example.com"


@pytest.fixture
def imap():
    reason = imap_server.missing_reason()
    if reason:
        require_service("dovecot", reason)
    with imap_server.dovecot() as server:
        yield server


def _env(tmp_path, imap, **settings) -> dict[str, str]:
    env = procs.app_env(
        tmp_path,
        f"sqlite:///{tmp_path / 'db.sqlite3'}",
        MAIL_BOUNCE_ADDRESS=BOUNCE_ADDRESS,
        BOUNCE_IMAP_HOST="127.0.0.1",
        BOUNCE_IMAP_PORT=imap.port,
        BOUNCE_IMAP_USER=imap_server.USER,
        BOUNCE_IMAP_PASSWORD=imap_server.PASSWORD,
        BOUNCE_IMAP_CA_FILE=imap.ca_file,
        **settings,
    )
    procs.flask_db_upgrade(env)
    return env


def _bounce_and_complaint(app) -> tuple[bytes, bytes]:
    """A DSN for GONE's welcome mail and an ARF complaint about
    COMPLAINER's, as they sit in the bounce mailbox: the delivering MTA put
    the address it delivered to on top (Delivered-To)."""
    with app.app_context():
        rows = {}
        for email in (GONE, COMPLAINER):
            sequences.lead_confirmed(make_lead(email, ("newsletter",)).id)
        db.session.commit()
        for row in db.session.execute(select(OutboxMessage)).scalars():
            rows[row.lead.email] = verp.envelope_sender(row.id)
        db.engine.dispose()
    dsn = postfix_dsn(to=rows[GONE], recipient=GONE)
    arf = arf_complaint(mail_from=rows[COMPLAINER], rcpt_to=COMPLAINER)
    return (
        f"Return-Path: <>\r\nDelivered-To: {rows[GONE]}\r\n".encode() + dsn,
        f"Return-Path: <>\r\nDelivered-To: {BOUNCE_ADDRESS}\r\n".encode() + arf,
    )


def _fetch(env, *args: str, check: bool = True):
    return procs.flask(env, "bounces", "fetch", *args, check=check)


@pytest.mark.slow
def test_fetch_processes_a_dsn_and_a_complaint_and_deletes_them(tmp_path, imap):
    env = _env(tmp_path, imap)
    app = app_beside(env, tmp_path, MAIL_BOUNCE_ADDRESS=BOUNCE_ADDRESS)
    dsn, arf = _bounce_and_complaint(app)
    imap.deliver(dsn)
    imap.deliver(arf)
    big = b"Subject: big\r\n\r\n" + (b"x" * 998 + b"\r\n") * 1100  # over 1 MB
    imap.deliver(big)

    assert "bounces: processed=2 too_large=1" in _fetch(env).stdout
    with app.app_context():
        reasons = dict(db.session.execute(select(Suppression.email_hash, Suppression.reason)).all())
        assert reasons == {email_hash(GONE): "hard_bounce", email_hash(COMPLAINER): "complaint"}
        status = db.session.execute(select(Lead.status).where(Lead.email == COMPLAINER)).scalar()
        assert status == LeadStatus.UNSUBSCRIBED
        sources = db.session.execute(select(InboundEvent.source)).scalars().all()
        assert sources == ["imap", "imap"]
        db.engine.dispose()
    # Both deleted; the big one flagged and left unread.
    left = imap.messages()
    assert [raw for raw, _ in left] == [big]
    flags = left[0][1]
    assert "F" in flags and "S" not in flags
    assert imap.keywords()[next(c for c in flags if c.islower())] == "$BounceTooLarge"

    # Nothing new the second time; the same DSN delivered again counts once.
    assert "bounces: processed=0 too_large=0" in _fetch(env).stdout
    imap.deliver(dsn)
    assert "bounces: processed=1 too_large=0" in _fetch(env).stdout
    with app.app_context():
        assert len(db.session.execute(select(InboundEvent)).scalars().all()) == 2
        db.engine.dispose()
    assert len(imap.messages()) == 1


@pytest.mark.slow
def test_fetch_every_flags_what_it_processed_and_stops_on_sigterm(tmp_path, imap):
    env = _env(tmp_path, imap, BOUNCE_IMAP_AFTER="flag")
    app = app_beside(env, tmp_path, MAIL_BOUNCE_ADDRESS=BOUNCE_ADDRESS)
    dsn, _arf = _bounce_and_complaint(app)
    proc = procs.Proc(
        [procs.PYTHON, "-m", "flask", "--app", "app", "bounces", "fetch", "--every", "1"],
        env,
        tmp_path / "fetch.log",
    )
    try:
        proc.start()
        imap.deliver(dsn)
        deadline = time.monotonic() + 30
        while "processed=1" not in proc.log():
            assert proc.alive(), proc.log()
            assert time.monotonic() < deadline, proc.log()
            time.sleep(0.1)
        assert proc.stop() == 0, proc.log()  # SIGTERM: it finishes and exits
    finally:
        proc.stop()
    [(raw, flags)] = imap.messages()
    assert raw == dsn
    assert "S" in flags and "T" not in flags
    assert imap.keywords()[next(c for c in flags if c.islower())] == "$BounceProcessed"
    with app.app_context():
        assert db.session.get(Suppression, email_hash(GONE)).reason == "hard_bounce"
        db.engine.dispose()


@pytest.mark.slow
def test_an_untrusted_certificate_or_a_wrong_password_stops_it_and_nothing_is_touched(
    tmp_path, imap
):
    env = _env(tmp_path, imap)
    app = app_beside(env, tmp_path, MAIL_BOUNCE_ADDRESS=BOUNCE_ADDRESS)
    dsn, _arf = _bounce_and_complaint(app)
    imap.deliver(dsn)

    # The system's CAs only: the test CA's certificate is refused.
    untrusted = _fetch({**env, "BOUNCE_IMAP_CA_FILE": ""}, check=False)
    assert untrusted.returncode == 1
    [line] = untrusted.stderr.strip().splitlines()
    assert line.startswith(f"Error: IMAP server 127.0.0.1:{imap.port}: its TLS certificate")
    assert "not trusted" in line and "BOUNCE_IMAP_CA_FILE" in line

    wrong = _fetch({**env, "BOUNCE_IMAP_PASSWORD": "wrong"}, check=False)
    assert wrong.returncode == 1
    [line] = wrong.stderr.strip().splitlines()
    assert line.startswith(f"Error: IMAP server 127.0.0.1:{imap.port}: login as bounces refused")
    assert "wrong" not in line  # the password is never printed

    assert imap.messages() == [(dsn, "")]
    with app.app_context():
        assert db.session.execute(select(InboundEvent)).first() is None
        db.engine.dispose()


def test_the_recipient_is_the_tagged_bounce_address_first(app):
    with app.app_context():
        app.config["MAIL_BOUNCE_ADDRESS"] = BOUNCE_ADDRESS
        tagged = verp.envelope_sender(42)
        raw = (
            f"Delivered-To: {BOUNCE_ADDRESS}\r\nX-Original-To: {tagged}\r\n"
            "To: someone@example.net\r\n\r\nbody\r\n"
        ).encode()
        assert envelope_recipient(raw) == tagged
        assert envelope_recipient(raw.replace(tagged.encode(), b"x@example.org")) == (
            BOUNCE_ADDRESS
        )
        assert envelope_recipient(b"To: Someone <s@example.net>\r\n\r\n") == "s@example.net"
        assert envelope_recipient(b"Subject: none\r\n\r\n") is None


def test_imap_settings_are_checked_at_start_up(tmp_path):
    def read(**env):
        return Config.from_env(str(tmp_path), {"SECRET_KEY": "x", **env})

    cfg = read()
    assert (cfg["BOUNCE_IMAP_HOST"], cfg["BOUNCE_IMAP_PORT"]) == (None, 993)
    assert (cfg["BOUNCE_IMAP_FOLDER"], cfg["BOUNCE_IMAP_AFTER"]) == ("INBOX", "delete")
    with pytest.raises(ConfigError, match="BOUNCE_IMAP_USER and _PASSWORD"):
        read(BOUNCE_IMAP_HOST="imap.example.com")
    with pytest.raises(ConfigError, match='BOUNCE_IMAP_HOST: "imap example" is not a host'):
        read(BOUNCE_IMAP_HOST="imap example", BOUNCE_IMAP_USER="u", BOUNCE_IMAP_PASSWORD="p")
    with pytest.raises(ConfigError, match=r"BOUNCE_IMAP_CA_FILE: .* is not a file"):
        read(BOUNCE_IMAP_CA_FILE=str(tmp_path / "missing.pem"))
    with pytest.raises(ConfigError, match='BOUNCE_IMAP_AFTER: "move" is not one of delete, flag'):
        read(BOUNCE_IMAP_AFTER="move")
    with pytest.raises(ConfigError, match="BOUNCE_IMAP_PORT"):
        read(BOUNCE_IMAP_PORT="0")


def test_fetch_without_a_mailbox_says_what_to_set(tmp_path):
    env = procs.app_env(tmp_path, f"sqlite:///{tmp_path / 'db.sqlite3'}")
    done = _fetch(env, check=False)
    assert done.returncode == 1
    assert "BOUNCE_IMAP_HOST is not set" in done.stderr


@pytest.mark.slow
def test_a_message_that_cannot_be_stored_stays_in_the_mailbox(tmp_path, imap):
    env = _env(tmp_path, imap)
    dsn, _arf = _bounce_and_complaint(app_beside(env, tmp_path, MAIL_BOUNCE_ADDRESS=BOUNCE_ADDRESS))
    imap.deliver(dsn)
    # A database without its tables: storing fails, so nothing is deleted.
    broken = {**env, "DATABASE_URL": f"sqlite:///{tmp_path / 'empty.sqlite3'}"}
    done = _fetch(broken, check=False)
    assert done.returncode == 1
    assert "Error: message UID 1 could not be stored (see the log)" in done.stderr
    assert imap.messages() == [(dsn, "")]
    # The next run, with the database back, stores it and deletes it.
    assert "bounces: processed=1 too_large=0" in _fetch(env).stdout
    assert imap.messages() == []
