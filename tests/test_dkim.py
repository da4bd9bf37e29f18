"""DKIM: with DKIM_DOMAIN, DKIM_SELECTOR and DKIM_PRIVATE_KEY_FILE set, every
mail is signed (rsa-sha256, relaxed/relaxed) over From, To, Subject, Date,
Message-ID, MIME-Version, Content-Type and, on marketing mail, both
List-Unsubscribe headers; `flask dkim keygen` makes the key and prints the
TXT record to publish.

The key and its record come from `flask dkim keygen` run as a real process.
Signatures are checked with dkimpy's verify() on the bytes a real SMTP server
(aiosmtpd) received from the worker; verify's DNS lookup (its public
`dnsfunc=` parameter) answers with that record, joined back from the
quoted strings keygen printed for the zone file.
"""

from __future__ import annotations

import base64
import re
import shutil
import stat
from dataclasses import dataclass
from email import message_from_bytes
from pathlib import Path

import dkim
import pytest
from dkim.crypto import parse_pem_private_key, parse_public_key
from dkim.util import parse_tag_value

from extensions import db
from models import MailKind
from models.outbox import TRANSACTIONAL_KINDS
from services.mail.dkim import read_private_key
from tests import procs
from tests.factories import due_announcement, queue_every_kind
from tests.helpers import confirm_address, drain, mail_files, signup, smtp_settings

SELECTOR = "s2026"
DOMAIN = "scrum-academy.example"  # the From address's domain (MAIL_DEFAULT_SENDER)
RECORD_NAME = f"{SELECTOR}._domainkey.{DOMAIN}"
ALWAYS_SIGNED = ["from", "to", "subject", "date", "message-id", "mime-version", "content-type"]
LIST_HEADERS = ["list-unsubscribe", "list-unsubscribe-post"]
QUOTED = re.compile(r'"([^"]*)"')


@dataclass(frozen=True)
class Published:
    """A key made by keygen, and the DNS answer for its record."""

    key_file: Path
    txt: bytes

    def dns(self, name: bytes, timeout: float = 5) -> bytes | None:
        """dkimpy's DNS lookup, answered by the record keygen printed."""
        return self.txt if name == f"{RECORD_NAME}.".encode() else None


def zone_record(output: str, name: str) -> tuple[list[str], str]:
    """The quoted strings of the record's zone-file lines in keygen's
    output, and the value a resolver makes of them (joined)."""
    start = output.index(f"{name}.\tIN\tTXT\t(")
    strings = QUOTED.findall(output[start : output.index(")", start)])
    return strings, "".join(strings)


def verify(raw: bytes, published: Published) -> bool:
    return dkim.verify(raw, dnsfunc=published.dns)


def signature_tags(raw: bytes) -> dict[bytes, bytes]:
    value = message_from_bytes(raw)["DKIM-Signature"]
    return parse_tag_value(value.encode())


def signed_headers(raw: bytes) -> list[str]:
    return [h.strip() for h in signature_tags(raw)[b"h"].decode().split(":")]


def by_kind(raws: list[bytes]) -> dict[MailKind, bytes]:
    return {MailKind(message_from_bytes(raw)["X-Mail-Kind"]): raw for raw in raws}


@pytest.fixture(scope="module")
def published(tmp_path_factory) -> Published:
    """`flask dkim keygen` in a process of its own, DKIM settings unset."""
    tmp = tmp_path_factory.mktemp("dkim")
    env = procs.app_env(tmp, f"sqlite:///{tmp / 'unused.sqlite3'}")
    key_file = tmp / "keys" / f"{SELECTOR}.pem"
    out = procs.flask(
        env, "dkim", "keygen", "--selector", SELECTOR, "--domain", DOMAIN, "--output", str(key_file)
    ).stdout
    _, value = zone_record(out, RECORD_NAME)
    assert f"value: {value}\n" in out  # the same record, on one line
    return Published(key_file, value.encode())


def dkim_settings(published: Published) -> dict:
    return {
        "DKIM_DOMAIN": DOMAIN,
        "DKIM_SELECTOR": SELECTOR,
        "DKIM_PRIVATE_KEY_FILE": str(published.key_file),
    }


@pytest.fixture
def dkim_config(request, published, tmp_path) -> dict:
    """The three settings for the published key; a test may ask (indirect
    parametrization) for "none" of them, or for a "copy" of the key of its own."""
    wanted = getattr(request, "param", "published")
    if wanted == "none":
        return {}
    settings = dkim_settings(published)
    if wanted == "copy":
        copy = tmp_path / "copy.pem"
        shutil.copy(published.key_file, copy)
        settings["DKIM_PRIVATE_KEY_FILE"] = str(copy)
    return settings


@pytest.fixture
def app_config(app_config, smtp_server, dkim_config):
    return {
        **app_config,
        **smtp_settings(smtp_server),
        **dkim_config,
        "FREQUENCY_CAP_DAYS": 0,
    }


# --- Mail delivered by the worker to the SMTP server verifies.


