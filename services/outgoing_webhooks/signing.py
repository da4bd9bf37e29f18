"""Endpoint secrets: made here (Standard Webhooks' `whsec_` + base64 of
random bytes), stored encrypted with a key derived from SECRET_KEY."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from flask import current_app

PREFIX = "whsec_"
SECRET_BYTES = 32  # the spec asks for 24 to 64


class SecretUnreadable(ValueError):
    """The stored secret does not decrypt: SECRET_KEY changed past its fallbacks."""


def new_secret() -> str:
    return PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def _fernet(secret_key: str) -> Fernet:
    # A key of its own for this purpose: the session's key never encrypts.
    key = HKDF(
        algorithm=hashes.SHA256(), length=32, salt=None, info=b"leads.outgoing-webhook-secret"
    ).derive(secret_key.encode())
    return Fernet(base64.urlsafe_b64encode(key))


def _keys() -> MultiFernet:
    cfg = current_app.config
    # The current key encrypts; old ones (SECRET_KEY_FALLBACKS) still decrypt.
    return MultiFernet(
        [_fernet(k) for k in [cfg["SECRET_KEY"], *(cfg.get("SECRET_KEY_FALLBACKS") or [])]]
    )


def encrypt(secret: str) -> str:
    return _keys().encrypt(secret.encode()).decode()


def decrypt(stored: str) -> str:
    try:
        return _keys().decrypt(stored.encode()).decode()
    except InvalidToken:
        raise SecretUnreadable(
            "the secret cannot be decrypted (SECRET_KEY changed): rotate it"
        ) from None


def signature(secret: str, message_id: str, timestamp: int, body: str) -> str:
    """The webhook-signature header: v1, base64 HMAC-SHA256 of
    "{id}.{timestamp}.{body}" keyed by the secret's decoded bytes."""
    key = base64.b64decode(secret.removeprefix(PREFIX))
    digest = hmac.new(key, f"{message_id}.{timestamp}.{body}".encode(), hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()
