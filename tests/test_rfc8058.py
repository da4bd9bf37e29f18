"""RFC 8058 one-click unsubscribe, on every kind of mail the worker sends.

Marketing mail (welcome, announcement, class reminder, classes follow-up)
carries exactly one `List-Unsubscribe: <http(s) URL>` and exactly
`List-Unsubscribe-Post: List-Unsubscribe=One-Click`; transactional mail
(confirmation, reminder to confirm, already subscribed) carries neither. The
URL from the header, POSTed the way a mail provider does (urlencoded or
multipart, no cookie, no CSRF token), answers 2xx, never a redirect, and
unsubscribes; a GET never does; a repeated POST is harmless.

The mail goes through the real worker code and a real SMTP server on
loopback (aiosmtpd); the headers are checked as parsed and as the bytes a
mail provider receives.
"""

from __future__ import annotations

import re
from email.message import EmailMessage

import pytest
from sqlalchemy import func, select

from extensions import db
from models import (
    ConsentEvent,
    ConsentKind,
    Lead,
    LeadStatus,
    MailKind,
    OutboxMessage,
    OutboxStatus,
)
from models.outbox import TRANSACTIONAL_KINDS
from services import clock
from services.delivery.worker import Worker
from tests.factories import MARKETING_KINDS, queue_every_kind
from tests.helpers import smtp_settings

SITE = "https://www.scrum-academy.example"
ONE_URL = re.compile(r"<(https?://[^<>\s,]+)>")


def raw_headers(raw: bytes) -> list[tuple[str, str]]:
    """(name, unfolded value) of each top-level header, as sent on the wire."""
    head = raw.split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0].decode("ascii")
    out: list[tuple[str, str]] = []
    for line in re.split(r"\r?\n", head):
        if line[:1] in (" ", "\t") and out:
            out[-1] = (out[-1][0], out[-1][1] + line)
        elif line:
            name, _, value = line.partition(":")
            out.append((name, value.strip()))
    return out


# --- The mail, sent once for the module's tests.


@pytest.fixture
def app_config(app_config, smtp_server):
    return {
        **app_config,
        "SITE_URL": SITE,
        **smtp_settings(smtp_server),
        "FREQUENCY_CAP_DAYS": 0,
        "WTF_CSRF_ENABLED": True,
    }


@pytest.fixture
def sent(app, smtp_server) -> list[tuple[list[str], EmailMessage, bytes]]:
    """(recipients, parsed message, raw bytes) of one mail of every kind."""
    raw: list[bytes] = []

    original = smtp_server.handle_DATA

    async def keep_raw(server, session, envelope):
        raw.append(envelope.original_content or envelope.content)
        return await original(server, session, envelope)

    smtp_server.handle_DATA = keep_raw
    with app.app_context():
        queue_every_kind(["Ann"])
        db.session.commit()
        total = Worker(app).run(once=True)
    assert (total.sent, total.failed, total.skipped) == (len(MailKind), 0, 0), total
    return [
        (rcpts, msg, body) for (_, rcpts, msg), body in zip(smtp_server.messages, raw, strict=True)
    ]


def by_kind(sent) -> dict[MailKind, tuple[list[str], EmailMessage, bytes]]:
    out = {MailKind(msg["X-Mail-Kind"]): (rcpts, msg, raw) for rcpts, msg, raw in sent}
    assert set(out) == set(MailKind), "a kind of mail was not sent"
    return out


def withdrawals(app, email: str) -> list[str]:
    with app.app_context():
        return list(
            db.session.execute(
                select(ConsentEvent.channel)
                .join(Lead)
                .where(Lead.email == email, ConsentEvent.kind == ConsentKind.WITHDRAWN)
            ).scalars()
        )


def status_of(app, email: str) -> LeadStatus:
    with app.app_context():
        return db.session.execute(select(Lead.status).where(Lead.email == email)).scalar_one()


# --- Headers.


def test_marketing_mail_has_both_headers_exactly_and_transactional_mail_neither(app, sent):
    for kind, (rcpts, msg, _) in by_kind(sent).items():
        unsub = msg.get_all("List-Unsubscribe") or []
        post = msg.get_all("List-Unsubscribe-Post") or []
        if kind in TRANSACTIONAL_KINDS:
            assert (unsub, post) == ([], []), kind
            continue
        assert len(unsub) == 1 and len(post) == 1, (kind, unsub, post)
        (url,) = ONE_URL.findall(unsub[0])
        assert unsub[0] == f"<{url}>", (kind, unsub[0])  # no mailto configured
        assert url.startswith(f"{SITE}/unsubscribe/"), (kind, url)
        assert post[0] == "List-Unsubscribe=One-Click", kind
        # The link in the header is the lead's own, also shown in both parts.
        assert rcpts == ["confirmed0@example.com"]
        for part in ("plain", "html"):
            assert url in msg.get_body((part,)).get_content(), (kind, part)


@pytest.mark.parametrize("settings", [{"MAIL_UNSUBSCRIBE_MAILTO": "unsubscribe@example.com"}])
def test_a_configured_mailto_comes_after_the_https_url(settings, app, smtp_server):
    app.config.update(settings)
    with app.app_context():
        queue_every_kind(["Ann"])
        db.session.commit()
        Worker(app).run(once=True)
    welcome = next(m for _, _, m in smtp_server.messages if m["X-Mail-Kind"] == "welcome")
    value = welcome["List-Unsubscribe"]
    assert re.fullmatch(
        rf"<{re.escape(SITE)}/unsubscribe/[^<>\s,]+>, "
        r"<mailto:unsubscribe@example\.com\?subject=unsubscribe>",
        value,
    ), value


