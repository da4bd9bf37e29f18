"""services/mail/mime.py: what a mail reader and a mail server see.

mime.py builds our mails with the stdlib's email.mime classes (compat32),
after checking each header value itself. Every test here reads the bytes back
the way the other side does, with the stdlib parser
(`email.message_from_bytes(data, policy=email.policy.default)`), or looks at
the raw octets on the wire: CRLF line ends, lines of at most 998 octets
(78 in quoted-printable), encoded words that decode to the original header
text. Nothing is compared with strings of our own code.

Covered: mime.build and its encodings (7bit, 8bit, quoted-printable), the
header helpers (header, one_line, addr_spec, address_header), compose() for
every MailKind (directly and through the worker to a real SMTP server), and
SmtpTransport to aiosmtpd on loopback (the bytes after dot-unstuffing).
"""

from __future__ import annotations

import email
import email.policy
import email.utils
import itertools
import re
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage

import pytest
from sqlalchemy import select

from extensions import db
from models import Announcement, Lead, MailKind, OutboxMessage
from models.outbox import TRANSACTIONAL_KINDS
from services.delivery.worker import Worker
from services.mail import mime
from services.mail.compose import Composed, compose
from services.mail.mailer import DeliveryError, OutgoingMail, SmtpTransport
from tests.delivery_procs import Recorder, smtp_on_loopback
from tests.factories import queue_every_kind
from tests.helpers import smtp_settings

GERMAN = "Grüße aus München – „Anführungszeichen“ und “quotes” · ½ €"
EMOJI = "Neue Termine 🎉🚀 – bis bald 👋🏽"
SITE_NAME = "Scrum Akademie München"
SENDER = f"{SITE_NAME} <hello@scrum-akademie.example>"
ONE_EACH = ("From", "To", "Subject", "Date", "Message-ID", "MIME-Version")


# --- Reading the bytes back.


def parse(data: bytes) -> EmailMessage:
    return email.message_from_bytes(data, policy=email.policy.default)


def wire_lines(data: bytes) -> list[bytes]:
    """The raw lines, after checking that every one ends with CRLF and holds
    no bare CR or LF and at most 998 octets (RFC 5322 2.1.1, 2.3)."""
    assert data.endswith(b"\r\n"), data[-20:]
    lines = data.split(b"\r\n")[:-1]
    for n, line in enumerate(lines):
        assert b"\r" not in line and b"\n" not in line, (n, line[:80])
        assert len(line) <= mime.MAX_LINE, (n, len(line), line[:80])
    return lines


def raw_parts(data: bytes, msg: EmailMessage) -> dict[str, tuple[list[bytes], list[bytes]]]:
    """{"plain"|"html": (raw header lines, raw body lines)} of the two parts."""
    delimiter = b"--" + msg.get_boundary().encode()
    lines = wire_lines(data)
    starts = [i for i, line in enumerate(lines) if line.startswith(delimiter)]
    assert len(starts) == 3 and lines[starts[-1]] == delimiter + b"--", starts
    out = {}
    for a, b in itertools.pairwise(starts):
        chunk = lines[a + 1 : b]
        blank = chunk.index(b"")
        head, body = chunk[:blank], chunk[blank + 1 :]
        subtype = "html" if b"Content-Type: text/html" in head[0] else "plain"
        out[subtype] = (head, body)
    return out


def content(part: EmailMessage) -> str:
    """A decoded text part, line ends as in Python text."""
    return part.get_content().replace("\r\n", "\n")


def as_sent(text: str) -> str:
    """What a text part holds: the text, ending with one line break."""
    return text if text.endswith("\n") else text + "\n"


def cte(part: EmailMessage) -> str:
    return part["Content-Transfer-Encoding"]


def roundtrip(text: str, html: str, headers: list[tuple[str, str]] | None = None):
    """(bytes, parsed message, plain part, html part) of a built mail."""
    data = mime.build(headers or [("Subject", mime.header("Subject", "test"))], text, html)
    msg = parse(data)
    assert msg.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in msg.iter_parts()] == ["text/plain", "text/html"]
    return data, msg, msg.get_body(("plain",)), msg.get_body(("html",))


def header_value(value: str, name: str = "Subject"):
    """A header value (as mime.header wrote it) as a reader decodes it."""
    return parse(f"{name}: {value}\r\n\r\nbody\r\n".encode())[name]


# --- 1. mime.build round trip.


