"""Our mails as bytes: headers we write, then a text and an HTML part.

The stdlib's EmailMessage parses every header it is given through its header
registry, and folds each one again when it is serialised: about 2 ms of a
5 ms mail in the worker's profile (bench/RESULTS.md, finding 5). Every mail
we send has this one shape, so it is written out directly, to the same
result: CRLF line ends, lines of at most 998 octets, 7bit or 8bit parts (or
quoted-printable where a line would be longer), RFC 2047 encoded words for
any header text that is not ASCII. The tests read each kind back with the
stdlib parser.
"""

from __future__ import annotations

import re
import secrets
from binascii import b2a_qp
from email.header import Header
from email.utils import formataddr

CRLF = "\r\n"
MAX_LINE = 998  # RFC 5322 2.1.1, without the CRLF
# Nothing that could end a header line or hide one: C0 and C1 controls, DEL,
# and the Unicode line and paragraph separators.
_NOT_IN_HEADER = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
# An addr-spec with nothing a header or SMTP command could be split on: no
# spaces, angle brackets, commas, quotes, controls. Quoted local parts are
# not offered by our signup form (email-validator refuses them).
_ATOMS = r"[^\s<>()\[\]\\,;:@\"\x00-\x1f\x7f-\x9f]+"
_ADDR_SPEC = re.compile(f"{_ATOMS}@{_ATOMS}")


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


_LIST_NAME = re.compile(r"[^\s<>()\[\]\\,;:@\"\x00-\x1f\x7f-\x9f]+")


def address_header(name: str, display_name: str, address: str) -> str:
    """`Name: Display <address>`: the display name quoted as it needs, or,
    when not ASCII, RFC 2047 words of at most 75 characters folded between
    them. `address` is a mail address, or a list name (RFC 2919) for List-Id."""
    if not (_ADDR_SPEC.fullmatch(address) or _LIST_NAME.fullmatch(address)):
        raise HeaderError(f"{name}: not an address: {address!r}")
    display_name = one_line(display_name)
    if display_name.isascii():
        return header(name, formataddr((display_name, address)))
    words = Header(display_name, "utf-8", header_name=name).encode(linesep=CRLF)
    return f"{name}: {words} <{address}>"


def header(name: str, value: str) -> str:
    """One header line (folded only when encoded words need it)."""
    if _NOT_IN_HEADER.search(value):
        raise HeaderError(f"{name}: line breaks and control characters cannot go in a header")
    if value.isascii():
        line = f"{name}: {value}"
        if len(line) > MAX_LINE:
            raise HeaderError(f"{name}: longer than {MAX_LINE} characters")
        return line
    encoded = Header(value, "utf-8", header_name=name).encode(linesep=CRLF)
    return f"{name}: {encoded}"


def _part(subtype: str, body: str) -> tuple[str, str]:
    """(headers, payload) of one text part, encoded as little as it allows."""
    if not body.endswith("\n"):
        body += "\n"
    lines = body.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    if body.isascii() and all(len(line) <= MAX_LINE for line in lines):
        cte, payload = "7bit", CRLF.join(lines)
    elif all(len(line.encode()) <= MAX_LINE for line in lines):
        cte, payload = "8bit", CRLF.join(lines)
    else:
        # binascii works on the UTF-8 octets and breaks lines only at \n:
        # quoprimime.body_encode takes code points for octets and splits on
        # U+2028 and U+0085 too, which garbles what is not Latin-1 or ASCII.
        encoded = b2a_qp("\n".join(lines).encode(), istext=True).decode("ascii")
        cte, payload = "quoted-printable", encoded.replace("\n", CRLF)
    head = f'Content-Type: text/{subtype}; charset="utf-8"{CRLF}Content-Transfer-Encoding: {cte}'
    return head, payload


def build(headers: list[str], text: str, html: str) -> bytes:
    """A multipart/alternative mail: `headers` are lines made by header()."""
    parts = [_part("plain", text), _part("html", html)]
    boundary = f"=_{secrets.token_hex(16)}"
    while any(boundary in payload for _, payload in parts):  # pragma: no cover
        boundary = f"=_{secrets.token_hex(16)}"
    out = [
        *headers,
        "MIME-Version: 1.0",
        f'Content-Type: multipart/alternative; boundary="{boundary}"',
        "",
    ]
    for head, payload in parts:
        out += [f"--{boundary}", head, "", payload]
    out += [f"--{boundary}--", ""]
    return CRLF.join(out).encode()
