"""Header injection: CR/LF in anything that reaches mail.

Against real processes: gunicorn serves the signup form, `flask worker
--once` delivers to an SMTP server on loopback (aiosmtpd). Payloads go in
through the form (name, email, hidden fields) and, bypassing the form,
straight into the database (a lead's name and address, a class title that an
announcement and a class reminder put in their subjects). Every request is answered with
a redirect or a 4xx, never a 5xx; the SMTP server sees one recipient per
mail, each a lead's own address, and no header but ours.
"""

from __future__ import annotations

import http.cookiejar
import re
import urllib.error
import urllib.parse
import urllib.request
from email import message_from_bytes, policy

import pytest
from sqlalchemy import select

from app import create_app
from extensions import db
from models import Lead, LeadStatus, MailKind, OutboxMessage, OutboxStatus, User
from tests import procs
from tests.factories import queue_every_kind
from tests.helpers import form_fields, smtp_settings

pytestmark = pytest.mark.slow

ARTICLE = "/cspo-certification-benefits"
EVIL = "evil@attacker.example"
INJECTIONS = [
    f"x\r\nBcc: {EVIL}",
    f"x\nBcc: {EVIL}",
    f"x\rBcc: {EVIL}",
    f"x\r\n\r\n<html>{EVIL}",
    f"x\r\n Bcc: {EVIL}",
    f"x\u2028Bcc: {EVIL}",
    f"x\u0085Bcc: {EVIL}",
    f"x%0d%0aBcc:%20{EVIL}",
    f"=?utf-8?q?x=0D=0ABcc=3A_{EVIL}?=",
    "x\x00y",
    "Ann\x85Bcc: nobody",  # NEL: not a line break to SMTP, dropped all the same
]
EMAIL_INJECTIONS = [
    f"ann@example.com\r\nBcc: {EVIL}",
    f"ann@example.com\nBcc: {EVIL}",
    f"ann@example.com%0d%0aBcc:{EVIL}",
    f"ann@example.com>\r\nBcc: <{EVIL}",
    f'"ann\r\nBcc: {EVIL}"@example.com',
    f"ann@example.com, {EVIL}",
    f"ann@example.com;{EVIL}",
    f"Ann <ann@example.com>, <{EVIL}>",
    f"ann@example.com\x00{EVIL}",
]
# Line breaks around an address are whitespace: trimmed, the address is kept.
EMAIL_TRIMMED = "\r\nann@example.com\r\n"
# Our headers, and those the SMTP server adds on receipt.
ALLOWED_HEADERS = {
    "subject",
    "from",
    "to",
    "date",
    "message-id",
    "x-mail-kind",
    "list-unsubscribe",
    "list-unsubscribe-post",
    "list-id",
    "precedence",
    "auto-submitted",
    "mime-version",
    "content-type",
    "content-transfer-encoding",
    "x-peer",
    "x-mailfrom",
    "x-rcptto",
}


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


class Visitor:
    def __init__(self, base_url: str):
        self.base = base_url
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()), _NoRedirect()
        )
        with self.opener.open(base_url + ARTICLE, timeout=30) as r:
            self.fields = form_fields(r.read().decode())

    def post(self, **overrides) -> int:
        data = {**self.fields, "email": "ann@example.com", "topics": "newsletter", **overrides}
        body = urllib.parse.urlencode(data).encode()
        try:
            with self.opener.open(self.base + "/subscribe", data=body, timeout=30) as r:
                return r.status
        except urllib.error.HTTPError as exc:
            return exc.code


@pytest.fixture
def raw_smtp(smtp_server):
    """The SMTP server, also keeping each message's bytes as received."""
    smtp_server.raw = []
    original = smtp_server.handle_DATA

    async def keep_raw(server, session, envelope):
        reply = await original(server, session, envelope)
        if reply.startswith("250"):
            smtp_server.raw.append((list(envelope.rcpt_tos), envelope.original_content))
        return reply

    smtp_server.handle_DATA = keep_raw
    return smtp_server