def test_build_round_trip_headers_parts_and_line_ends():
    text = "Hello Ann,\n\nthe next class starts soon.\n\n-- \nScrum Academy\n"
    html = "<!doctype html>\n<html><body>\n<p>Hello Ann,</p>\n<p>soon.</p>\n</body></html>"
    headers = [
        ("Subject", mime.header("Subject", "Your class is coming up")),
        ("From", mime.address_header("From", "Scrum Academy", "hello@example.com")),
        ("To", mime.mailbox("ann@example.com")),
        ("Date", mime.header("Date", "Tue, 01 Sep 2026 09:00:00 +0000")),
        ("Message-ID", mime.header("Message-ID", "<42.1788253200.outbox@example.com>")),
        ("X-Mail-Kind", mime.header("X-Mail-Kind", "class_reminder")),
    ]
    data, msg, plain, rich = roundtrip(text, html, headers)

    assert msg["Subject"] == "Your class is coming up"
    assert msg["From"].addresses[0].display_name == "Scrum Academy"
    assert msg["From"].addresses[0].addr_spec == "hello@example.com"
    assert msg["To"].addresses[0].addr_spec == "ann@example.com"
    assert msg["Date"].datetime == datetime(2026, 9, 1, 9, tzinfo=UTC)
    assert msg["Message-ID"] == "<42.1788253200.outbox@example.com>"
    assert msg["X-Mail-Kind"] == "class_reminder"
    assert msg["MIME-Version"] == "1.0"
    for name in (*ONE_EACH, "X-Mail-Kind", "Content-Type"):
        assert len(msg.get_all(name)) == 1, name
    assert msg.defects == [] and plain.defects == [] and rich.defects == []

    assert content(plain) == as_sent(text)
    assert content(rich) == as_sent(html)
    assert plain.get_content_charset() == rich.get_content_charset() == "utf-8"
    wire_lines(data)  # CRLF everywhere, no bare CR or LF, <= 998 octets
    assert data.isascii()
    assert b"\r\n\r\n" in data and data.index(b"\r\n\r\n") < data.index(b"--=_")


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("one\r\ntwo\r\n", "one\ntwo\n"),
        ("one\rtwo", "one\ntwo\n"),
        ("one\n\n\ntwo\n\n", "one\n\n\ntwo\n\n"),
        ("", "\n"),
        ("trailing spaces   \n\ttab\n", "trailing spaces   \n\ttab\n"),
    ],
    ids=["crlf", "bare-cr", "blank-lines", "empty", "whitespace"],
)
def test_line_ends_in_the_text_become_crlf_on_the_wire(given, expected):
    data, _, plain, rich = roundtrip(given, given)
    wire_lines(data)
    assert content(plain) == expected
    assert content(rich) == expected


# --- 2. Which encoding each body gets.


def test_ascii_bodies_are_7bit():
    data, _, plain, rich = roundtrip("Hello\nWorld " * 50, "<p>Hello</p>")
    assert cte(plain) == cte(rich) == "7bit"
    assert data.isascii()
    assert content(plain) == as_sent("Hello\nWorld " * 50)


@pytest.mark.parametrize("text", [GERMAN, EMOJI, "日本語のテキスト", "Ünïcödé\n" * 200])
def test_non_ascii_bodies_with_short_lines_are_8bit(text):
    html = f"<p>{text}</p>"
    data, _, plain, rich = roundtrip(text, html)
    assert cte(plain) == cte(rich) == "8bit"
    assert content(plain) == as_sent(text)
    assert content(rich) == as_sent(html)
    assert text.replace("\n", "\r\n").encode() in data  # the UTF-8 octets, unencoded
    wire_lines(data)


def test_a_line_of_exactly_998_octets_stays_8bit_and_999_does_not():
    at_limit = "ü" * 499  # 998 octets in UTF-8
    assert len(at_limit.encode()) == mime.MAX_LINE
    _, _, plain, _ = roundtrip(at_limit, "<p>x</p>")
    assert cte(plain) == "8bit"
    assert content(plain) == as_sent(at_limit)
    _, _, plain, _ = roundtrip("a" * 998, "<p>x</p>")
    assert cte(plain) == "7bit"
    _, _, plain, _ = roundtrip("a" * 999, "<p>x</p>")
    assert cte(plain) == "quoted-printable"


def _long_paragraph(words: str) -> str:
    text = ""
    while len(text) < 3000:
        text += words + " "
    return f"<p>{text[:3000]}</p>"