def test_the_headers_are_plain_ascii_on_the_wire(app, sent):
    for kind, (_, _, raw) in by_kind(sent).items():
        if kind in TRANSACTIONAL_KINDS:
            continue
        headers = dict(raw_headers(raw))
        assert "=?" not in headers["List-Unsubscribe"], (kind, headers["List-Unsubscribe"])
        assert ONE_URL.fullmatch(headers["List-Unsubscribe"]), (kind, headers["List-Unsubscribe"])
        assert headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


# --- The one-click POST, with the URL from each mail's header.


def _path(url: str) -> str:
    return url.removeprefix(SITE)


@pytest.mark.parametrize("encoding", ["urlencoded", "multipart"])
def test_one_click_from_every_marketing_mail(app, sent, encoding):
    urls = {
        kind: ONE_URL.findall(msg["List-Unsubscribe"])[0]
        for kind, (_, msg, _) in by_kind(sent).items()
        if kind in MARKETING_KINDS
    }
    assert set(urls) == MARKETING_KINDS
    email = "confirmed0@example.com"
    # A mail provider: no cookie jar, no CSRF token, does not follow redirects.
    provider = app.test_client(use_cookies=False)
    for url in urls.values():
        # GET (and HEAD: link scanners) never unsubscribes.
        assert provider.get(_path(url)).status_code == 200
        assert provider.head(_path(url)).status_code == 200
    assert status_of(app, email) == LeadStatus.CONFIRMED
    assert withdrawals(app, email) == []

    for kind, url in sorted(urls.items()):
        if encoding == "urlencoded":
            r = provider.post(
                _path(url),
                data="List-Unsubscribe=One-Click",
                content_type="application/x-www-form-urlencoded",
            )
        else:
            r = provider.post(
                _path(url),
                data={"List-Unsubscribe": "One-Click"},
                content_type="multipart/form-data",
            )
        where = f"{kind} {encoding}"
        assert 200 <= r.status_code < 300, (where, r.status_code)
        assert "Location" not in r.headers, where
        assert not any(c.startswith("session=") for c in r.headers.getlist("Set-Cookie")), where
        assert "You are unsubscribed" in r.get_data(as_text=True), where
        assert status_of(app, email) == LeadStatus.UNSUBSCRIBED, where
    # Four POSTs (one per mail), one withdrawal on record, from the first.
    assert withdrawals(app, email) == ["one-click"]


def test_one_click_bodies_providers_might_send_all_unsubscribe(app, sent):
    """RFC 8058 names the body; a provider that sends less must not be left
    with an error, and nothing may answer with a redirect."""
    (url,) = ONE_URL.findall(by_kind(sent)[MailKind.WELCOME][1]["List-Unsubscribe"])
    provider = app.test_client(use_cookies=False)
    for ctype, body in [
        ("application/x-www-form-urlencoded", b""),
        ("text/plain", b"List-Unsubscribe=One-Click"),
        (None, b""),
        ("application/x-www-form-urlencoded", b"List-Unsubscribe=One-Click&x=%FF"),
    ]:
        r = provider.post(_path(url), data=body, content_type=ctype)
        assert r.status_code == 200, (ctype, body)
        assert "Location" not in r.headers
    assert status_of(app, "confirmed0@example.com") == LeadStatus.UNSUBSCRIBED
    assert len(withdrawals(app, "confirmed0@example.com")) == 1


def test_after_one_click_the_worker_sends_no_more_marketing_mail(app, sent, smtp_server):
    (url,) = ONE_URL.findall(by_kind(sent)[MailKind.ANNOUNCEMENT][1]["List-Unsubscribe"])
    provider = app.test_client(use_cookies=False)
    assert provider.post(_path(url), data={"List-Unsubscribe": "One-Click"}).status_code == 200
    before = len(smtp_server.messages)
    with app.app_context():
        lead_id = db.session.execute(
            select(Lead.id).where(Lead.email == "confirmed0@example.com")
        ).scalar_one()
        for kind in (MailKind.WELCOME, MailKind.CLASSES_FOLLOWUP):
            db.session.add(
                OutboxMessage(
                    kind=kind,
                    lead_id=lead_id,
                    status=OutboxStatus.QUEUED,
                    send_after=clock.now(),
                    created_at=clock.now(),
                    attempts=0,
                )
            )
        db.session.commit()
        total = Worker(app).run(once=True)
        skipped = db.session.scalar(
            select(func.count())
            .select_from(OutboxMessage)
            .where(OutboxMessage.status == OutboxStatus.SKIPPED)
        )
    assert (total.sent, total.skipped) == (0, 2)
    assert skipped == 2
    assert len(smtp_server.messages) == before


def test_a_doubled_slash_in_the_unsubscribe_path_is_a_404_not_a_redirect(client):
    # Found by Hypothesis: Werkzeug redirected `/unsubscribe//x` with a 308.
    for method in (client.get, client.post):
        r = method("/unsubscribe//%20")
        assert r.status_code == 404
        assert "Location" not in r.headers