def test_confirmation_welcome_and_announcement_verify_as_delivered(
    app, client, smtp_server, published
):
    email = "ann@example.com"
    assert signup(client, email).status_code == 303
    assert drain(app)["sent"] == 1
    confirm_address(app, client, email)
    assert drain(app)["sent"] == 1
    with app.app_context():
        due_announcement(topic="cspo-classes")
    assert drain(app)["sent"] == 1

    mails = by_kind(smtp_server.raw_messages)
    assert set(mails) == {MailKind.CONFIRMATION, MailKind.WELCOME, MailKind.ANNOUNCEMENT}
    for kind, raw in mails.items():
        assert raw.startswith(b"DKIM-Signature: "), kind  # one signature, on top
        assert raw.count(b"DKIM-Signature:") == 1, kind
        assert verify(raw, published), kind
        tags = signature_tags(raw)
        assert tags[b"a"] == b"rsa-sha256"
        assert tags[b"c"] == b"relaxed/relaxed"
        assert (tags[b"d"], tags[b"s"]) == (DOMAIN.encode(), SELECTOR.encode())
        # Every header asked for, From once more than it occurs (a From
        # added later breaks the signature), nothing else.
        lists = [] if kind.transactional else LIST_HEADERS
        assert signed_headers(raw) == [*ALWAYS_SIGNED, *lists, "from"], kind
    announcement = message_from_bytes(mails[MailKind.ANNOUNCEMENT])
    assert announcement["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


def test_every_kind_of_mail_is_signed(app, smtp_server, published):
    with app.app_context():
        queue_every_kind(["Ann"])
        db.session.commit()
    assert drain(app)["failed"] == 0
    mails = by_kind(smtp_server.raw_messages)
    assert set(mails) == set(MailKind)
    for kind, raw in mails.items():
        assert verify(raw, published), kind
        covers_lists = set(LIST_HEADERS) <= set(signed_headers(raw))
        assert covers_lists == (kind not in TRANSACTIONAL_KINDS), kind


@pytest.mark.parametrize("backend", ["file", "console"])
def test_the_file_and_console_transports_write_the_signed_mail(
    backend, app, published, capsys, tmp_path
):
    app.config["MAIL_BACKEND"] = backend
    with app.app_context():
        queue_every_kind(["Ann"])
        db.session.commit()
    capsys.readouterr()
    assert drain(app)["sent"] == len(MailKind)
    if backend == "file":
        raws = [path.read_bytes() for path in mail_files(app)]
    else:
        # The console prints the envelope, a blank line and each mail with \n
        # line ends, then a rule.
        printed = capsys.readouterr().out.split("\n" + "-" * 72 + "\n")
        raws = [text.split("\n\n", 1)[1].encode() for text in printed if text.strip()]
    assert len(raws) == len(MailKind)
    for raw in raws:
        assert verify(raw, published)


@pytest.mark.parametrize("dkim_config", ["copy"], indirect=True)
def test_the_key_is_read_once_when_the_app_is_made(dkim_config, app, smtp_server, published):
    Path(dkim_config["DKIM_PRIVATE_KEY_FILE"]).unlink()  # not read again, per mail
    with app.app_context():
        queue_every_kind(["Ann"])
        db.session.commit()
    assert drain(app)["sent"] == len(MailKind)
    assert all(verify(raw, published) for raw in smtp_server.raw_messages)


# --- What the signature protects.


@pytest.fixture
def announcement(app, smtp_server) -> bytes:
    """The bytes of one announcement as the SMTP server received them."""
    with app.app_context():
        queue_every_kind(["Ann"])
        db.session.commit()
    drain(app)
    return by_kind(smtp_server.raw_messages)[MailKind.ANNOUNCEMENT]


def _replace_header(raw: bytes, name: bytes, value: bytes) -> bytes:
    head, sep, body = raw.partition(b"\r\n\r\n")
    lines = [
        name + b": " + value if line.lower().startswith(name.lower() + b":") else line
        for line in head.split(b"\r\n")
    ]
    return b"\r\n".join(lines) + sep + body


def _in_body(raw: bytes, old: bytes, new: bytes) -> bytes:
    head, sep, body = raw.partition(b"\r\n\r\n")
    assert old in body
    return head + sep + body.replace(old, new, 1)


TAMPERINGS = {
    "a changed body": lambda raw: _in_body(raw, b"Hello", b"Hullo"),
    "a line added to the body": lambda raw: raw + b"P.S. one more line\r\n",
    "another Subject": lambda raw: _replace_header(raw, b"Subject", b"You won a prize"),
    "another recipient": lambda raw: _replace_header(raw, b"To", b"eve@example.net"),
    "another Date": lambda raw: _replace_header(raw, b"Date", b"Thu, 01 Jan 2037 00:00:00 +0000"),
    "another unsubscribe link": lambda raw: _replace_header(
        raw, b"List-Unsubscribe", b"<https://evil.example/unsubscribe>"
    ),
    "no one-click": lambda raw: _replace_header(raw, b"List-Unsubscribe-Post", b"nothing"),
    "a second From": lambda raw: raw.replace(
        b"\r\nFrom: ", b"\r\nFrom: Bank <ceo@bank.example>\r\nFrom: ", 1
    ),
}


@pytest.mark.parametrize("tampering", TAMPERINGS)
def test_a_tampered_mail_fails_verification(tampering, announcement, published):
    assert verify(announcement, published)
    tampered = TAMPERINGS[tampering](announcement)
    assert tampered != announcement
    assert not verify(tampered, published)


def test_what_relaxed_canonicalisation_lets_through(announcement, published):
    """Whitespace that relays may change, and headers the signature does not
    cover, leave it valid."""
    refolded = announcement.replace(b"\r\nSubject: ", b"\r\nSubject:\r\n\t  ", 1)
    added = announcement.replace(b"\r\n\r\n", b"\r\nReceived: from relay.example\r\n\r\n", 1)
    for raw in (refolded, added):
        assert raw != announcement
        assert verify(raw, published)


def test_a_signature_from_another_key_does_not_verify(app, announcement, tmp_path):
    """The same record name answered with another key's record fails."""
    other = procs.flask(
        procs.app_env(tmp_path, f"sqlite:///{tmp_path / 'x.sqlite3'}"),
        "dkim",
        "keygen",
        "--selector",
        SELECTOR,
        "--domain",
        DOMAIN,
        "--output",
        str(tmp_path / "other.pem"),
    ).stdout
    _, value = zone_record(other, RECORD_NAME)
    assert not verify(announcement, Published(tmp_path / "other.pem", value.encode()))


# --- Without the settings, nothing is signed.


@pytest.mark.parametrize("dkim_config", ["none"], indirect=True)
def test_without_the_settings_no_signature_is_added(dkim_config, app, smtp_server):
    assert app.extensions["dkim"] is None
    with app.app_context():
        queue_every_kind(["Ann"])
        db.session.commit()
    assert drain(app)["sent"] == len(MailKind)
    assert len(smtp_server.raw_messages) == len(MailKind)
    for raw in smtp_server.raw_messages:
        assert b"dkim-signature:" not in raw.partition(b"\r\n\r\n")[0].lower()


# --- flask dkim keygen.


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize("dkim_config", ["none"], indirect=True)
def test_keygen_writes_a_private_key_and_prints_the_record(dkim_config, app, runner, tmp_path):
    app.instance_path = str(tmp_path / "instance")
    r = runner.invoke(args=["dkim", "keygen", "--selector", "news"])
    assert r.exit_code == 0, r.output
    # No DKIM_PRIVATE_KEY_FILE: instance/dkim/<selector>.pem, for the owner only.
    key_file = tmp_path / "instance" / "dkim" / "news.pem"
    assert _mode(key_file) == 0o600
    pem, bits = read_private_key(key_file)
    assert bits == 2048
    # No DKIM_DOMAIN: the record is for the From address's domain.
    name = f"news._domainkey.{DOMAIN}"
    assert f"name:  {name}\n" in r.output
    strings, value = zone_record(r.output, name)
    assert f"value: {value}\n" in r.output
    match = re.fullmatch(r"v=DKIM1; k=rsa; p=([A-Za-z0-9+/]+=*)", value)
    assert match, value
    public = parse_public_key(base64.b64decode(match.group(1)))
    assert public["modulus"] == parse_pem_private_key(pem)["modulus"]
    # A TXT string holds 255 bytes at most: the value is split, and whole.
    assert len(strings) > 1
    assert all(len(s.encode()) <= 255 for s in strings)

    again = runner.invoke(args=["dkim", "keygen", "--selector", "news"])
    assert again.exit_code == 1
    assert "exists: give --force to replace it" in again.output
    assert key_file.read_bytes() == pem  # untouched

    forced = runner.invoke(args=["dkim", "keygen", "--selector", "news", "--force"])
    assert forced.exit_code == 0, forced.output
    assert key_file.read_bytes() != pem
    assert _mode(key_file) == 0o600
    assert zone_record(forced.output, name)[1] != value


def test_keygen_with_the_settings_set_never_touches_the_live_key(app, runner, published, tmp_path):
    app.instance_path = str(tmp_path / "instance")
    live = published.key_file.read_bytes()
    # The live selector's key is DKIM_PRIVATE_KEY_FILE, so it exists already.
    r = runner.invoke(args=["dkim", "keygen", "--selector", SELECTOR])
    assert r.exit_code == 1
    assert f"{published.key_file} exists" in r.output
    # A new selector's key goes beside the others, for DKIM_DOMAIN.
    r = runner.invoke(args=["dkim", "keygen", "--selector", "s2027"])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "instance" / "dkim" / "s2027.pem").is_file()
    assert f"name:  s2027._domainkey.{DOMAIN}\n" in r.output
    assert published.key_file.read_bytes() == live