@pytest.mark.parametrize(
    "html",
    [
        pytest.param(_long_paragraph("The next CSPO class starts soon."), id="ascii"),
        pytest.param(_long_paragraph("word") + "\n<p>..x</p>\n", id="ascii-dots"),
        pytest.param(
            _long_paragraph("Grüße aus München, schöne Woche."),
            id="latin1-range",
        ),
        pytest.param(
            "<p>Grüße</p>\n" + _long_paragraph("The next CSPO class starts soon."),
            id="ascii-long-line-umlaut-elsewhere",
        ),
        pytest.param(
            _long_paragraph("Neue Termine – „bald“ 🎉"),
            id="above-latin1",
        ),
        pytest.param(
            _long_paragraph("line\u2028separator"),
            id="line-separator",
        ),
    ],
)
def test_a_line_over_998_octets_goes_quoted_printable_and_decodes_exactly(html):
    text = html.replace("<p>", "").replace("</p>", "")
    data, msg, plain, rich = roundtrip(text, html)
    assert cte(plain) == cte(rich) == "quoted-printable"
    assert content(rich) == as_sent(html)
    assert content(plain) == as_sent(text)
    wire_lines(data)
    for subtype, (_, body) in raw_parts(data, msg).items():
        for line in body:
            assert line.isascii(), (subtype, line[:80])
            assert len(line) <= 78, (subtype, len(line), line[:80])


def test_quoted_printable_keeps_trailing_whitespace_and_equals_signs():
    text = "a=b " * 400 + "  \nnext line\t\n= at start\n"
    _, _, plain, _ = roundtrip(text, "<p>x</p>")
    assert cte(plain) == "quoted-printable"
    assert content(plain) == text


# --- 3. Text that looks like mail structure.

TRICKY = (
    ".a line starting with a dot\n"
    "..two dots\n"
    ".\n"
    "From the team: a line starting with From\n"
    ">From quoted\n"
    "--=_\n"
    "--=_0123456789abcdef0123456789abcdef\n"
    "--=_0123456789abcdef0123456789abcdef--\n"
    "--\n"
    "Content-Type: text/html\n"
    "\n"
    "Subject: not a header\n"
)


@pytest.mark.parametrize("long_line", [False, True], ids=["8bit", "quoted-printable"])
def test_dots_from_lines_and_boundary_lookalikes_parse_to_the_original(long_line):
    text = TRICKY + ("x" * 1200 if long_line else "Grüße") + "\n"
    html = "<pre>\n" + text + "</pre>"
    data, msg, plain, rich = roundtrip(text, html)
    assert cte(plain) == ("quoted-printable" if long_line else "8bit")
    assert content(plain) == as_sent(text)
    assert content(rich) == as_sent(html)
    assert msg["Subject"] == "test" and len(msg.get_all("Subject")) == 1
    assert len(list(msg.iter_parts())) == 2
    assert not msg.get_boundary().endswith("0123456789abcdef0123456789abcdef")
    wire_lines(data)


# --- 4. Header helpers.


@pytest.mark.parametrize(
    "subject",
    [
        GERMAN,
        EMOJI,
        "Straße",
        "ÄÖÜ äöü ß",
        "  leading and trailing spaces ümlaut  ",
        "two  spaces  ünd  more",
        ("Grüße aus München: die nächsten CSPO-Kurse 🎉 " * 5)[:200],
        "🎉" * 200,
        "=?utf-8?q?looks_encoded?= and ü",
        'Müller, Jörg <no@address> "quoted"',
    ],
    ids=lambda s: s[:20],
)
def test_non_ascii_subject_becomes_encoded_words_that_decode_back(subject):
    value = mime.header("Subject", subject)
    line = f"Subject: {value}"
    assert line.isascii()
    assert "=?utf-8?" in line
    for raw in line.split("\r\n"):
        assert len(raw) <= 78, (len(raw), raw)
    assert header_value(value) == subject
    # And inside a whole mail.
    data, msg, _, _ = roundtrip("x", "<p>x</p>", [("Subject", value)])
    assert msg["Subject"] == subject
    wire_lines(data)


