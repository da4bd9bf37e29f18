"""Amazon SES events through SNS: the SNS message signature, checked with
the certificate SNS names, fetched only from sns.<region>.amazonaws.com.

Signature versions 1 (SHA1withRSA) and 2 (SHA256withRSA). Only topics in
SES_SNS_TOPIC_ARNS are taken: anyone can sign with a topic of their own.
A SubscriptionConfirmation is answered by GETting its SubscribeURL, also
only on an SNS host. The fetcher is app.extensions["sns"]; tests seed its
certificate cache and replace its `opener` (no real AWS in tests).
"""

from __future__ import annotations

import base64
import binascii
import logging
import re
import urllib.request
from collections.abc import Callable
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from flask import Flask, current_app

log = logging.getLogger("leads.bounces")

SNS_HOST = re.compile(r"^sns\.[a-z0-9-]+\.amazonaws\.com(\.cn)?$")
MAX_FETCH_BYTES = 64 * 1024
FETCH_TIMEOUT = 10.0
_SIGNED_KEYS = {
    "Notification": ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"),
    "SubscriptionConfirmation": (
        "Message",
        "MessageId",
        "SubscribeURL",
        "Timestamp",
        "Token",
        "TopicArn",
        "Type",
    ),
}
_SIGNED_KEYS["UnsubscribeConfirmation"] = _SIGNED_KEYS["SubscriptionConfirmation"]
_HASHES = {"1": hashes.SHA1, "2": hashes.SHA256}


class SnsError(Exception):
    """The message is not one SNS signed for us."""


def sns_url(url: str) -> bool:
    """An https URL on an SNS host exactly: no user, no port, no other host."""
    if not isinstance(url, str):
        return False
    parts = urlsplit(url)
    return parts.scheme == "https" and bool(SNS_HOST.fullmatch(parts.netloc))


def _urlopen(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=FETCH_TIMEOUT) as response:  # noqa: S310 (https only)
        return response.read(MAX_FETCH_BYTES)


class SnsFetcher:
    """Fetches from SNS hosts only; certificates cached per URL."""

    def __init__(self, opener: Callable[[str], bytes] = _urlopen):
        self.opener = opener
        self.certificates: dict[str, x509.Certificate] = {}

    def get(self, url: str) -> bytes:
        if not sns_url(url):
            raise SnsError("not an SNS URL")
        return self.opener(url)

    def certificate(self, url: str) -> x509.Certificate:
        if not sns_url(url) or not urlsplit(url).path.endswith(".pem"):
            raise SnsError("the signing certificate is not on an SNS host")
        cert = self.certificates.get(url)
        if cert is None:
            try:
                cert = x509.load_pem_x509_certificate(self.get(url))
            except (OSError, ValueError) as exc:
                raise SnsError(f"signing certificate not read: {type(exc).__name__}") from None
            self.certificates[url] = cert
        return cert


def init_app(app: Flask) -> None:
    app.extensions["sns"] = SnsFetcher()


def fetcher() -> SnsFetcher:
    return current_app.extensions["sns"]


def verify(message: dict) -> None:
    """Raise SnsError unless SNS signed `message` (a parsed SNS JSON body)."""
    kind = message.get("Type")
    keys = _SIGNED_KEYS.get(kind) if isinstance(kind, str) else None
    hash_type = _HASHES.get(message.get("SignatureVersion"))
    if keys is None or hash_type is None:
        raise SnsError("not an SNS message of a known type and signature version")
    text = ""
    for key in keys:
        value = message.get(key)
        if value is None and key == "Subject":
            continue
        if not isinstance(value, str):
            raise SnsError(f"{key} missing")
        text += f"{key}\n{value}\n"
    try:
        signature = base64.b64decode(str(message.get("Signature", "")), validate=True)
    except (binascii.Error, ValueError):
        raise SnsError("signature not base64") from None
    key = fetcher().certificate(str(message.get("SigningCertURL", ""))).public_key()
    if not isinstance(key, rsa.RSAPublicKey):
        raise SnsError("the signing certificate has no RSA key")
    try:
        key.verify(signature, text.encode("utf-8"), padding.PKCS1v15(), hash_type())
    except InvalidSignature:
        raise SnsError("bad signature") from None


def confirm_subscription(message: dict) -> None:
    """GET the SubscribeURL of a verified SubscriptionConfirmation."""
    url = message.get("SubscribeURL")
    try:
        fetcher().get(url)
    except OSError as exc:
        raise SnsError(f"subscription not confirmed: {type(exc).__name__}") from None
    log.info("SNS subscription to %s confirmed", message.get("TopicArn"))
