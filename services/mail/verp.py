"""VERP: each mail's envelope sender names its outbox row, signed.

`bounces+123-k3j5x9q2ab@bounce.example.com`: a bounce comes back to that
address (the Return-Path), which tells which mail bounced without reading the
bounce at all. The tag carries a short HMAC of the row id, so nobody can make
up a bounce that suppresses somebody else. Only lower-case letters and digits:
some MTAs lower-case local parts on the way.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from dataclasses import dataclass
from functools import lru_cache

from flask import current_app

from config import VERP_SEPARATOR

# 10 base32 characters: 50 bits. Guessing one takes ~10^15 tries per row.
SIGNATURE_CHARS = 10
_TAG = re.compile(rf"(\d{{1,19}})-([a-z2-7]{{{SIGNATURE_CHARS}}})")


@lru_cache(maxsize=16)
def _key(secret: str) -> bytes:
    # A key of its own purpose: a VERP signature is never valid as anything else.
    return hmac.new(secret.encode(), b"leads.verp", hashlib.sha256).digest()


def _signature(outbox_id: int, secret: str) -> str:
    mac = hmac.new(_key(secret), str(outbox_id).encode(), hashlib.sha256).digest()
    return base64.b32encode(mac).decode("ascii").lower()[:SIGNATURE_CHARS]


def bounce_address() -> tuple[str, str] | None:
    """(mailbox, domain) of MAIL_BOUNCE_ADDRESS, or None when it is not set."""
    configured = current_app.config.get("MAIL_BOUNCE_ADDRESS")
    if not configured:
        return None
    local, _, domain = configured.lower().rpartition("@")
    return local.removesuffix(VERP_SEPARATOR), domain


def envelope_sender(outbox_id: int) -> str | None:
    """The signed VERP address for a row, or None (then the From address is
    the envelope sender, as without bounce handling)."""
    base = bounce_address()
    if base is None:
        return None
    local, domain = base
    tag = f"{outbox_id}-{_signature(outbox_id, current_app.config['SECRET_KEY'])}"
    return f"{local}{VERP_SEPARATOR}{tag}@{domain}"


@dataclass(frozen=True)
class Tag:
    """What an address at the bounce mailbox says: no tag, or an outbox id
    whose signature verified (valid) or did not."""

    outbox_id: int | None
    tagged: bool
    valid: bool


def read(address: str | None) -> Tag | None:
    """The tag of an address at the bounce mailbox (with or without one);
    None for any other address. Case does not matter."""
    base = bounce_address()
    if base is None or not address:
        return None
    local, domain = base
    got_local, _, got_domain = address.strip().strip("<>").lower().rpartition("@")
    if got_domain != domain:
        return None
    if got_local == local:
        return Tag(None, tagged=False, valid=False)
    prefix = local + VERP_SEPARATOR
    if not got_local.startswith(prefix):
        return None
    match = _TAG.fullmatch(got_local[len(prefix) :])
    if match is None:
        return Tag(None, tagged=True, valid=False)
    outbox_id, signature = int(match[1]), match[2]
    cfg = current_app.config
    # Keys being rotated out still verify the mails they signed.
    keys = [cfg["SECRET_KEY"], *cfg.get("SECRET_KEY_FALLBACKS", ())]
    valid = any(hmac.compare_digest(signature, _signature(outbox_id, key)) for key in keys)
    return Tag(outbox_id, tagged=True, valid=valid)


def is_bounce_address(address: str | None) -> bool:
    """Whether mail to this address is ours to take (a tag, good or bad, or none)."""
    return read(address) is not None
