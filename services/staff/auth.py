"""Staff accounts: password hashing (argon2id), sign-in, user management."""

from __future__ import annotations

import contextlib
from functools import cache
from urllib.parse import urlsplit

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from extensions import db
from models import Role, User
from services import clock
from services.leads.addresses import InvalidAddress, normalise
from services.staff import sessions

# RFC 9106's second recommended option (64 MiB, t=3, p=4): above OWASP's
# minimum for argon2id. Stored hashes carry their parameters; hashes made
# with weaker ones are upgraded at the next sign-in.
_hasher = PasswordHasher(time_cost=3, memory_cost=64 * 1024, parallelism=4)
MIN_PASSWORD_LENGTH = 12


@cache
def _dummy_hash() -> str:
    """Verified against when the email is unknown, so a wrong address takes as
    long as a wrong password. Made on first use, not at import: argon2's
    64 MiB would otherwise raise every process's peak memory at start."""
    return _hasher.hash("not a real password, only for timing")


class AuthError(ValueError):
    pass


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def check_password_strength(password: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise AuthError(f"Use at least {MIN_PASSWORD_LENGTH} characters.")


def user_by_email(email: str) -> User | None:
    return db.session.execute(
        db.select(User).where(User.email == email.strip().lower())
    ).scalar_one_or_none()


def users() -> list[User]:
    return list(db.session.execute(db.select(User).order_by(User.email)).scalars())


def user_by_id(user_id: int) -> User | None:
    return db.session.get(User, user_id)


def normalise_email(email: str) -> str:
    try:
        return normalise(email)
    except InvalidAddress as exc:
        raise AuthError(str(exc)) from exc


def create_user(email: str, password: str, role: Role) -> User:
    address = normalise_email(email)
    check_password_strength(password)
    if user_by_email(address):
        raise AuthError(f"A user {address} exists already.")
    user = User(
        email=address,
        password_hash=hash_password(password),
        role=Role(role),
        created_at=clock.now(),
    )
    db.session.add(user)
    return user


def authenticate(email: str, password: str) -> User | None:
    """The user when the password matches and the account is active."""
    user = user_by_email(email or "")
    if user is None:
        with contextlib.suppress(VerificationError):
            _hasher.verify(_dummy_hash(), password or "")
        return None
    try:
        _hasher.verify(user.password_hash, password or "")
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return None
    if not user.active:
        return None
    if _hasher.check_needs_rehash(user.password_hash):
        user.password_hash = hash_password(password)
    user.last_login_at = clock.now()
    return user


def verify_password(user: User, password: str) -> bool:
    """The user's own password, asked again before a sensitive change."""
    try:
        return _hasher.verify(user.password_hash, password or "")
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def set_password(user: User, password: str) -> None:
    """A new password ends every session of the user."""
    check_password_strength(password)
    user.password_hash = hash_password(password)
    sessions.end_all(user)


def set_role(user: User, role: Role) -> None:
    user.role = Role(role)
    sessions.end_all(user)


def set_active(user: User, active: bool) -> None:
    user.active = active
    sessions.end_all(user)


def update_user(user: User, role: Role, active: bool, by: User) -> dict[str, object]:
    """Set a user's role and whether they may sign in; returns what changed,
    for the audit log. An admin cannot lock themselves out."""
    if user.id == by.id and (not active or role != Role.ADMIN):
        raise AuthError("You cannot disable yourself or remove your own admin role.")
    changes: dict[str, object] = {}
    if role != user.role:
        set_role(user, role)
        changes["role"] = role.value
    if active != user.active:
        set_active(user, active)
        changes["active"] = active
    return changes


def any_user_exists() -> bool:
    return db.session.execute(db.select(User.id).limit(1)).first() is not None


def safe_next(target: str | None) -> str | None:
    """A local path to go to after sign-in, or None. Never another host:
    refuses //evil, /\\evil, schemes, and control characters."""
    if not target or len(target) > 500:
        return None
    if any(ord(ch) < 0x20 or ch == "\\" for ch in target):
        return None
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//"):
        return None
    return target