def test_crlf_anywhere_never_reaches_a_header(tmp_path, raw_smtp):
    port = procs.free_port()
    url = f"sqlite:///{tmp_path / 'leads.sqlite3'}"
    env = procs.app_env(
        tmp_path,
        url,
        port=port,
        **smtp_settings(raw_smtp),
        FORM_MIN_SECONDS=0,
        FREQUENCY_CAP_DAYS=0,
    )
    procs.flask_db_upgrade(env)

    statuses: dict[str, int] = {}
    with procs.gunicorn(env, workers=1) as server:
        visitor = Visitor(server.url)
        for i, payload in enumerate(INJECTIONS):
            statuses[f"name {payload!r}"] = visitor.post(email=f"name{i}@example.com", name=payload)
        for payload in EMAIL_INJECTIONS:
            statuses[f"email {payload!r}"] = visitor.post(email=payload)
        trimmed = visitor.post(email=EMAIL_TRIMMED)
        for i, payload in enumerate(INJECTIONS):
            hidden = {k: payload for k in ("utm_source", "utm_campaign", "ref", "source")}
            statuses[f"hidden {payload!r}"] = visitor.post(
                email=f"hidden{i}@example.com", placement=payload, **hidden
            )
        log = server.log(tail=1_000_000)
    assert all(s == 303 or 400 <= s < 500 for s in statuses.values()), statuses
    assert "Traceback" not in log, log[-3000:]
    # The address field takes one plain address or nothing at all.
    assert all(s == 400 for k, s in statuses.items() if k.startswith("email")), statuses
    assert trimmed == 303

    # Bypassing the form: hostile text already in the database.
    settings = {"TESTING": True, "SQLALCHEMY_DATABASE_URI": url, "SECRET_KEY": env["SECRET_KEY"]}
    app = create_app(settings)
    with app.app_context():
        queue_every_kind(INJECTIONS, class_title=f"CSPO\r\nBcc: {EVIL}", domain="direct.example")
        bad = Lead(email=f"victim@direct.example\r\nBcc: {EVIL}", status=LeadStatus.PENDING)
        db.session.add(bad)
        db.session.flush()
        db.session.add(OutboxMessage(kind=MailKind.CONFIRMATION, lead_id=bad.id))
        db.session.commit()
        # Leads, and the staff addresses the staff kinds go to.
        leads = set(db.session.execute(select(Lead.email)).scalars())
        leads |= set(db.session.execute(select(User.email)).scalars())
        db.engine.dispose()

    counts = procs.worker_once(env)
    assert counts["sent"] == len(raw_smtp.messages) > len(INJECTIONS) * 7

    for rcpts, raw in raw_smtp.raw:
        msg = message_from_bytes(raw, policy=policy.default)
        kind = msg["X-Mail-Kind"]
        assert rcpts == [msg["To"].addresses[0].addr_spec], (kind, rcpts, msg["To"])
        assert rcpts[0] in leads and EVIL not in rcpts[0], (kind, rcpts)
        names = {k.lower() for k in msg}
        assert names <= ALLOWED_HEADERS, (kind, names - ALLOWED_HEADERS)
        for name, value in msg.items():
            assert EVIL not in str(value) or name == "Subject", (kind, name, value)
            assert "\n" not in str(value) and "\r" not in str(value), (kind, name, value)
        head = raw.split(b"\r\n\r\n", 1)[0]
        assert not re.search(rb"^(bcc|cc)\s*:", head, re.I | re.M), (kind, head)
    assert not any(EVIL in r for rcpts, _ in raw_smtp.raw for r in rcpts)

    # The address that could not be a header was never sent to: it failed,
    # with the reason on the row, and stopped nothing else.
    with app.app_context():
        row = db.session.execute(
            select(OutboxMessage).join(Lead).where(Lead.email.like("victim@direct.example%"))
        ).scalar_one()
        assert row.status == OutboxStatus.FAILED, (row.status, row.last_error)
        assert row.last_error.startswith("render:")
        db.engine.dispose()