def test_ascii_headers_stay_as_given_on_one_line():
    subject = "Your CSPO class is coming up: " + "x" * 150
    assert mime.header("Subject", subject) == subject
    data, msg, _, _ = roundtrip("x", "<p>x</p>", [("Subject", mime.header("Subject", subject))])
    assert f"\r\nSubject: {subject}\r\n".encode() in data  # one line, as given
    assert msg["Subject"] == subject
    with pytest.raises(mime.HeaderError):
        mime.header("Subject", "x" * 1000)


@pytest.mark.parametrize(
    "bad", ["\r", "\n", "\r\n", "\x00", "\x85", "\u2028", "\u2029", "\t", "\x7f", "\x1b"]
)
@pytest.mark.parametrize("base", ["Hello", "Grüße"])
def test_line_breaks_and_controls_in_a_header_value_raise(bad, base):
    with pytest.raises(mime.HeaderError):
        mime.header("Subject", f"{base}{bad}Bcc: evil@attacker.example")


def test_one_line_turns_breaks_and_controls_into_single_spaces():
    assert mime.one_line("a\rb\nc\x00d\x85e\u2028f\u2029g\th") == "a b c d e f g h"
    assert mime.one_line("  Hello\r\n\r\nBcc: x@y  ") == "Hello Bcc: x@y"
    assert mime.one_line(GERMAN) == GERMAN
    for value in ("x\r\nBcc: y", "Grüße\x85Bcc: y", "a\u2028b"):
        assert header_value(mime.header("Subject", mime.one_line(value))) == mime.one_line(value)


@pytest.mark.parametrize(
    "address",
    [
        "ann@example.com",
        "first.last+tag@mail.sub.example.co.uk",
        "o'brien@example.ie",
        "x_y-z=1@example.com",
        "UPPER@EXAMPLE.COM",
    ],
)
def test_addr_spec_accepts_plain_addresses(address):
    assert mime.addr_spec(address) == address
    _, msg, _, _ = roundtrip("x", "<p>x</p>", [("To", mime.mailbox(address))])
    assert [a.addr_spec for a in msg["To"].addresses] == [address]


@pytest.mark.parametrize(
    "address",
    [
        "",
        None,
        "ann@example.com\r\nBcc: evil@attacker.example",
        "ann@example.com\n",
        "ann@example.com\r",
        "ann @example.com",
        "ann@ example.com",
        "ann@example.com, evil@attacker.example",
        "ann@example.com,evil@attacker.example",
        "<ann@example.com>",
        "Ann <ann@example.com>",
        "ann@example.com>",
        "a@b@example.com",
        "annexample.com",
        "@example.com",
        "ann@",
        "ann@example.com;evil@attacker.example",
        '"ann"@example.com',
        "ann@example.com\x00",
        "ann\t@example.com",
    ],
)
def test_addr_spec_refuses_anything_but_one_plain_address(address):
    with pytest.raises(mime.HeaderError):
        mime.addr_spec(address)
    with pytest.raises(mime.HeaderError):
        mime.mailbox(address)


@pytest.mark.parametrize(
    "name",
    [
        SITE_NAME,
        "Scrum Academy",
        "Doe, Jane",
        'Jane "JD" Doe',
        'Müller, Jörg "der Trainer"',
        "Back\\slash (comment) <angle>",
        "Grüße 🎉",
    ],
)
def test_address_header_parses_back_to_name_and_address(name):
    value = mime.address_header("From", name, "hello@example.com")
    (address,) = header_value(value, "From").addresses
    assert address.display_name == name
    assert address.addr_spec == "hello@example.com"


LONG_NAME = "Scrum Akademie München – Kurse für Product Owner und Scrum Master"


@pytest.mark.parametrize(
    ("name", "address"), [("From", "hello@example.com"), ("List-Id", "updates.example.com")]
)
def test_a_long_non_ascii_display_name_decodes_back_in_rfc_2047_words(name, address):
    value = mime.address_header(name, LONG_NAME, address)
    data, msg, _, _ = roundtrip("x", "<p>x</p>", [(name, value)])
    # RFC 2047 6.2: the fold between two encoded words is not part of the
    # text, but the stdlib's address parser keeps it (one extra space).
    assert LONG_NAME in " ".join(str(msg[name]).split())
    head = data[: data.index(b"\r\n\r\n")].decode("ascii")
    (line,) = re.findall(rf"^{name}: .*?(?=\r\n\S)", head + "\r\nEnd", re.M | re.S)
    for word in re.findall(r"=\?[^?\s]+\?[bBqQ]\?[^?\s]*\?=", line):
        assert len(word) <= 75, (len(word), word)
    for raw in line.split("\r\n"):
        assert len(raw) <= 78, (len(raw), raw)


