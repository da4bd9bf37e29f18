"""Two-factor sign-in with TOTP (RFC 6238, pyotp) and recovery codes.

The secret is stored encrypted (Fernet, key derived from SECRET_KEY with
HKDF; SECRET_KEY_FALLBACKS still decrypt while keys rotate). A code is
accepted once: the time step it belongs to is remembered, and codes of that
step or earlier are refused afterwards.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from functools import lru_cache

import pyotp
import segno
from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from flask import current_app
from sqlalchemy import delete, update

from extensions import db
from models import RecoveryCode, Role, User
from services import clock

RECOVERY_CODES = 10
# One step either side: a phone's clock a little off still works.
VALID_WINDOW = 1
REQUIRE_CHOICES = ("none", "admin", "all")


class TwoFactorError(ValueError):
    pass


def _key(secret: str | bytes) -> bytes:
    raw = secret.encode() if isinstance(secret, str) else secret
    derived = HKDF(
        algorithm=hashes.SHA256(), length=32, salt=None, info=b"leads.totp-secret"
    ).derive(raw)
    return base64.urlsafe_b64encode(derived)


@lru_cache(maxsize=8)
def _fernet_for(keys: tuple[str | bytes, ...]) -> MultiFernet:
    return MultiFernet([Fernet(_key(k)) for k in keys])


def _fernet() -> MultiFernet:
    cfg = current_app.config
    # The current key encrypts; the old ones still decrypt.
    return _fernet_for((cfg["SECRET_KEY"], *cfg.get("SECRET_KEY_FALLBACKS", ())))


def encrypt(secret: str) -> str:
    return _fernet().encrypt(secret.encode()).decode()


def decrypt(stored: str) -> str:
    try:
        return _fernet().decrypt(stored.encode()).decode()
    except InvalidToken as exc:
        raise TwoFactorError("The stored 2FA secret cannot be read with SECRET_KEY.") from exc


def new_secret() -> str:
    return pyotp.random_base32()


def otpauth_uri(user: User, secret: str) -> str:
    return pyotp.TOTP(secret).provisioning_uri(
        name=user.email, issuer_name=current_app.config["SITE_NAME"]
    )


def qr_svg(uri: str) -> str:
    """The URI as a QR code, an inline <svg> element."""
    return segno.make(uri, error="m").svg_inline(
        scale=5, light="#fff", title="QR code for your authenticator app"
    )


def required_for(user: User) -> bool:
    """STAFF_REQUIRE_2FA says this user must have 2FA."""
    policy = current_app.config["STAFF_REQUIRE_2FA"]
    return policy == "all" or (policy == "admin" and user.role == Role.ADMIN)


def _clean(code: str) -> str:
    return "".join(ch for ch in (code or "") if not ch.isspace() and ch != "-").lower()


def _matching_step(secret: str, code: str) -> int | None:
    """The time step the code belongs to, within the window, or None."""
    code = _clean(code)
    if not (code.isdigit() and len(code) == 6):
        return None
    totp = pyotp.TOTP(secret)
    now = clock.now()
    here = totp.timecode(now)
    for offset in range(-VALID_WINDOW, VALID_WINDOW + 1):
        if hmac.compare_digest(totp.at(now, counter_offset=offset), code):
            return here + offset
    return None


def check_new_secret(secret: str, code: str) -> int:
    """The code's step when it is right for a secret being set up."""
    step = _matching_step(secret, code)
    if step is None:
        raise TwoFactorError("That code is not right. Type the 6 digits your app shows now.")
    return step


def enable(user: User, secret: str, code: str) -> list[str]:
    """Turn 2FA on once `code` proves the app has the secret; returns the
    recovery codes (shown once)."""
    step = check_new_secret(secret, code)
    user.totp_secret = encrypt(secret)
    user.totp_enabled_at = clock.now()
    user.totp_last_step = step
    return new_recovery_codes(user)


def disable(user: User) -> None:
    user.totp_secret = None
    user.totp_enabled_at = None
    user.totp_last_step = None
    db.session.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user.id))


def verify_code(user: User, code: str) -> bool:
    """A current code, never one already used: the step must move forward.
    The step is claimed with a conditional UPDATE, so two requests racing
    with the same code cannot both pass."""
    if not user.two_factor_enabled:
        return False
    step = _matching_step(decrypt(user.totp_secret), code)
    if step is None:
        return False
    claimed = db.session.execute(
        update(User)
        .where(
            User.id == user.id,
            (User.totp_last_step.is_(None)) | (User.totp_last_step < step),
        )
        .values(totp_last_step=step)
        .execution_options(synchronize_session=False)
    ).rowcount
    if claimed:
        user.totp_last_step = step
    return claimed == 1


# --- Recovery codes.


def _code_hash(code: str) -> str:
    return hashlib.sha256(_clean(code).encode()).hexdigest()


def _new_code() -> str:
    # 50 random bits as 10 base32 letters, shown as xxxxx-xxxxx.
    raw = base64.b32encode(secrets.token_bytes(7)).decode().lower()[:10]
    return f"{raw[:5]}-{raw[5:]}"


def new_recovery_codes(user: User) -> list[str]:
    """Ten new codes; the old ones stop working."""
    db.session.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user.id))
    codes = [_new_code() for _ in range(RECOVERY_CODES)]
    db.session.add_all(RecoveryCode(user_id=user.id, code_hash=_code_hash(c)) for c in codes)
    return codes


def use_recovery_code(user: User, code: str) -> bool:
    """Spend one unused recovery code (conditional UPDATE: once only)."""
    if not user.two_factor_enabled or not _clean(code):
        return False
    spent = db.session.execute(
        update(RecoveryCode)
        .where(
            RecoveryCode.user_id == user.id,
            RecoveryCode.code_hash == _code_hash(code),
            RecoveryCode.used_at.is_(None),
        )
        .values(used_at=clock.now())
        .execution_options(synchronize_session=False)
    ).rowcount
    return spent == 1


def recovery_codes_left(user: User) -> int:
    return db.session.execute(
        db.select(db.func.count())
        .select_from(RecoveryCode)
        .where(RecoveryCode.user_id == user.id, RecoveryCode.used_at.is_(None))
    ).scalar_one()
