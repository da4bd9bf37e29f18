"""Signed tokens for links in mail and forms, one salt per purpose.

A token made for one purpose never opens another (a confirmation link cannot
unsubscribe). Keys in SECRET_KEY_FALLBACKS still verify, so keys can rotate.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import datetime
from functools import cache

from flask import current_app
from itsdangerous import BadSignature, SignatureExpired, TimestampSigner, URLSafeTimedSerializer
from itsdangerous.encoding import base64_decode, base64_encode, want_bytes
from itsdangerous.serializer import Serializer

from services import clock

PURPOSES = frozenset({"confirm", "preferences", "unsubscribe", "form-time", "register"})


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


# Payloads shorter than this are never worth compressing (see FastSerializer).
COMPRESS_FROM = 256


class _FastSigning:
    """Signer methods with the derived keys kept and each HMAC in one call;
    the signatures, and what verifies, are the same. Mixed into the signer
    class by `_fast_signer`."""

    def _key(self, secret_key: bytes | None = None) -> bytes:
        keys = self.__dict__.setdefault("_derived_keys", {})
        key = keys.get(secret_key)
        if key is None:
            key = keys[secret_key] = self.derive_key(secret_key)
        return key

    def get_signature(self, value: str | bytes) -> bytes:
        return base64_encode(hmac.digest(self._key(), want_bytes(value), self.digest_method))

    def verify_signature(self, value: str | bytes, sig: str | bytes) -> bool:
        try:
            sig = base64_decode(sig)
        except Exception:
            return False
        value = want_bytes(value)
        return any(
            hmac.compare_digest(sig, hmac.digest(self._key(key), value, self.digest_method))
            for key in reversed(self.secret_keys)
        )


@cache
def _fast_signer(signer: type[TimestampSigner]) -> type[TimestampSigner]:
    return type(f"Fast{signer.__name__}", (_FastSigning, signer), {})


class FastSerializer(URLSafeTimedSerializer):
    """URLSafeTimedSerializer, cheaper per token, reading and writing the same
    tokens.

    itsdangerous tries zlib on every payload: for the short values signed on
    every page view (a random CSRF token, the form time, a session holding
    them) it saves nothing or a few bytes, and zlib's per-call set-up of a
    quarter-megabyte state cost more than the rest of the signing together.
    Payloads under COMPRESS_FROM bytes are left as they are; loading is
    itsdangerous's own, so either form is read. Signers are made once rather
    than per call, and keep their derived key. Get one from `fast_serializer`.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._signers: dict = {}

    def dump_payload(self, obj) -> bytes:
        json = Serializer.dump_payload(self, obj)
        if len(json) < COMPRESS_FROM:
            return base64_encode(json)
        return super().dump_payload(obj)

    def make_signer(self, salt=None):
        signer = self._signers.get(salt)
        if signer is None:
            signer = self._signers[salt] = super().make_signer(salt)
        return signer


_cache: dict[tuple, FastSerializer] = {}


def fast_serializer(
    keys: tuple[str | bytes, ...],
    salt: str,
    *,
    signer: type[TimestampSigner] = TimestampSigner,
    serializer=None,
    key_derivation: str | None = None,
) -> FastSerializer:
    """One serializer per keys and salt, kept for the process: keys may
    change (tests, rotation), so they are part of the key.

    It signs with `hashlib.sha1` itself: itsdangerous's default is a Python
    wrapper around it, which sends every HMAC down the standard library's
    pure-Python path. The digest, and so every token, is the same."""
    cache_key = (keys, salt, signer, serializer, key_derivation)
    found = _cache.get(cache_key)
    if found is None:
        if len(_cache) > 64:  # keys changed many times: start again
            _cache.clear()
        signer_kwargs = {"digest_method": hashlib.sha1}
        if key_derivation:
            signer_kwargs["key_derivation"] = key_derivation
        found = _cache[cache_key] = FastSerializer(
            list(keys),
            salt=salt,
            serializer=serializer,
            signer=_fast_signer(signer),
            signer_kwargs=signer_kwargs,
        )
    return found


def _serializer(purpose: str) -> URLSafeTimedSerializer:
    if purpose not in PURPOSES:
        raise ValueError(f"unknown token purpose {purpose!r}")
    cfg = current_app.config
    # itsdangerous signs with the last key and verifies with all of them.
    keys = (*cfg.get("SECRET_KEY_FALLBACKS", ()), cfg["SECRET_KEY"])
    return fast_serializer(keys, f"leads.{purpose}", signer=_ClockSigner)


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