def test_address_header_refuses_a_bad_address_and_takes_no_name():
    with pytest.raises(mime.HeaderError):
        mime.address_header("From", "Ann", "ann@example.com>, <evil@attacker.example")
    (address,) = header_value(mime.address_header("From", "", "a@example.com"), "From").addresses
    assert (address.display_name, address.addr_spec) == ("", "a@example.com")


@pytest.mark.parametrize(
    "description",
    [SITE_NAME, "Scrum Academy", "Grüße 🎉 Newsletter", 'Scrum "Academy", Berlin'],
)
def test_list_id_description_decodes_back(description):
    line = mime.address_header("List-Id", description, "updates.example.com")
    assert line.isascii()
    value = str(header_value(line, "List-Id"))
    assert email.utils.parseaddr(value) == (description, "updates.example.com"), value
    if "," not in description and '"' not in description:
        assert value == f"{description} <updates.example.com>"


def test_list_id_description_is_kept_to_one_line():
    line = mime.address_header("List-Id", "Scrum\r\nBcc: x@y Akademie", "updates.example.com")
    assert "\r\n" not in line
    value = str(header_value(line, "List-Id"))
    assert email.utils.parseaddr(value) == ("Scrum Bcc: x@y Akademie", "updates.example.com")


# --- 5. compose() for every kind of mail.


def _check_mail(data: bytes, mail: OutgoingMail) -> EmailMessage:
    """The common shape of every mail we send, as a reader parses it."""
    msg = parse(data)
    for name in ONE_EACH:
        assert len(msg.get_all(name) or []) == 1, (mail.kind, name, msg.get_all(name))
    assert msg["MIME-Version"] == "1.0"
    assert msg.get_content_type() == "multipart/alternative", mail.kind
    assert [p.get_content_type() for p in msg.iter_parts()] == ["text/plain", "text/html"]
    for subtype in ("plain", "html"):
        body = msg.get_body((subtype,))
        assert body is not None and content(body).strip(), (mail.kind, subtype)
        assert "\ufffd" not in content(body), (mail.kind, subtype)
    assert msg["Message-ID"] == mail.message_id
    (to,) = msg["To"].addresses
    assert to.addr_spec == mail.recipient
    (sender,) = msg["From"].addresses
    assert sender.addr_spec == mail.sender
    assert msg["X-Mail-Kind"] == mail.kind
    when = msg["Date"].datetime
    assert when.tzinfo is not None and abs(when - datetime.now(UTC)) < timedelta(minutes=5)
    wire_lines(data)
    return msg


def _compose_every_kind(app, **queue) -> dict[MailKind, tuple[Composed, str]]:
    """{kind: (composed mail, its recipient: the lead's address, or the
    staff address of mail to staff)}, composed in an app context."""
    with app.app_context():
        queue_every_kind(["Ann Müller"], **queue)
        db.session.commit()
        out = {}
        for row in db.session.scalars(select(OutboxMessage).order_by(OutboxMessage.id)):
            lead = db.session.get(Lead, row.lead_id) if row.lead_id else None
            out[MailKind(row.kind)] = (compose(row, lead), lead.email if lead else row.to_email)
    assert set(out) == set(MailKind)
    return out


def test_compose_every_kind_parses_to_one_of_each_header_and_two_parts(app):
    app.config.update(
        SITE_NAME="Scrum Academy", MAIL_DEFAULT_SENDER="Scrum Academy <hello@scrum-academy.example>"
    )
    for kind, (composed, lead_email) in _compose_every_kind(app).items():
        msg = _check_mail(composed.mail.data, composed.mail)
        assert composed.mail.kind == kind.value
        assert composed.mail.recipient == lead_email
        assert msg["Subject"] == composed.subject
        assert composed.mail.sender == "hello@scrum-academy.example"
        if kind in TRANSACTIONAL_KINDS:
            assert msg["List-Id"] is None
        else:
            assert len(msg.get_all("List-Id")) == 1


