"""DKIM: every mail signed with dkimpy, and the key and DNS record to publish.

With DKIM_DOMAIN, DKIM_SELECTOR and DKIM_PRIVATE_KEY_FILE set, compose()
signs each mail's final bytes once (rsa-sha256, relaxed/relaxed), so every
transport (file, smtp, console) writes the same signed mail. The key is read
when the app is made, once per process; dkimpy's public sign() takes the PEM
text and parses it again per mail, which costs little next to its
pure-Python RSA (bench/RESULTS.md, "DKIM").
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from flask import Flask, current_app

# dkimpy is imported where DKIM is used, not with this module: it brings
# dnspython's resolver (~2.5 MB and ~0.1 s per process) that web processes
# and unsigned workers do not need.

# What the signature covers, those present in the mail (RFC 8058 asks for
# both List-Unsubscribe headers on marketing mail).
SIGNED_HEADERS = (
    "From",
    "To",
    "Subject",
    "Date",
    "Message-ID",
    "MIME-Version",
    "Content-Type",
    "List-Unsubscribe",
    "List-Unsubscribe-Post",
)
KEY_BITS = 2048  # what keygen makes (dkimpy's dknewkey.BITS_REQUIRED)
MIN_KEY_BITS = 1024  # receivers, and dkimpy's verify, refuse shorter keys
# A PEM RSA key is under 4 kB; a setting that points at a big file is a mistake.
MAX_KEY_FILE_BYTES = 64 * 1024
# One TXT character-string holds at most 255 bytes (RFC 1035 3.3.14).
TXT_STRING_BYTES = 255


class DkimKeyError(ValueError):
    """A key file that cannot sign: the message says why, without the path."""


def read_private_key(path: str | os.PathLike) -> tuple[bytes, int]:
    """The PEM bytes of an RSA private key file and its size in bits."""
    from dkim.crypto import (
        DigestTooLargeError,
        RSASSA_PKCS1_v1_5_sign,
        RSASSA_PKCS1_v1_5_verify,
        UnparsableKeyError,
        parse_pem_private_key,
    )

    # What dkimpy's key reader raises on damaged text inside the PEM armour:
    # its own error, base64's, and its ASN.1 reader's (which asserts lengths).
    damaged = (UnparsableKeyError, ValueError, IndexError, TypeError, AssertionError)
    path = Path(path)
    if not path.exists():
        raise DkimKeyError("does not exist")
    if not path.is_file():
        raise DkimKeyError("is not a file")
    try:
        with path.open("rb") as fh:
            pem = fh.read(MAX_KEY_FILE_BYTES + 1)
    except OSError as exc:
        raise DkimKeyError(f"cannot be read ({exc.strerror})") from None
    if len(pem) > MAX_KEY_FILE_BYTES:
        raise DkimKeyError("is not a PEM RSA private key (far too large)")
    try:
        key = parse_pem_private_key(pem)
    except damaged:
        raise DkimKeyError("is not a PEM RSA private key (PKCS#1 or PKCS#8)") from None
    bits = key["modulus"].bit_length()
    if bits < MIN_KEY_BITS:
        raise DkimKeyError(
            f"holds a {bits}-bit key; DKIM needs at least {MIN_KEY_BITS} bits "
            f"(flask dkim keygen makes {KEY_BITS})"
        )
    # A damaged key can still parse, then sign every mail with a signature
    # that never verifies: one test signature, checked with its public half.
    digest = hashlib.sha256(b"DKIM key check")
    try:
        good = RSASSA_PKCS1_v1_5_verify(digest, RSASSA_PKCS1_v1_5_sign(digest, key), key)
    except (*damaged, ArithmeticError, DigestTooLargeError):
        good = False
    if not good:
        raise DkimKeyError("holds an RSA key whose parts do not fit together (damaged?)")
    return pem, bits


@dataclass(frozen=True)
class Signer:
    domain: str
    selector: str
    key: bytes = field(repr=False)  # PEM, read once; kept out of logs and tracebacks

    def sign(self, data: bytes) -> bytes:
        """`data` (CRLF line ends) with a DKIM-Signature header in front."""
        import dkim

        message = dkim.DKIM(data, linesep=b"\r\n")
        present = {name.lower() for name, _ in message.headers}
        include = [name.lower().encode() for name in SIGNED_HEADERS]
        include = [name for name in include if name in present]
        # From once more than it occurs (dkimpy's default too): a second From
        # added on the way breaks the signature instead of being shown.
        include.append(b"from")
        header = message.sign(
            self.selector.encode(),
            self.domain.encode(),
            self.key,
            canonicalize=(b"relaxed", b"relaxed"),
            include_headers=include,
        )
        return header + data


def signer_from_config(config) -> Signer | None:
    """A Signer when all three settings are there, else None (no signing)."""
    domain, selector, key_file = (
        config.get(name) for name in ("DKIM_DOMAIN", "DKIM_SELECTOR", "DKIM_PRIVATE_KEY_FILE")
    )
    if not (domain and selector and key_file):
        return None
    from config import ConfigError

    try:
        pem, _ = read_private_key(key_file)
    except DkimKeyError as exc:
        raise ConfigError(f'DKIM_PRIVATE_KEY_FILE: "{key_file}" {exc}') from None
    return Signer(domain=domain, selector=selector, key=pem)


def init_app(app: Flask) -> None:
    """Read the key once, when the app is made (and refuse a bad one then,
    rather than fail every mail later)."""
    app.extensions["dkim"] = signer_from_config(app.config)


def sign(data: bytes) -> bytes:
    """The mail signed when DKIM is configured, else as it is."""
    signer = current_app.extensions.get("dkim")
    return signer.sign(data) if signer else data


# --- Keys and DNS records: `flask dkim keygen`.


def default_key_file(config, instance_path: str, selector: str) -> Path:
    """DKIM_PRIVATE_KEY_FILE for its own selector; any other selector's key
    goes to instance/dkim/<selector>.pem, so a new key never lands in the
    file the live selector signs with."""
    if config.get("DKIM_PRIVATE_KEY_FILE") and config.get("DKIM_SELECTOR") == selector:
        return Path(config["DKIM_PRIVATE_KEY_FILE"])
    return Path(instance_path) / "dkim" / f"{selector}.pem"


def generate_key(path: Path, *, force: bool = False) -> bytes:
    """A new 2048-bit RSA key written to `path` with mode 0600, through
    dkimpy's key helper (which runs openssl). FileExistsError when `path`
    exists and not `force`; DkimKeyError when openssl fails."""
    from dkim import dknewkey

    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    if path.exists() and not force:
        raise FileExistsError(str(path))
    # Made beside the target with mode 0600 (mkstemp), then put in place in
    # one step: nobody ever reads half a key or one with wider permissions.
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        try:
            dknewkey.GenRSAKeys(tmp_name, verbose=False)
        except FileNotFoundError:
            raise DkimKeyError(
                f"making a key needs openssl, not found at {dknewkey.OPENSSL_BINARY}"
            ) from None
        except subprocess.CalledProcessError as exc:
            raise DkimKeyError(f"openssl genrsa failed (exit {exc.returncode})") from None
        tmp.chmod(0o600)
        pem, _ = read_private_key(tmp)
        if force:
            tmp.replace(path)
        else:
            os.link(tmp, path)  # refuses, atomically, a file made meanwhile
    finally:
        tmp.unlink(missing_ok=True)
    return pem


def public_key_b64(key_file: Path) -> str:
    """The base64 public key of a private key file, as dkimpy's helper
    writes it for DNS."""
    from dkim import dknewkey
    from dkim.util import parse_tag_value

    with tempfile.TemporaryDirectory() as tmp:
        dns_file = Path(tmp) / "record.txt"
        try:
            dknewkey.ExtractRSADnsPublicKey(str(key_file), str(dns_file), verbose=False)
        except (FileNotFoundError, subprocess.CalledProcessError):
            raise DkimKeyError("openssl could not read the public key") from None
        tags = parse_tag_value(dns_file.read_bytes())
    return tags[b"p"].decode()


def dns_record(selector: str, domain: str, public_key: str) -> tuple[str, str]:
    """(name, value) of the TXT record that publishes the key."""
    return f"{selector}._domainkey.{domain}", f"v=DKIM1; k=rsa; p={public_key}"


def zone_file_line(name: str, value: str) -> str:
    """The record as a zone file writes it: a value over 255 bytes split
    into quoted strings, which resolvers join back into one."""
    chunks = [value[i : i + TXT_STRING_BYTES] for i in range(0, len(value), TXT_STRING_BYTES)]
    strings = "\n\t".join(f'"{chunk}"' for chunk in chunks)
    return f"{name}.\tIN\tTXT\t( {strings} )"
