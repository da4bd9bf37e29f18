"""`flask bounces fetch`: bounces and complaints read from a mailbox over IMAP
with TLS (BOUNCE_IMAP_*), each through `events.process`.

At least once: a message is committed before it is deleted (or flagged), so
a crash in between reads it again next time, and the event's dedupe key makes
that harmless. Memory stays bounded: messages are fetched one at a time by
UID, and RFC822.SIZE is asked first; one over the cap is flagged
`$BounceTooLarge`, logged and left unread.
"""

from __future__ import annotations

import contextlib
import imaplib
import logging
import re
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from email.parser import BytesHeaderParser
from email.utils import getaddresses

from flask import current_app

from extensions import db
from services.bounces import events
from services.mail import verp

log = logging.getLogger("leads.bounces")

TIMEOUT_SECONDS = 60.0
DONE_KEYWORD = "$BounceProcessed"  # BOUNCE_IMAP_AFTER=flag
TOO_LARGE_KEYWORD = "$BounceTooLarge"
_SEARCH = f"UNDELETED UNKEYWORD {DONE_KEYWORD} UNKEYWORD {TOO_LARGE_KEYWORD}"
_SIZE = re.compile(rb"RFC822\.SIZE (\d+)")
# Where a mailbox keeps the address a message came to: the delivering MTA's
# Delivered-To (Postfix, Exim) or X-Original-To, else the report's To.
_RECIPIENT_HEADERS = ("Delivered-To", "X-Original-To", "To")


class MailboxError(Exception):
    """The mailbox cannot be read: said in one line, for the command to print."""


@dataclass
class Pass:
    """What one pass over the mailbox did."""

    processed: int = 0
    too_large: int = 0


def envelope_recipient(raw: bytes) -> str | None:
    """The address a mailbox message was delivered to: a tagged bounce
    address first (the VERP tag is in it), then the bare bounce address,
    then the first address named at all."""
    try:
        head = BytesHeaderParser().parsebytes(raw[: events.MAX_MESSAGE_BYTES])
        found = [
            addr
            for name in _RECIPIENT_HEADERS
            for _, addr in getaddresses([str(v) for v in head.get_all(name, [])])
            if addr
        ]
    except Exception:  # a header no parser reads: no recipient
        return None
    for address in found:
        tag = verp.read(address)
        if tag is not None and tag.tagged:
            return address
    ours = [a for a in found if verp.is_bounce_address(a)]
    return (ours or found or [None])[0]


def _connect() -> imaplib.IMAP4_SSL:
    cfg = current_app.config
    host, port = cfg["BOUNCE_IMAP_HOST"], cfg["BOUNCE_IMAP_PORT"]
    where = f"IMAP server {host}:{port}"
    # Verification stays on: a CA file only adds what is trusted.
    context = ssl.create_default_context(cafile=cfg.get("BOUNCE_IMAP_CA_FILE"))
    try:
        conn = imaplib.IMAP4_SSL(host, port, ssl_context=context, timeout=TIMEOUT_SECONDS)
    except ssl.SSLCertVerificationError as exc:
        raise MailboxError(
            f"{where}: its TLS certificate is not trusted ({exc.verify_message}); "
            "set BOUNCE_IMAP_CA_FILE to the CA that signed it"
        ) from None
    except (OSError, imaplib.IMAP4.error) as exc:
        raise MailboxError(f"{where}: cannot connect ({exc})") from None
    try:
        conn.login(cfg["BOUNCE_IMAP_USER"], cfg["BOUNCE_IMAP_PASSWORD"])
        typ, data = conn.select(_quote(cfg["BOUNCE_IMAP_FOLDER"]))
    except (OSError, imaplib.IMAP4.error) as exc:
        _close(conn)
        raise MailboxError(
            f"{where}: login as {cfg['BOUNCE_IMAP_USER']} refused ({_text(exc)})"
        ) from None
    if typ != "OK":
        _close(conn)
        raise MailboxError(
            f"{where}: folder {cfg['BOUNCE_IMAP_FOLDER']!r} cannot be opened ({_text(data)})"
        )
    return conn


def _quote(folder: str) -> str:
    return '"' + folder.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _text(value: object) -> str:
    if isinstance(value, list):
        value = b" ".join(v for v in value if isinstance(v, bytes))
    if isinstance(value, Exception):
        value = value.args[0] if value.args else str(value)
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    return str(value).strip()[:300]


def _close(conn: imaplib.IMAP4) -> None:
    with contextlib.suppress(OSError, imaplib.IMAP4.error):
        conn.logout()


def fetch_once(should_stop: Callable[[], bool] = lambda: False) -> Pass:
    """One pass: every message not yet done, processed and committed, then
    deleted (or flagged). Raises MailboxError when the mailbox cannot be read
    or a message cannot be stored (it stays in the mailbox for next time)."""
    done = Pass()
    conn = _connect()
    try:
        delete = current_app.config["BOUNCE_IMAP_AFTER"] == "delete"
        # Asked again: the capabilities before login leave out UIDPLUS.
        typ, data = conn.capability()
        uidplus = typ == "OK" and b"UIDPLUS" in (data[0] or b"").upper().split()
        typ, data = conn.uid("SEARCH", None, _SEARCH)
        if typ != "OK":
            raise MailboxError(f"IMAP SEARCH failed ({_text(data)})")
        for uid in (data[0] or b"").split():
            if should_stop():
                break
            _one(conn, uid.decode(), delete, uidplus, done)
        if delete and not uidplus:
            conn.expunge()
    except (OSError, imaplib.IMAP4.error) as exc:
        raise MailboxError(f"IMAP connection failed ({_text(exc)})") from None
    finally:
        _close(conn)
    return done


def _one(conn: imaplib.IMAP4_SSL, uid: str, delete: bool, uidplus: bool, done: Pass) -> None:
    typ, data = conn.uid("FETCH", uid, "(RFC822.SIZE)")
    size = _SIZE.search(data[0] if typ == "OK" and data and data[0] else b"")
    if size is None:
        log.warning("IMAP message UID %s: no size given; left alone", uid)
        return
    if int(size[1]) > events.MAX_MESSAGE_BYTES:
        conn.uid("STORE", uid, "+FLAGS", f"(\\Flagged {TOO_LARGE_KEYWORD})")
        log.warning(
            "IMAP message UID %s too large: %s bytes (limit %s): flagged %s, not read",
            uid, size[1].decode(), events.MAX_MESSAGE_BYTES, TOO_LARGE_KEYWORD,
        )  # fmt: skip
        done.too_large += 1
        return
    # BODY.PEEK: reading does not set \Seen.
    typ, data = conn.uid("FETCH", uid, "(BODY.PEEK[])")
    raw = next((part[1] for part in data or () if isinstance(part, tuple)), None)
    if typ != "OK" or raw is None:
        log.warning("IMAP message UID %s could not be fetched; left alone", uid)
        return
    try:
        events.process(raw, envelope_recipient(raw), source="imap")
        db.session.commit()
    except Exception:
        db.session.rollback()
        log.exception("IMAP message UID %s not stored; left in the mailbox", uid)
        raise MailboxError(f"message UID {uid} could not be stored (see the log)") from None
    if delete:
        conn.uid("STORE", uid, "+FLAGS", "(\\Deleted)")
        if uidplus:
            conn.uid("EXPUNGE", uid)
    else:
        conn.uid("STORE", uid, "+FLAGS", f"(\\Seen {DONE_KEYWORD})")
    done.processed += 1