def test_compose_with_non_ascii_site_name_sender_and_class_title(app):
    app.config.update(SITE_NAME=SITE_NAME, MAIL_DEFAULT_SENDER=SENDER)
    title = "CSPO in München – „Grüße“ 🎉"
    for kind, (composed, _) in _compose_every_kind(app, class_title=title).items():
        msg = _check_mail(composed.mail.data, composed.mail)
        (sender,) = msg["From"].addresses
        assert sender.display_name == SITE_NAME, kind
        assert sender.addr_spec == "hello@scrum-akademie.example"
        assert msg["Subject"] == composed.subject, kind
        if kind in (MailKind.CLASS_REMINDER, MailKind.ANNOUNCEMENT):
            assert title in msg["Subject"], (kind, msg["Subject"])
        if kind in TRANSACTIONAL_KINDS:
            assert msg["List-Id"] is None
        else:
            list_id = str(msg["List-Id"])
            assert list_id == f"{SITE_NAME} <updates.scrum-akademie.example>", (kind, list_id)
        if kind in (MailKind.CONFIRMATION, MailKind.CONFIRM_REMINDER):
            assert SITE_NAME in content(msg.get_body(("plain",))), kind
            assert SITE_NAME in content(msg.get_body(("html",))), kind


def test_compose_a_german_announcement_with_a_long_paragraph(app):
    """A Markdown paragraph is one line of HTML: over 998 octets it goes
    quoted-printable, and the umlauts in it must survive."""
    paragraph = (
        "Grüße aus München, die nächsten Kurse für Product Owner stehen fest. " * 30
    ).strip()
    with app.app_context():
        queue_every_kind(["Ann"])
        ann = db.session.scalars(select(Announcement)).one()
        ann.body = "Hallo {{ first_name }},\n\n" + paragraph + "\n"
        db.session.commit()
        row = db.session.scalars(
            select(OutboxMessage).where(OutboxMessage.kind == MailKind.ANNOUNCEMENT)
        ).one()
        composed = compose(row, db.session.get(Lead, row.lead_id))
    msg = parse(composed.mail.data)
    html = msg.get_body(("html",))
    assert cte(html) == "quoted-printable"
    assert paragraph in content(html)
    assert paragraph in content(msg.get_body(("plain",)))


def test_the_worker_sends_every_kind_to_a_real_smtp_server(app, smtp_server):
    app.config.update(
        smtp_settings(smtp_server),
        SITE_NAME=SITE_NAME,
        MAIL_DEFAULT_SENDER=SENDER,
        FREQUENCY_CAP_DAYS=0,
    )
    raw: list[tuple[bytes, list[str]]] = []
    original = smtp_server.handle_DATA

    async def keep_raw(server, session, envelope):
        raw.append((envelope.original_content, list(envelope.mail_options)))
        return await original(server, session, envelope)

    smtp_server.handle_DATA = keep_raw
    with app.app_context():
        queue_every_kind(["Ann Müller"], class_title="Kurs für Product Owner")
        db.session.commit()
        total = Worker(app).run(once=True)
        message_ids = {
            MailKind(row.kind): row.id for row in db.session.scalars(select(OutboxMessage))
        }
    assert (total.sent, total.failed, total.skipped) == (len(MailKind), 0, 0), total
    assert len(smtp_server.messages) == len(raw) == len(MailKind)

    kinds = set()
    for (mail_from, rcpts, parsed), (data, options) in zip(smtp_server.messages, raw, strict=True):
        msg = parse(data)
        kind = MailKind(msg["X-Mail-Kind"])
        kinds.add(kind)
        (to,) = msg["To"].addresses
        assert rcpts == [to.addr_spec], kind
        assert mail_from == msg["From"].addresses[0].addr_spec == "hello@scrum-akademie.example"
        assert msg["From"].addresses[0].display_name == SITE_NAME
        assert msg["Message-ID"].startswith(f"<{message_ids[kind]}.")
        mail = OutgoingMail(mail_from, rcpts[0], data, msg["Message-ID"], kind.value)
        _check_mail(data, mail)
        assert parsed["Message-ID"] == msg["Message-ID"]
        assert ("BODY=8BITMIME" in options) == (not data.isascii()), (kind, options)
        if kind not in TRANSACTIONAL_KINDS:
            assert str(msg["List-Id"]) == f"{SITE_NAME} <updates.scrum-akademie.example>"
    assert kinds == set(MailKind)


# --- 6. SmtpTransport to a real SMTP server: the bytes arrive as sent.


@pytest.fixture
def raw_smtp(smtp_server):
    """The SMTP server, also keeping each envelope as received (after the
    DATA dot-unstuffing)."""
    smtp_server.envelopes = []
    original = smtp_server.handle_DATA

    async def keep_raw(server, session, envelope):
        smtp_server.envelopes.append(envelope)
        return await original(server, session, envelope)

    smtp_server.handle_DATA = keep_raw
    return smtp_server


