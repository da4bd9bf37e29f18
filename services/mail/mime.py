"""Our mails as bytes, built by the standard library's email package.

The `email.mime` classes under the compat32 policy, as Django and Flask-Mail
use them: a multipart/alternative of a text and an HTML part, each 7bit or
8bit as written, or quoted-printable where a line is over 998 octets.
EmailMessage with a policy was measured and is about 4x slower per mail
(bench/RESULTS.md, "Session 3"); its header registry also folds a long
List-Unsubscribe URL into encoded words that mail providers do not decode.

What we check before the library sees a value: a header holds no line break
or control character, an address is one plain addr-spec, and non-ASCII text
becomes RFC 2047 words (email.header) of at most 75 characters.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterable
from email import policy
from email.charset import QP, Charset
from email.header import Header
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.utils import formataddr

CRLF = "\r\n"
MAX_LINE = 998  # RFC 5322 2.1.1, without the CRLF
# SMTP's line ends. Lines fold only where our values already hold a fold (the
# encoded words below): an ASCII header up to 998 characters stays one line.
POLICY = policy.compat32.clone(linesep=CRLF, max_line_length=MAX_LINE)
# UTF-8 bodies as they are (7bit or 8bit), and quoted-printable for a body
# with a line too long for SMTP: Django's two charsets.
_UTF8 = Charset("utf-8")
_UTF8.body_encoding = None
_UTF8_QP = Charset("utf-8")
_UTF8_QP.body_encoding = QP
# Nothing that could end a header line or hide one: C0 and C1 controls, DEL,
# and the Unicode line and paragraph separators.
_NOT_IN_HEADER = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
# An addr-spec with nothing a header or SMTP command could be split on: no
# spaces, angle brackets, commas, quotes, controls. Quoted local parts are
# not offered by our signup form (email-validator refuses them).
_ATOMS = r"[^\s<>()\[\]\\,;:@\"\x00-\x1f\x7f-\x9f]+"
_ADDR_SPEC = re.compile(f"{_ATOMS}@{_ATOMS}")
_LIST_NAME = re.compile(_ATOMS)


class HeaderError(ValueError):
    """A value that cannot be put in a header as it is."""


def addr_spec(address: str) -> str:
    if not _ADDR_SPEC.fullmatch(address or ""):
        raise HeaderError(f"not a single mail address: {address!r}")
    return address


def one_line(value: str) -> str:
    """Text made fit for a header: controls and line breaks become spaces,
    runs of whitespace one space."""
    return " ".join(_NOT_IN_HEADER.sub(" ", value).split())


def _words(name: str, value: str) -> str:
    """Non-ASCII text as RFC 2047 encoded words, folded between them."""
    return Header(value, "utf-8", header_name=name).encode(linesep=CRLF)


def header(name: str, value: str) -> str:
    """A header's value, refused if it could end the line or break SMTP's."""
    if _NOT_IN_HEADER.search(value):
        raise HeaderError(f"{name}: line breaks and control characters cannot go in a header")
    if value.isascii():
        if len(name) + 2 + len(value) > MAX_LINE:
            raise HeaderError(f"{name}: longer than {MAX_LINE} characters")
        return value
    return _words(name, value)


def address_header(name: str, display_name: str, address: str) -> str:
    """`Display <address>`: the display name quoted as it needs, or RFC 2047
    words when not ASCII. `address` is a mail address, or a list name
    (RFC 2919) for List-Id."""
    if not (_ADDR_SPEC.fullmatch(address) or _LIST_NAME.fullmatch(address)):
        raise HeaderError(f"{name}: not an address: {address!r}")
    display_name = one_line(display_name)
    if display_name.isascii():
        return header(name, formataddr((display_name, address)))
    return f"{_words(name, display_name)} <{address}>"


def mailbox(address: str) -> str:
    """A recipient's addr-spec as a header value. One that is not ASCII goes
    with SMTPUTF8 and is written as UTF-8 (RFC 6532): compat32 writes a
    header holding 8-bit data as it is, and the email package holds such
    data as surrogate escapes."""
    addr_spec(address)
    return address if address.isascii() else address.encode().decode("ascii", "surrogateescape")


def _part(body: str, subtype: str) -> MIMEText:
    if not body.endswith("\n"):
        body += "\n"
    longest = max(map(len, body.encode().splitlines()))
    part = MIMEText(body, subtype, _UTF8_QP if longest > MAX_LINE else _UTF8, policy=POLICY)
    del part["MIME-Version"]  # the message says it once, at the top
    return part


def build(headers: Iterable[tuple[str, str]], text: str, html: str) -> bytes:
    """A multipart/alternative mail. `headers` are (name, value) pairs whose
    values were made by header(), address_header() or mailbox()."""
    # A fresh 128-bit random boundary cannot be in a body written before it
    # was drawn (the generator's own boundary is checked with a regular
    # expression compiled anew for every mail).
    msg = MIMEMultipart("alternative", boundary=f"=_{secrets.token_hex(16)}", policy=POLICY)
    for name, value in headers:
        msg[name] = value
    msg.attach(_part(text, "plain"))
    msg.attach(_part(html, "html"))
    return msg.as_bytes()
