"""Signed tokens for links in mail and forms, one salt per purpose.

A token made for one purpose never opens another (a confirmation link cannot
unsubscribe). Keys in SECRET_KEY_FALLBACKS still verify, so keys can rotate.
"""

from __future__ import annotations

from datetime import datetime
from functools import lru_cache

from flask import current_app
from itsdangerous import BadSignature, SignatureExpired, TimestampSigner, URLSafeTimedSerializer

from services import clock

PURPOSES = frozenset(
    {"confirm", "preferences", "unsubscribe", "form-time", "register", "login-device"}
)


class TokenInvalid(Exception):
    """Tampered, wrong purpose, or signed with a key we no longer hold."""


class TokenExpired(TokenInvalid):
    def __init__(self, value):
        super().__init__("expired")
        self.value = value


class _ClockSigner(TimestampSigner):
    """Stamps and ages tokens with services.clock, the clock the rows use:
    a link's age and "issued before the unsubscribe" are then measured on
    one time line (and tests can move it)."""

    def get_timestamp(self) -> int:
        return int(clock.now().timestamp())


@lru_cache(maxsize=64)
def _cached_serializer(keys: tuple[str | bytes, ...], salt: str) -> URLSafeTimedSerializer:
    # Keys are part of the cache key: tests and key rotation change them.
    return URLSafeTimedSerializer(list(keys), salt=salt, signer=_ClockSigner)


def _serializer(purpose: str) -> URLSafeTimedSerializer:
    if purpose not in PURPOSES:
        raise ValueError(f"unknown token purpose {purpose!r}")
    cfg = current_app.config
    # itsdangerous signs with the last key and verifies with all of them.
    keys = (*cfg.get("SECRET_KEY_FALLBACKS", ()), cfg["SECRET_KEY"])
    return _cached_serializer(keys, f"leads.{purpose}")


def make(purpose: str, value) -> str:
    return _serializer(purpose).dumps(value)


def read(purpose: str, token: str, max_age: int | None = None) -> tuple[object, datetime]:
    """The value and when it was signed; raises TokenInvalid or TokenExpired."""
    if not token or len(token) > 500:
        raise TokenInvalid("empty or over-long token")
    serializer = _serializer(purpose)
    try:
        return serializer.loads(token, max_age=max_age, return_timestamp=True)
    except SignatureExpired as exc:
        value = None
        if exc.payload is not None:
            try:
                value = serializer.load_payload(exc.payload)
            except BadSignature:
                value = None
        raise TokenExpired(value) from exc
    except BadSignature as exc:
        raise TokenInvalid(str(exc)) from exc