DOTTY = (
    ".leading dot\n"
    "..two leading dots\n"
    ".\n"
    "From the team\n"
    "Grüße aus München 🎉 – “quotes”\n"
    "\n"
    ". \n"
    "last line\n"
)


def _mail(text: str, html: str, recipient: str = "ann@example.com") -> OutgoingMail:
    headers = [
        ("Subject", mime.header("Subject", "Grüße 🎉")),
        ("From", mime.address_header("From", SITE_NAME, "hello@example.com")),
        ("To", mime.mailbox(recipient)),
        ("Message-ID", mime.header("Message-ID", "<1.2.outbox@example.com>")),
    ]
    data = mime.build(headers, text, html)
    return OutgoingMail("hello@example.com", recipient, data, "<1.2.outbox@example.com>")


def _send(server, mail: OutgoingMail) -> None:
    transport = SmtpTransport(server.host, server.port, timeout=5)
    try:
        transport.send(mail)
    finally:
        transport.close()


@pytest.mark.parametrize(
    ("text", "encoding"),
    [
        (DOTTY, "8bit"),
        (".dots\n" + ". " * 800 + "\n", "quoted-printable"),
        ("plain ascii\n.\n..\n", "7bit"),
    ],
    ids=["8bit-dots", "qp-dots", "ascii-dots"],
)
def test_a_mail_reaches_the_smtp_server_byte_for_byte(raw_smtp, text, encoding):
    html = "<pre>\n" + text + "</pre>\n"
    mail = _mail(text, html)
    _send(raw_smtp, mail)
    (envelope,) = raw_smtp.envelopes
    assert envelope.original_content == mail.data
    assert envelope.mail_from == "hello@example.com"
    assert envelope.rcpt_tos == ["ann@example.com"]
    assert ("BODY=8BITMIME" in envelope.mail_options) == (not mail.data.isascii())
    (_, _, msg) = raw_smtp.messages[0]
    assert msg["Subject"] == "Grüße 🎉"
    assert msg["From"].addresses[0].display_name == SITE_NAME
    plain = msg.get_body(("plain",))
    assert cte(plain) == encoding
    # Raw lines starting with a dot (in QP, after soft line breaks too): the
    # client stuffed them, the server took the dot off again.
    _, body = raw_parts(mail.data, parse(mail.data))["plain"]
    assert any(line.startswith(b".") for line in body[1:])
    assert content(plain) == as_sent(text)
    assert content(msg.get_body(("html",))) == as_sent(html)


def test_several_mails_on_one_connection_arrive_intact(raw_smtp):
    mails = [_mail(f"{i}\n.{i}\n{GERMAN}\n", f"<p>{i}</p>") for i in range(3)]
    transport = SmtpTransport(raw_smtp.host, raw_smtp.port, timeout=5)
    try:
        for mail in mails:
            transport.send(mail)
    finally:
        transport.close()
    assert [e.original_content for e in raw_smtp.envelopes] == [m.data for m in mails]


def test_a_non_ascii_recipient_goes_with_smtputf8(raw_smtp):
    mail = _mail(GERMAN, f"<p>{GERMAN}</p>", recipient="jörg@example.com")
    _send(raw_smtp, mail)  # aiosmtpd's Controller offers SMTPUTF8 by default
    (envelope,) = raw_smtp.envelopes
    assert envelope.rcpt_tos == ["jörg@example.com"]
    assert "SMTPUTF8" in envelope.mail_options
    assert envelope.original_content == mail.data
    assert re.search(rb"^To: j\xc3\xb6rg@example\.com\r$", mail.data, re.M)


def test_a_non_ascii_recipient_is_refused_for_good_without_smtputf8():
    with smtp_on_loopback(Recorder(), enable_SMTPUTF8=False) as recorder:
        with pytest.raises(DeliveryError) as refused:
            _send(recorder, _mail(GERMAN, "<p>x</p>", recipient="jörg@example.com"))
        assert refused.value.permanent
        assert not refused.value.recipient_refused
        assert recorder.messages == []
        # The same server takes an ASCII recipient with the same 8-bit body.
        _send(recorder, _mail(GERMAN, f"<p>{GERMAN}</p>"))
        assert len(recorder.messages) == 1
